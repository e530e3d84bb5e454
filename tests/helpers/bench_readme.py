"""A benchmark's README table against its committed JSON: the table must be what `markdown(report)` renders."""

import importlib.util
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def readme_table_and_rendering(benchmark: str) -> tuple[str, str, dict]:
    """(the README's text between the benchmark's markers, markdown of benchmarks/results/<benchmark>.json, report)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location(f"bench_{benchmark}", REPO / "benchmarks" / f"{benchmark}.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    from readme_tables import between

    report = json.loads((REPO / "benchmarks" / "results" / f"{benchmark}.json").read_text())
    return between(REPO / "README.md", bench.README_BEGIN, bench.README_END), bench.markdown(report).strip(), report
