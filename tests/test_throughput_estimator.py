"""benchmarks/throughput.py's ratio: interleaved rounds alternate the variants' order, and the order moves a round's
ratio (measured 0.949 vs 1.018 on the 2-core host), so the estimate must weigh both orders equally."""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from throughput import paired_ratio  # noqa: E402


def test_an_order_effect_cancels_over_pairs_of_rounds():
    rounds = [0.95, 1.05] * 5 + [0.95]  # a variant 5% slower whenever it runs first; an unpaired last round
    estimate, (low, high) = paired_ratio(rounds)
    assert estimate == round(math.sqrt(0.95 * 1.05), 3)  # the unpaired round is left out
    assert low <= estimate <= high


def test_the_interval_narrows_with_more_rounds_and_holds_a_constant_exactly():
    assert paired_ratio([1.02] * 6) == (1.02, [1.02, 1.02])
    noisy = [1.0 + 0.1 * math.sin(i) for i in range(8)]
    few, many = paired_ratio(noisy)[1], paired_ratio(noisy * 8)[1]
    assert many[1] - many[0] < few[1] - few[0]
