"""Paired comparison statistics against hand-computed and published values."""

from __future__ import annotations

import math

import pytest

from star_core.analysis.stats import (
    CI_METHOD, TEST_METHOD, Z_95, compare_by_group, compare_counts, compare_outcomes, mcnemar_exact_p, paired_counts,
    wilson_interval,
)

Z2 = Z_95 ** 2  # 3.8415


def test_wilson_edges_by_hand():
    # x = n: the lower bound is n / (n + z^2); x = 0: the upper bound is z^2 / (n + z^2).
    assert wilson_interval(1, 1)[0] == pytest.approx(1 / (1 + Z2))
    assert wilson_interval(6, 6) == pytest.approx((6 / (6 + Z2), 1.0))
    assert wilson_interval(0, 6) == pytest.approx((0.0, Z2 / (6 + Z2)))
    assert all(math.isnan(x) for x in wilson_interval(0, 0))


def test_paired_counts_pair_question_by_question():
    a = [True, True, False, False, True]
    b = [True, False, True, False, False]
    assert paired_counts(a, b) == (1, 2, 1, 1)
    with pytest.raises(ValueError, match="pair up"):
        paired_counts([True], [True, False])


@pytest.mark.parametrize("only_a, only_b, expected", [
    (0, 0, 1.0),                        # no discordant pairs
    (3, 5, 2 * (1 + 8 + 28 + 56) / 256),  # 2 P(X <= 3), X ~ Bin(8, 1/2) = 0.7265625
    (0, 6, 2 / 64),                     # all six discordant pairs favour B
    (1, 0, 1.0),                        # 2 * 1/2 capped at 1
    (4, 4, 1.0),                        # a tie: 2 P(X <= 4) > 1, capped
    (0, 10, 2 / 1024),
])
def test_mcnemar_exact_by_hand(only_a, only_b, expected):
    assert mcnemar_exact_p(only_a, only_b) == pytest.approx(expected, rel=1e-12)
    assert mcnemar_exact_p(only_b, only_a) == pytest.approx(expected, rel=1e-12)  # two-sided: symmetric


def test_mcnemar_matches_scipy_binomtest():
    from scipy import stats  # the test extra's: a missing scipy fails here rather than skipping the check
    for only_a, only_b in [(6, 16), (1, 7), (12, 30), (50, 61), (0, 3), (200, 260), (7, 7)]:
        expected = stats.binomtest(only_a, only_a + only_b, 0.5).pvalue
        assert mcnemar_exact_p(only_a, only_b) == pytest.approx(expected, rel=1e-9)
    assert mcnemar_exact_p(0, 1000) == 2.0 ** -999  # exact fractions: no rounding to 0 in a float sum of tiny terms


def test_published_example_cavo_2012():
    # Fagerland, Lydersen & Laake's paired example (Cavo et al. 2012): 59 both, 6 before only, 16 after only, 80
    # neither; Newcombe's interval for before - after: -0.0621 (95% CI -0.1186 to -0.0046). Here A = before,
    # B = after, and the difference is B - A, so the signs flip.
    c = compare_counts(59, 6, 16, 80)
    assert c.shared == 161
    assert c.difference == pytest.approx(10 / 161)
    assert (round(c.ci_low, 4), round(c.ci_high, 4)) == (0.0046, 0.1186)
    swapped = compare_counts(59, 16, 6, 80)
    assert (round(swapped.difference, 4), round(swapped.ci_low, 4), round(swapped.ci_high, 4)) == (-0.0621, -0.1186, -0.0046)
    assert c.p_value == pytest.approx(2 * sum(math.comb(22, i) for i in range(7)) / 2 ** 22)


def test_no_discordant_pairs_by_hand():
    # 10 both right, 5 both wrong: both accuracies 2/3, difference 0, p = 1.
    c = compare_counts(10, 0, 0, 5)
    assert (c.accuracy_a, c.accuracy_b, c.difference, c.p_value) == (pytest.approx(2 / 3), pytest.approx(2 / 3), 0.0, 1.0)
    # Wilson(10, 15) = (0.41712, 0.84824); phi = (10*5 - 0 - 15/2) / sqrt(10*5*10*5) = 0.85;
    # half-width sqrt(0.24955^2 + 0.18157^2 - 2*0.85*0.24955*0.18157) = 0.13496 on both sides.
    assert c.ci_low == pytest.approx(-0.13496, abs=2e-5) and c.ci_high == pytest.approx(0.13496, abs=2e-5)


def test_all_discordant_by_hand():
    # Six questions, B right on every one, A on none: difference 1, p = 2/64.
    c = compare_counts(0, 0, 6, 0)
    assert (c.accuracy_a, c.accuracy_b, c.difference) == (0.0, 1.0, 1.0)
    assert c.p_value == pytest.approx(1 / 32)
    # A margin is empty, so phi = 0; low = 1 - sqrt((1 - 6/(6+z^2))^2 + (z^2/(6+z^2))^2) = 1 - sqrt(2) z^2/(6+z^2).
    assert c.ci_low == pytest.approx(1 - math.sqrt(2) * Z2 / (6 + Z2)) and c.ci_high == 1.0
    mixed = compare_counts(0, 3, 5, 0)
    assert mixed.difference == pytest.approx(2 / 8) and mixed.p_value == pytest.approx(0.7265625)


def test_one_shared_question_by_hand():
    w = Z2 / (1 + Z2)  # 1 - the Wilson lower bound of 1/1 = the upper bound of 0/1 = 0.79345
    both = compare_counts(1, 0, 0, 0)
    assert (both.difference, both.p_value) == (0.0, 1.0)
    assert (both.ci_low, both.ci_high) == (pytest.approx(-w), pytest.approx(w))
    only_b = compare_counts(0, 0, 1, 0)
    assert (only_b.accuracy_a, only_b.accuracy_b, only_b.difference, only_b.p_value) == (0.0, 1.0, 1.0, 1.0)
    assert only_b.ci_low == pytest.approx(1 - math.sqrt(2) * w) and only_b.ci_high == 1.0
    only_a = compare_counts(0, 1, 0, 0)
    assert only_a.difference == -1.0 and only_a.ci_low == -1.0 and only_a.ci_high == pytest.approx(-(1 - math.sqrt(2) * w))


def test_interval_holds_the_difference_and_stays_in_range():
    for cells in [(30, 2, 9, 55), (0, 0, 0, 7), (7, 0, 0, 0), (3, 40, 1, 2), (48, 0, 48, 0), (1, 1, 7, 12)]:
        c = compare_counts(*cells)
        assert -1.0 <= c.ci_low <= c.difference <= c.ci_high <= 1.0, cells
        assert 0 < c.p_value <= 1


def test_more_evidence_narrows_the_interval_and_lowers_p():
    small, large = compare_counts(10, 2, 6, 14), compare_counts(100, 20, 60, 140)
    assert small.difference == pytest.approx(large.difference)
    assert large.ci_high - large.ci_low < small.ci_high - small.ci_low
    assert large.p_value < small.p_value
    assert large.ci_low > 0  # 60 vs 20 discordant pairs is a real difference


def test_outcome_vectors_and_methods_named():
    c = compare_outcomes([True, False, True, False], [True, True, True, False])
    assert (c.both_right, c.only_a, c.only_b, c.both_wrong) == (2, 0, 1, 1)
    assert c.to_dict()["ci_method"] == CI_METHOD and "Newcombe" in CI_METHOD and "method 10" in CI_METHOD
    assert c.to_dict()["test_method"] == TEST_METHOD and "McNemar" in TEST_METHOD
    assert c.discordant == 1
    with pytest.raises(ValueError, match="no shared questions"):
        compare_counts(0, 0, 0, 0)
    with pytest.raises(ValueError):
        compare_counts(1, -1, 0, 0)


def test_by_group_splits_the_table_per_difficulty():
    rows = [(2, True, False), (1, True, True), (2, False, True), (2, False, True), (1, False, False), (None, True, True)]
    groups = compare_by_group(rows)
    assert list(groups) == [1, 2, None]
    assert (groups[1].both_right, groups[1].both_wrong, groups[1].shared) == (1, 1, 2)
    assert (groups[2].only_a, groups[2].only_b, groups[2].difference) == (1, 2, pytest.approx(1 / 3))
    assert sum(g.shared for g in groups.values()) == len(rows)
