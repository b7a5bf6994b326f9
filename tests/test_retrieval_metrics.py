"""utils.retrieval.metrics against plain numpy formulas: hand-made code sets (ties, a query without any
relevant item, a query with nothing within radius 2), then random codes against a per-query loop."""
import numpy as np
import pytest

from utils import retrieval as R

BACKENDS = ["numba", "numpy"] if R.HAVE_NUMBA else ["numpy"]


def bits_of(rows):
    """'0110...' strings → ±1 float codes."""
    return np.array([[1.0 if c == "1" else -1.0 for c in r] for r in rows], np.float32)


def onehot(classes, n):
    out = np.zeros((len(classes), n), np.int64)
    for i, c in enumerate(classes):
        for k in np.atleast_1d(c):
            out[i, k] = 1
    return out


# ----------------------------------------------------------------------------------- plain formulas
def ref_dist(q, d):
    q, d = np.where(q > 0, 1, -1), np.where(d > 0, 1, -1)
    return (q.shape[1] - q @ d.T) // 2


def ref_all(q, d, ql, dl, radius=2, ks=()):
    """Per-query loop with a stable argsort (ties by database index)."""
    dist = ref_dist(q, d)
    rel = (ql @ dl.T) > 0
    out = {"p_zero": [], "p_nonempty": [], "recall": [], "ap_r": [], "rp": [], "pk": [], "rk": []}
    for i in range(len(q)):
        ball = dist[i] <= radius
        n_rel = rel[i].sum()
        if ball.sum():
            p = rel[i][ball].sum() / ball.sum()
            out["p_nonempty"].append(p)
        else:
            p = 0.0
        out["p_zero"].append(p)
        order = np.argsort(dist[i], kind="stable")
        ranked = rel[i][order]
        if n_rel:
            out["recall"].append(rel[i][ball].sum() / n_rel)
            top = ranked[:n_rel]
            prec_at = np.cumsum(top) / np.arange(1, n_rel + 1)
            out["ap_r"].append(np.sum(prec_at * top) / n_rel)
            out["rp"].append(top.sum() / n_rel)
            out["rk"].append([ranked[:k].sum() / n_rel for k in ks])
        out["pk"].append([ranked[:k].sum() / min(k, len(d)) for k in ks])
    return out


# ------------------------------------------------------------------------------------- hand-made set
# 6 bits; database items 0..5, classes 0/1/2; query 0 has ties at distance 1 (items 1, 2, 3), query 1
# has no relevant item (class 2 absent from the database), query 2 retrieves nothing within radius 2.
DB = bits_of(["000000", "100000", "010000", "001000", "111100", "111111"])
DB_L = onehot([0, 1, 0, 0, 1, 1], 3)
Q = bits_of(["000000", "110000", "000111"])
Q_L = onehot([0, 2, 1], 3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_hand_made_values(backend):
    s = R.rank_stats(Q, DB, Q_L, DB_L, ks=(1, 3), backend=backend)
    # distances: q0 → [0,1,1,1,4,6]; q1 → [2,1,1,3,2,4]; q2 → [3,4,4,4,5,3]
    np.testing.assert_array_equal(s.hist[0], [1, 3, 0, 0, 1, 0, 1])
    np.testing.assert_array_equal(s.n_relevant, [3, 0, 3])
    # radius 2: q0 retrieves items 0,1,2,3 (relevant 0,2,3) → 3/4; q1 retrieves 0,1,2,4, none relevant → 0;
    # q2 retrieves nothing → 0 (counted) / left out (exclude)
    assert s.precision_at_radius(2) == pytest.approx((0.75 + 0 + 0) / 3)
    assert s.precision_at_radius(2, empty="exclude") == pytest.approx((0.75 + 0) / 2)
    assert s.share_retrieving(2) == pytest.approx(2 / 3)
    # recall over queries with a relevant item (q0, q2): q0 3/3, q2 0/3
    assert s.recall_at_radius(2) == pytest.approx(0.5)
    # R = 3 for q0: ranking 0,1,2,3 (ties by index) → rel 1,0,1 → AP@R = (1/1 + 2/3) / 3, R-precision 2/3
    # q2: R = 3, ranking 0,5 (distance 3), 1,2,3 (4), 4 (5) → top 3 rel 0,1,1 → AP@R = (1/2 + 2/3) / 3, RP 2/3
    assert s.map_at_r() == pytest.approx(((1 + 2 / 3) / 3 + (1 / 2 + 2 / 3) / 3) / 2)
    assert s.r_precision() == pytest.approx(2 / 3)
    assert np.isnan(s.r_precision(per_query=True)[1])
    # precision@k over all queries: k=1: q0 item 0 relevant, q1 item 1 not, q2 item 0 not → 1/3
    p, r = s.precision_recall_at_k()
    assert p[0] == pytest.approx(1 / 3)
    ref = ref_all(Q, DB, Q_L, DB_L, ks=(1, 3))
    np.testing.assert_allclose(p, np.mean(ref["pk"], axis=0))
    np.testing.assert_allclose(r, np.mean(ref["rk"], axis=0))


def test_tie_order_is_database_order():
    """Moving the relevant item of a tied bucket first changes MAP@R exactly as a stable sort says."""
    db_l = onehot([0, 0, 1, 0, 1, 1], 3)  # item 1 now relevant, item 2 not
    s = R.rank_stats(Q[:1], DB, Q_L[:1], db_l)
    # ranking 0,1,2,3: rel 1,1,0 → AP@R = 2/3 · ... = (1 + 1) / 3
    assert s.map_at_r() == pytest.approx(2 / 3)
    ref = ref_all(Q[:1], DB, Q_L[:1], db_l)
    assert s.map_at_r() == pytest.approx(np.mean(ref["ap_r"]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_nothing_relevant_anywhere(backend):
    s = R.rank_stats(Q[1:2], DB, Q_L[1:2], DB_L, backend=backend)
    assert np.isnan(s.map_at_r()) and np.isnan(s.r_precision()) and np.isnan(s.recall_at_radius(2))
    assert s.precision_at_radius(2) == 0.0


def test_radius_curve_matches_pr_curve():
    s = R.rank_stats(Q, DB, Q_L, DB_L)
    curve, p_zero = s.radius_curve()
    ref = R.pr_curve_hamming_radius(Q, DB, Q_L, DB_L)
    np.testing.assert_allclose(curve.precision, ref.precision)
    np.testing.assert_allclose(curve.recall, ref.recall)
    np.testing.assert_array_equal(curve.n_queries, ref.n_queries)
    for r in range(7):
        assert p_zero[r] == pytest.approx(s.precision_at_radius(r))


# ------------------------------------------------------------------------------------- random codes
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bits,multi", [(16, False), (32, True), (70, True)])
def test_random_codes_against_loop(backend, bits, multi):
    rng = np.random.default_rng(bits)
    nq, ndb, n_cls = 40, 300, 7
    q = np.where(rng.random((nq, bits)) < 0.5, 1.0, -1.0)
    d = np.where(rng.random((ndb, bits)) < 0.5, 1.0, -1.0)
    d[50:80] = d[10]  # exact duplicates: large ties
    q[:5] = d[10:15]  # queries close to the database: non-empty balls
    ql = onehot([rng.choice(n_cls, rng.integers(1, 3) if multi else 1, replace=False) for _ in range(nq)], n_cls)
    dl = onehot([rng.choice(n_cls - 1, rng.integers(1, 3) if multi else 1, replace=False) for _ in range(ndb)],
                n_cls)
    ql[7] = 0
    ql[7, n_cls - 1] = 1  # a class no database item has
    ks = (1, 10, 100, 1000)
    s = R.rank_stats(q, d, ql, dl, ks=ks, backend=backend)
    for radius in (0, 2, bits // 2):
        ref = ref_all(q, d, ql, dl, radius=radius, ks=ks)
        assert s.precision_at_radius(radius) == pytest.approx(np.mean(ref["p_zero"]))
        if ref["p_nonempty"]:
            assert s.precision_at_radius(radius, empty="exclude") == pytest.approx(np.mean(ref["p_nonempty"]))
        assert s.recall_at_radius(radius) == pytest.approx(np.mean(ref["recall"]))
    assert s.map_at_r() == pytest.approx(np.mean(ref["ap_r"]))
    assert s.r_precision() == pytest.approx(np.mean(ref["rp"]))
    p, r = s.precision_recall_at_k()
    np.testing.assert_allclose(p, np.mean(ref["pk"], axis=0))
    np.testing.assert_allclose(r, np.mean(ref["rk"], axis=0))
    p2, r2 = R.precision_recall_at_k(q, d, ql, dl, ks, backend=backend)
    np.testing.assert_allclose(p, p2)
    np.testing.assert_allclose(r, r2)
    # the convenience functions agree with the stats
    assert R.map_at_r(q, d, ql, dl, backend=backend) == pytest.approx(s.map_at_r())
    assert R.r_precision(q, d, ql, dl, backend=backend) == pytest.approx(s.r_precision())
    assert R.precision_recall_at_radius(q, d, ql, dl, backend=backend) == pytest.approx(
        (s.precision_at_radius(2), s.recall_at_radius(2)))


def test_backends_identical():
    if not R.HAVE_NUMBA:
        pytest.skip("numba not installed")
    rng = np.random.default_rng(3)
    q, d = rng.standard_normal((25, 64)), rng.standard_normal((500, 64))
    ql, dl = onehot(rng.integers(0, 5, 25), 5), onehot(rng.integers(0, 5, 500), 5)
    a = R.rank_stats(q, d, ql, dl, ks=(5, 50), backend="numba")
    b = R.rank_stats(q, d, ql, dl, ks=(5, 50), backend="numpy")
    for name, x, y in zip(a._fields, a, b):
        if name == "ap_at_r":  # float sums in another order
            np.testing.assert_allclose(x, y, rtol=1e-12)
        else:
            np.testing.assert_array_equal(x, y)


# ------------------------------------------------------------------------------------------ open set
def test_query_groups_and_subset_mean():
    ql = onehot([0, 1, [0, 2], 2, [1, 3]], 4)
    g = R.query_groups(ql, unseen_classes=[2, 3])
    np.testing.assert_array_equal(g["unseen"], [False, False, True, True, True])
    np.testing.assert_array_equal(g["seen"], ~g["unseen"])
    ap = np.array([0.5, 0.7, 0.1, np.nan, 0.3])
    assert R.subset_mean(ap, g["seen"]) == pytest.approx(0.6)
    assert R.subset_mean(ap, g["unseen"]) == pytest.approx(0.2)
    assert np.isnan(R.subset_mean(ap, np.zeros(5, bool)))


def test_bad_empty_rule():
    s = R.rank_stats(Q, DB, Q_L, DB_L)
    with pytest.raises(ValueError, match="empty"):
        s.precision_at_radius(2, empty="skip")
