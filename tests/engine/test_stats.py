"""Tests for landscape_core.stats: Kendall tau-b against scipy and hand counts, bootstrap CI behaviour."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from landscape_core.stats import correlation_table, kendall_tau, kendall_tau_b


def test_hand_counted_example():
    # pairs of (1,2,3,4) vs (1,3,2,4): 5 concordant, 1 discordant -> (5 - 1) / 6
    assert kendall_tau_b([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    # ties: x = (1,1,2), y = (1,2,3): n0=3, n1=1, n2=0, C=2, D=0 -> 2 / sqrt(2*3)
    assert kendall_tau_b([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / math.sqrt(6))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_matches_scipy_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = 25
    x = rng.integers(0, 6, n).astype(float)  # many ties
    y = 0.5 * x + rng.integers(0, 4, n)
    ref = sps.kendalltau(x, y, variant="b")
    r = kendall_tau(x, y, n_boot=200, seed=seed)
    assert r.tau == pytest.approx(ref.statistic, abs=1e-12)
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert r.n == n


def test_matches_scipy_continuous_and_negative():
    rng = np.random.default_rng(7)
    x = rng.normal(size=40)
    y = -x + 0.8 * rng.normal(size=40)
    r = kendall_tau(x, y, n_boot=300)
    ref = sps.kendalltau(x, y)
    assert r.tau == pytest.approx(ref.statistic, abs=1e-12) and r.tau < 0
    assert r.ci_low <= r.tau <= r.ci_high
    assert r.ci_high < 0  # a strong negative association: the interval excludes zero


def test_perfect_monotone_gives_degenerate_interval():
    x = np.arange(10.0)
    r = kendall_tau(x, np.exp(x), n_boot=200)
    assert r.tau == pytest.approx(1.0)
    assert r.ci_low == pytest.approx(1.0) and r.ci_high == pytest.approx(1.0)


def test_bootstrap_is_seeded_and_interval_shrinks_with_confidence():
    rng = np.random.default_rng(3)
    x = rng.normal(size=30)
    y = x + rng.normal(size=30)
    a = kendall_tau(x, y, seed=5, n_boot=400)
    b = kendall_tau(x, y, seed=5, n_boot=400)
    c = kendall_tau(x, y, seed=6, n_boot=400)
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    assert (a.ci_low, a.ci_high) != (c.ci_low, c.ci_high)
    narrow = kendall_tau(x, y, seed=5, n_boot=400, confidence=0.5)
    assert a.ci_low < narrow.ci_low <= narrow.ci_high < a.ci_high


def test_bootstrap_interval_matches_direct_resampling():
    rng = np.random.default_rng(11)
    x = rng.normal(size=15)
    y = x + rng.normal(size=15)
    r = kendall_tau(x, y, seed=2, n_boot=300)
    # same resampling scheme done the slow way with scipy
    g = np.random.default_rng(2)
    taus = []
    for _ in range(300):
        i = g.integers(0, 15, size=15)
        taus.append(sps.kendalltau(x[i], y[i]).statistic)
    lo, hi = np.nanquantile(taus, [0.025, 0.975])
    assert r.ci_low == pytest.approx(lo, abs=1e-12) and r.ci_high == pytest.approx(hi, abs=1e-12)


def test_nonfinite_pairs_dropped_and_small_n_is_nan():
    r = kendall_tau([1, 2, float("nan"), 4, 5], [2, 1, 3, float("inf"), 6], n_boot=50)
    assert r.n == 3
    assert r.tau == pytest.approx(sps.kendalltau([1, 2, 5], [2, 1, 6]).statistic)
    tiny = kendall_tau([1, 2], [1, 2])
    assert math.isnan(tiny.tau) and tiny.to_dict()["tau"] is None
    const = kendall_tau([1, 1, 1, 1], [1, 2, 3, 4])
    assert math.isnan(const.tau)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="confidence"):
        kendall_tau([1, 2, 3], [1, 2, 3], confidence=1.5)
    with pytest.raises(ValueError, match="equal length"):
        kendall_tau([1, 2, 3], [1, 2])


def test_correlation_table_rows():
    rows = [{"lambda_max": i, "test_acc": 1 - 0.1 * i, "gen_gap": 0.05 * i, "trace": None} for i in range(6)]
    table = correlation_table(rows, ["lambda_max", "trace"], ["test_acc", "gen_gap"], n_boot=50)
    assert [(t["measure"], t["target"]) for t in table] == [
        ("lambda_max", "test_acc"), ("lambda_max", "gen_gap"), ("trace", "test_acc"), ("trace", "gen_gap"),
    ]
    assert table[0]["tau"] == pytest.approx(-1.0) and table[1]["tau"] == pytest.approx(1.0)
    assert table[2]["tau"] is None and table[2]["n"] == 0
