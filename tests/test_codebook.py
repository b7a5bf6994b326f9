import numpy as np
import pytest

from models.codebook import make_codebook, min_pairwise_distance, greedy_codebook


@pytest.mark.parametrize("method", ["N", "B", "O", "H"])
def test_codebook_shape_values_and_seed(method):
    a = make_codebook(method, 10, 48, seed=3)
    assert a.shape == (10, 48) and a.dtype == np.float32
    assert set(np.unique(a)) <= {-1.0, 1.0}
    np.testing.assert_array_equal(a, make_codebook(method, 10, 48, seed=3))
    if method != "H":  # H's leading rows are fixed Hadamard rows; the others depend on the seed
        assert not np.array_equal(a, make_codebook(method, 10, 48, seed=4))


def test_bernoulli_is_balanced_ish():
    a = make_codebook("B", 100, 64, seed=0)
    assert abs(a.mean()) < 0.05
    assert np.abs(a.mean(axis=0)).max() < 0.4


def test_greedy_codebook_reaches_its_target_distance():
    rng = np.random.default_rng(0)
    codes, target = greedy_codebook(20, 64, rng)
    assert min_pairwise_distance(codes) >= target - 1e-9
    assert target > 0.35  # random codes sit near 0.5 ± 0.06; the greedy search keeps far ones
    b = make_codebook("B", 20, 64, seed=0)
    assert min_pairwise_distance(codes) > min_pairwise_distance(b)


def test_hadamard_rows_are_orthogonal():
    h = make_codebook("H", 64, 64, seed=0)
    gram = h @ h.T
    np.testing.assert_array_equal(gram, 64 * np.eye(64))
    both = make_codebook("H", 128, 64, seed=0)  # [H; -H]: every pair at distance >= 1/2
    assert min_pairwise_distance(both) == pytest.approx(0.5)


def test_hadamard_padded_with_balanced_codes_when_classes_exceed_rows():
    h = make_codebook("H", 40, 16, seed=0)  # only 32 Hadamard rows exist for 16 bits
    assert h.shape == (40, 16)
    np.testing.assert_array_equal(h[:16] @ h[:16].T, 16 * np.eye(16))
    assert (h[32:].sum(axis=1) == 0).all()  # padding rows are balanced
    odd = make_codebook("H", 10, 48, seed=0)  # no Sylvester Hadamard matrix for 48 bits
    assert (odd.sum(axis=1) == 0).all()
