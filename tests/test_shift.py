"""hftransfer shift: proxy A-distance and MMD of two domains through frozen features."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from hftransfer.shift import gaussian_mmd2, measure_shift, proxy_a_distance, shift_level


def gaussians(offset: float, n: int = 200, dim: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, dim)), rng.normal(size=(n, dim)) + offset


def test_proxy_a_distance_is_near_0_without_shift_and_2_for_separable_domains():
    same = proxy_a_distance(*gaussians(0.0))
    apart = proxy_a_distance(*gaussians(3.0))
    assert same < 0.3 and apart > 1.9
    assert proxy_a_distance(*gaussians(0.5)) == pytest.approx(proxy_a_distance(*gaussians(0.5)))  # seeded folds


def test_mmd2_is_the_unbiased_estimate_written_out_pair_by_pair():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(6, 3)), rng.normal(size=(5, 3)) + 0.7
    pooled = np.concatenate([x, y])
    distances = [np.sum((a - b) ** 2) for i, a in enumerate(pooled) for b in pooled[i + 1:]]
    h = np.median(distances)
    k = lambda a, b: np.exp(-np.sum((a - b) ** 2) / h)  # noqa: E731
    within_x = sum(k(a, b) for i, a in enumerate(x) for j, b in enumerate(x) if i != j) / (6 * 5)
    within_y = sum(k(a, b) for i, a in enumerate(y) for j, b in enumerate(y) if i != j) / (5 * 4)
    across = sum(k(a, b) for a in x for b in y) / (6 * 5)
    assert gaussian_mmd2(x, y) == pytest.approx(within_x + within_y - 2 * across, rel=1e-9)
    assert abs(gaussian_mmd2(*gaussians(0.0))) < 0.01 < gaussian_mmd2(*gaussians(1.0))


def test_the_result_grows_with_the_shift_and_keeps_a_no_shift_floor():
    small, large = measure_shift(*gaussians(0.05)), measure_shift(*gaussians(2.0))
    assert small["shift"] == "small" and large["shift"] == "large"
    assert large["mmd2"] > small["mmd2"] and large["proxy_a_distance"] > small["proxy_a_distance"]
    assert large["source_halves"]["proxy_a_distance"] < 0.5 and large["examples_per_domain"] == 200
    assert [shift_level(v) for v in (0.0, 0.49, 0.5, 1.49, 1.5, 2.0)] == ["small"] * 2 + ["moderate"] * 2 + ["large"] * 2


def test_shift_command_writes_json_through_a_real_checkpoint(tiny_timm_dir, tmp_path):
    out = tmp_path / "shift.json"
    result = subprocess.run(
        [sys.executable, "-m", "hftransfer.cli", "shift", "--model", str(tiny_timm_dir), "--source", "digits",
         "--target", "mnist5k", "--image_size", "32", "--max-samples", "60", "--output", str(out)],
        capture_output=True, text=True, timeout=300, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["examples_per_domain"] == 60 and report["source"] == "digits:train"
    assert 0.0 <= report["proxy_a_distance"] <= 2.0 and "proxy A-distance" in result.stdout


@pytest.mark.parametrize("extra, expected", [
    (["--max-samples", "5"], "error: --max-samples must be at least 10"),
    (["--target-split", "unlabelled"], "error: 'mnist5k' has no 'unlabelled' split"),
])
def test_bad_shift_input_is_one_line(extra, expected, tiny_timm_dir, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "hftransfer.cli", "shift", "--model", str(tiny_timm_dir), "--source", "digits",
         "--target", "mnist5k", "--image_size", "32", "--output", str(tmp_path / "s.json"), *extra],
        capture_output=True, text=True, timeout=300, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].startswith(expected), result.stderr[-1500:]
    assert not (tmp_path / "s.json").exists()


def test_readme_shift_table_is_the_committed_benchmark_json():
    from bench_readme import readme_table_and_rendering

    table, rendered, report = readme_table_and_rendering("domain_shift")
    assert table == rendered
    controls = [r for name, r in report["pairs"].items() if name.startswith("control")]
    shifted = [r for name, r in report["pairs"].items() if not name.startswith("control")]
    assert controls and shifted and max(r["mmd2"] for r in controls) < min(r["mmd2"] for r in shifted)
