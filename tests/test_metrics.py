"""The standard metrics on hand-built embeddings with known values."""

from __future__ import annotations

import numpy as np
import pytest

from moscale_common.errors import InputError
from moscale_ros.evaluation import metrics


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def test_fid_of_identical_sets_is_zero_and_a_shift_adds_its_squared_length(rng):
    x = rng.normal(size=(400, 12)) @ rng.normal(size=(12, 12))  # correlated, full rank
    assert metrics.fid(x, x) == pytest.approx(0.0, abs=1e-9)
    shift = np.arange(12) / 10.0
    # Same covariance, means apart by `shift`: FID = ||shift||^2 exactly.
    assert metrics.fid(x + shift, x) == pytest.approx(float(shift @ shift), rel=1e-9)
    # Singular covariances (all points on a plane) are fine too.
    flat = x.copy()
    flat[:, 6:] = 0.0
    assert metrics.fid(flat, flat) == pytest.approx(0.0, abs=1e-9)


def test_fid_matches_the_matrix_square_root_formula(rng):
    from scipy import linalg

    a = rng.normal(size=(300, 8))
    b = 1.5 * rng.normal(size=(300, 8)) + 0.3
    mu1, s1 = a.mean(0), np.cov(a, rowvar=False)
    mu2, s2 = b.mean(0), np.cov(b, rowvar=False)
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2.0 * np.real(linalg.sqrtm(s1 @ s2)))
    assert metrics.fid(a, b) == pytest.approx(expected, rel=1e-8)
    # Two scaled copies of one set: S2 = c^2 S1, so Tr(S1 + S2 - 2 sqrt(S1 S2)) = (1 - c)^2 Tr(S1).
    assert metrics.fid(3.0 * a, a) == pytest.approx(float(((3 * mu1 - mu1) ** 2).sum() + 4.0 * np.trace(s1)))


def test_perfect_retrieval_gives_r_precision_one(rng):
    texts = rng.normal(size=(96, 16))
    assert metrics.r_precision(texts, texts.copy(), rng=rng).tolist() == [1.0, 1.0, 1.0]
    # Small noise keeps every motion nearest to its own text.
    assert metrics.r_precision(texts, texts + 1e-3 * rng.normal(size=texts.shape), rng=rng).tolist() == [1.0] * 3


def test_r_precision_counts_ranks_inside_each_group():
    # Group of 4 on a line: text i at i, motion i at i + 0.6. Text 0's nearest motions: m0 (0.6), m1 (1.6)...;
    # text i > 0: m_{i-1} at 0.4 is nearer than its own m_i at 0.6, so its own motion ranks second.
    texts = np.arange(4.0)[:, None]
    motions = texts + 0.6
    top = metrics.r_precision(texts, motions, top_k=3, group_size=4)
    np.testing.assert_allclose(top, [0.25, 1.0, 1.0])
    # Two groups of 4 when cut in the given order; a ninth pair is dropped (incomplete group).
    nine_t = np.concatenate([texts, texts + 100, [[500.0]]])
    nine_m = np.concatenate([motions, motions + 100, [[900.0]]])
    np.testing.assert_allclose(metrics.r_precision(nine_t, nine_m, group_size=4), [0.25, 1.0, 1.0])


def test_r_precision_of_unrelated_pairs_is_chance(rng):
    top = metrics.r_precision(rng.normal(size=(3200, 8)), rng.normal(size=(3200, 8)), rng=rng)
    np.testing.assert_allclose(top, [1 / 32, 2 / 32, 3 / 32], atol=0.012)


def test_mm_dist_diversity_multimodality_known_values():
    texts = np.zeros((5, 3))
    motions = np.tile([0.0, 3.0, 4.0], (5, 1))
    assert metrics.mm_dist(texts, motions) == pytest.approx(5.0)
    # Scaled one-hot vectors: every pair of distinct motions is c * sqrt(2) apart.
    simplex = 2.5 * np.eye(6)
    assert metrics.diversity(simplex, pairs=300) == pytest.approx(2.5 * np.sqrt(2))
    assert metrics.diversity(np.ones((10, 4))) == 0.0
    # Two samples per text, d_t apart: multimodality is the mean of d_t.
    d = np.array([1.0, 2.0, 6.0])
    samples = np.zeros((3, 2, 4))
    samples[:, 1, 0] = d
    assert metrics.multimodality(samples, pairs=10) == pytest.approx(d.mean())


def test_label_level_r_precision_counts_only_other_labels():
    # Two clips of label 0 whose embeddings are swapped (each text nearest the other's motion), one of label 1.
    motions = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    texts = np.array([[0.9, 0.1], [1.0, 0.0], [0.0, 1.0]])
    labels = np.array([0, 0, 1])
    clip_level = metrics.r_precision(texts, motions, 2, group_size=3)
    label_level = metrics.label_r_precision(texts, motions, labels, 2, group_size=3)
    assert clip_level.tolist() == pytest.approx([1 / 3, 1.0])  # the swapped pair misses at top-1
    assert label_level.tolist() == pytest.approx([1.0, 1.0])  # ... but its label is the nearest
    wrong_labels = metrics.label_r_precision(texts, motions, np.array([0, 1, 2]), 1, group_size=3)
    assert wrong_labels.tolist() == pytest.approx([1 / 3])
    with pytest.raises(InputError, match="labels"):
        metrics.label_r_precision(texts, motions, labels[:2])
    tally = metrics.accuracy_by_label(np.array([1, 2, 2]), np.array([1, 2, 0]), ["walk", "bow", "bow"])
    assert tally == {"walk": (1, 1), "bow": (1, 2)}


def many_std(n: int) -> float:
    return float(np.random.default_rng(0).normal(size=n).std(ddof=1))


def test_accuracy_and_confidence_interval():
    assert metrics.accuracy(np.array([1, 2, 3, 4]), np.array([1, 0, 3, 0])) == 0.5
    interval = metrics.confidence_interval([1.0, 2.0, 3.0])
    assert interval.mean == pytest.approx(2.0)
    # Student-t with 2 degrees of freedom (t = 4.303), sample std 1.0: 4.303 / sqrt(3) = 2.484.
    assert interval.half_width == pytest.approx(4.302653 / np.sqrt(3), rel=1e-5)
    assert interval.format(2) == "2.00 ± 2.48" and interval.runs == 3
    single = metrics.confidence_interval([0.4])
    assert np.isnan(single.half_width) and single.format(2) == "0.40 (1 run)"
    # Large R approaches the normal 1.96 s / sqrt(R).
    many = metrics.confidence_interval(np.random.default_rng(0).normal(size=2000))
    assert many.half_width == pytest.approx(1.96 * many_std(2000) / np.sqrt(2000), rel=0.01)
    assert interval.overlaps(metrics.Interval(4.0, 0.1, 5)) and not interval.overlaps(metrics.Interval(5.0, 0.1, 5))
    assert single.overlaps(interval)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(InputError, match=r"do not pair up"):
        metrics.r_precision(np.zeros((4, 3)), np.zeros((5, 3)))
    with pytest.raises(InputError, match="NaN"):
        metrics.fid(np.array([[0.0, np.nan], [1.0, 1.0]]), np.ones((3, 2)))
    with pytest.raises(InputError, match="at least 2 samples"):
        metrics.fid(np.ones((1, 2)), np.ones((3, 2)))
    with pytest.raises(InputError, match=">= 2 samples"):
        metrics.multimodality(np.zeros((3, 1, 2)))
    with pytest.raises(InputError, match="non-empty"):
        metrics.confidence_interval([])
