"""utils.retrieval against plain per-query numpy references (stable argsort = ties by database index)."""
import itertools
import os
import subprocess
import sys

import numpy as np
import pytest

from utils import retrieval as R
from utils.retrieval import backends as RB  # where the installed engines are read (monkeypatched)
from utils.retrieval import kernels_numpy as RN  # the numpy kernels behind the facade (private names)
from utils.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKENDS = ["numba", "numpy"] if R.HAVE_NUMBA else ["numpy"]


# ------------------------------------------------------------------------------------------ references
def ref_distance(q, d):
    """Hamming distances from ±1 codes by the inner product (DeepHash-pytorch style)."""
    q, d = np.where(q > 0, 1, -1), np.where(d > 0, 1, -1)
    return ((q.shape[1] - q @ d.T) // 2).astype(np.int64)


def ref_ranking(q, d):
    return np.argsort(ref_distance(q, d), axis=1, kind="stable")


def ref_ap(rel_ranked):
    """AP of a ranked 0/1 relevance vector: mean of P@i over relevant i; 0 without relevant items."""
    rel_ranked = np.asarray(rel_ranked, dtype=np.float64)
    if rel_ranked.sum() == 0:
        return 0.0
    hits = np.cumsum(rel_ranked)
    return float(np.sum(rel_ranked * hits / np.arange(1, len(rel_ranked) + 1)) / rel_ranked.sum())


def ref_map(q, d, ql, dl, topk):
    """The plain loop: per query, stable argsort of the distances, AP over the top k."""
    topk = len(d) if topk in (None, -1) else min(topk, len(d))
    order = ref_ranking(q, d)
    rel = (ql @ dl.T) > 0
    return np.array([ref_ap(rel[i, order[i, :topk]]) for i in range(len(q))])


def make_case(seed, nq, ndb, bits, n_classes=6, multi=True, flip=0.25):
    """Codes with class structure (class centre XOR random flips) and one-hot or multi-hot labels."""
    rng = np.random.default_rng(seed)
    centres = rng.integers(0, 2, (n_classes, bits)).astype(bool)

    def draw(n):
        labels = np.zeros((n, n_classes), np.int64)
        for i in range(n):
            labels[i, rng.choice(n_classes, rng.integers(1, 3) if multi else 1, replace=False)] = 1
        main = labels.argmax(axis=1)
        codes = centres[main] ^ (rng.random((n, bits)) < flip)
        return np.where(codes, 1.0, -1.0).astype(np.float32), labels

    q, ql = draw(nq)
    d, dl = draw(ndb)
    return q, d, ql, dl


CASES = [  # (seed, nq, ndb, bits): tie-heavy at 8 / 16 bits, 12 is not a multiple of 8
    (0, 20, 150, 8), (1, 20, 300, 16), (2, 15, 200, 12), (3, 12, 250, 48), (4, 12, 300, 64), (5, 10, 120, 3),
    (6, 9, 200, 130), (7, 6, 100, 320),
]


# -------------------------------------------------------------------------------------------- codes
@pytest.mark.parametrize("bits", [3, 12, 64, 130])
def test_pack_forms_agree_and_roundtrip(bits):
    rng = np.random.default_rng(bits)
    pm = np.where(rng.random((7, bits)) < 0.5, 1, -1)
    packed = R.pack_codes(pm)
    assert packed.dtype == np.uint8 and packed.shape == (7, (bits + 7) // 8)
    for form in (pm.astype(np.float32), pm.astype(np.int8), pm > 0, (pm > 0).astype(np.int64)):
        assert np.array_equal(R.pack_codes(form), packed)
        assert np.array_equal(R.as_packed(form)[0], packed)
    unpacked = R.unpack_codes(packed, bits)
    assert unpacked.dtype == np.int8 and np.array_equal(unpacked, pm)
    assert R.hex_to_codes(R.codes_to_hex(pm), bits).tolist() == pm.tolist()
    assert R.codes_to_hex(packed, bits) == R.codes_to_hex(pm)


def test_zero_counts_as_negative_bit_and_uint8_is_packed():
    codes = np.array([[0.0, 1.0, -1.0, 0.3, -0.2, 0.0, 2.0, 0.0]])
    assert R.unpack_codes(R.pack_codes(codes), 8).tolist() == [[-1, 1, -1, 1, -1, -1, 1, -1]]
    packed, bits = R.as_packed(np.array([[0xFF, 0xFF]], np.uint8), bits=12)
    assert bits == 12 and packed.tolist() == [[0xFF, 0xF0]]  # padding bits cleared
    assert R.as_packed(np.array([[1, 0]], np.uint8))[1] == 16  # uint8 is packed: 2 bytes = 16 bits
    assert R.codes_to_hex(np.array([[1, -1, -1, -1, -1, -1, -1, 1, 1, 1, 1, 1]])) == ["81f0"]


def test_hex_errors():
    with pytest.raises(ValueError, match="bytes"):
        R.hex_to_codes(["ab"], 12)
    with pytest.raises(ValueError, match="not a hex"):
        R.hex_to_codes(["zz"], 8)
    with pytest.raises(ValueError, match="beyond bit 12"):
        R.hex_to_codes(["abcd"], 12)
    assert R.hex_to_codes("80", 8).tolist() == [[1, -1, -1, -1, -1, -1, -1, -1]]


# ------------------------------------------------------------------------------------------- search
@pytest.mark.parametrize("seed,nq,ndb,bits", CASES)
def test_hamming_distance(seed, nq, ndb, bits):
    q, d, _, _ = make_case(seed, nq, ndb, bits)
    expected = ref_distance(q, d)
    assert np.array_equal(R.hamming_distance(q, d), expected)
    assert np.array_equal(R.hamming_distance(R.pack_codes(q), R.pack_codes(d), bits=bits), expected)


@pytest.mark.parametrize("backend", BACKENDS + ["faiss"])
@pytest.mark.parametrize("seed,nq,ndb,bits", CASES)
def test_topk_ties_by_index(backend, seed, nq, ndb, bits):
    if backend == "faiss":
        pytest.importorskip("faiss")
    q, d, _, _ = make_case(seed, nq, ndb, bits)
    dist = ref_distance(q, d)
    idx = np.arange(ndb)
    for k in (1, 5, 10, 33, ndb, ndb + 50):  # 33 > 32 uses the counting-sort kernel
        got_d, got_i = R.hamming_topk(q, d, k, backend=backend)
        kk = min(k, ndb)
        assert got_d.dtype == np.int32 and got_i.dtype == np.int64 and got_d.shape == (nq, kk)
        for row in range(nq):
            order = np.lexsort((idx, dist[row]))[:kk]
            assert np.array_equal(got_i[row], order), (k, row)
            assert np.array_equal(got_d[row], dist[row, order])


def test_topk_packed_and_unpacked_agree():
    q, d, _, _ = make_case(7, 17, 400, 12)
    a = R.hamming_topk(q, d, 9)
    b = R.hamming_topk(R.pack_codes(q), R.pack_codes(d), 9, bits=12)
    c = R.hamming_topk(q.astype(np.int8), R.pack_codes(d), 9)  # bits taken from the unpacked side
    for other in (b, c):
        assert np.array_equal(a[0], other[0]) and np.array_equal(a[1], other[1])


def test_topk_faiss_equals_numba_under_heavy_ties():
    pytest.importorskip("faiss")
    rng = np.random.default_rng(11)
    d = rng.integers(0, 2, (3000, 16)).astype(bool)
    d = np.concatenate([d, d[::-1], d])  # exact duplicates: ties reach far past k
    q = rng.integers(0, 2, (40, 16)).astype(bool)
    for k in (1, 10, 50):
        a = R.hamming_topk(q, d, k, backend="faiss")
        b = R.hamming_topk(q, d, k, backend=BACKENDS[0])
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_faiss_approximate_indexes_are_consistent(kind):
    pytest.importorskip("faiss")
    q, d, _, _ = make_case(8, 10, 2000, 64)
    dist, idx = R.HammingIndex(d, backend="faiss", faiss_index=kind).search(q, 10)
    true = ref_distance(q, d)
    for row in range(len(q)):
        assert np.array_equal(true[row, idx[row]], dist[row])  # returned distances are real
        assert np.all(np.diff(dist[row]) >= 0)


def test_hamming_index():
    q, d, _, _ = make_case(9, 5, 300, 48)
    index = R.HammingIndex(d.astype(np.int8))
    assert len(index) == 300 and index.bits == 48
    dist, idx = index.search(q, 4)
    ref_d, ref_i = R.hamming_topk(q, d, 4, backend="numpy")
    assert np.array_equal(dist, ref_d) and np.array_equal(idx, ref_i)
    packed_index = R.HammingIndex(R.pack_codes(d), bits=48)
    assert np.array_equal(packed_index.search(R.pack_codes(q), 4)[1], ref_i)
    with pytest.raises(ValueError, match="bits"):
        index.search(q[:, :40], 4)


# ------------------------------------------------------------------------------------------ metrics
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed,nq,ndb,bits", CASES)
def test_map_matches_plain_loop(backend, seed, nq, ndb, bits):
    q, d, ql, dl = make_case(seed, nq, ndb, bits, multi=seed % 2 == 0)
    for topk in (1, 7, 50, None, -1, ndb, ndb + 1000):
        expected = ref_map(q, d, ql, dl, topk)
        value, per_query = R.mean_average_precision(q, d, ql, dl, topk=topk, return_per_query=True, backend=backend)
        assert np.allclose(per_query, expected, rtol=0, atol=1e-12), topk
        assert abs(value - expected.mean()) < 1e-9


def test_map_counts_queries_without_relevant_items_as_zero():
    q, d, ql, dl = make_case(12, 8, 100, 16, n_classes=4, multi=False)
    ql = np.concatenate([ql, np.zeros((len(ql), 1), np.int64)], axis=1)
    dl = np.concatenate([dl, np.zeros((len(dl), 1), np.int64)], axis=1)
    ql[0] = 0
    ql[0, -1] = 1  # a class no database item has
    value, per_query = R.mean_average_precision(q, d, ql, dl, topk=20, return_per_query=True)
    assert per_query[0] == 0.0
    assert abs(value - per_query.mean()) < 1e-15 and abs(value - ref_map(q, d, ql, dl, 20).mean()) < 1e-12


def test_map_inputs_packed_int8_and_float_agree():
    q, d, ql, dl = make_case(13, 10, 300, 12)
    expected = R.mean_average_precision(q, d, ql, dl, topk=30)
    assert R.mean_average_precision(q.astype(np.int8), d.astype(np.int8), ql, dl, topk=30) == expected
    assert R.mean_average_precision(R.pack_codes(q), R.pack_codes(d), ql, dl, topk=30, bits=12) == expected
    assert R.mean_average_precision(q * 0.3, d > 0, ql.astype(bool), dl.astype(np.float32), topk=30) == expected


def test_numba_and_numpy_agree_on_larger_case():
    if not R.HAVE_NUMBA:
        pytest.skip("numba not installed")
    q, d, ql, dl = make_case(14, 60, 3000, 32, n_classes=10)
    for topk in (100, None):
        for tie_aware in (False, True):
            a = R.mean_average_precision(q, d, ql, dl, topk, tie_aware, return_per_query=True, backend="numba")[1]
            b = R.mean_average_precision(q, d, ql, dl, topk, tie_aware, return_per_query=True, backend="numpy")[1]
            assert np.allclose(a, b, rtol=0, atol=1e-12)


def brute_force_tie_aware_ap(dist, rel, k):
    """Average AP@k over every ordering of the items tied in distance (all permutations)."""
    buckets = [np.flatnonzero(dist == v) for v in np.unique(dist)]
    values = [ref_ap(rel[np.concatenate(orders)][:k])
              for orders in itertools.product(*(itertools.permutations(b) for b in buckets))]
    return float(np.mean(values))


@pytest.mark.parametrize("backend", BACKENDS)
def test_tie_aware_equals_average_over_all_tie_orders(backend):
    rng = np.random.default_rng(15)
    checked = 0
    for _ in range(40):
        ndb, bits = int(rng.integers(1, 9)), int(rng.integers(1, 4))
        q = rng.integers(0, 2, (1, bits)).astype(bool)
        d = rng.integers(0, 2, (ndb, bits)).astype(bool)
        ql, dl = np.ones((1, 1), np.int64), rng.integers(0, 2, (ndb, 1))
        dist, rel = ref_distance(q, d)[0], dl[:, 0]
        for k in range(1, ndb + 1):  # every cut, including ones inside a bucket
            got = R.mean_average_precision(q, d, ql, dl, topk=k, tie_aware=True, backend=backend)
            assert abs(got - brute_force_tie_aware_ap(dist, rel, k)) < 1e-12, (ndb, bits, k)
            checked += 1
    assert checked > 100


def test_tie_aware_is_invariant_to_database_order_and_plain_map_is_not():
    q, d, ql, dl = make_case(16, 30, 400, 8, n_classes=5)
    perm = np.random.default_rng(0).permutation(len(d))
    orders = ((d, dl), (d[perm], dl[perm]))
    tie = [R.mean_average_precision(q, d_, ql, dl_, topk=50, tie_aware=True) for d_, dl_ in orders]
    plain = [R.mean_average_precision(q, d_, ql, dl_, topk=50) for d_, dl_ in orders]
    assert abs(tie[0] - tie[1]) < 1e-12
    assert abs(plain[0] - plain[1]) > 1e-4


def test_tie_aware_without_ties_equals_plain():
    bits = 8
    d = np.array([[int(c) for c in f"{(1 << i) - 1:08b}"] for i in range(9)], bool)  # distances 0..8 from 0
    q = np.zeros((1, bits), bool)
    ql, dl = np.ones((1, 1)), np.array([[1], [0], [1], [1], [0], [0], [1], [0], [1]])
    for k in (1, 4, 9):
        assert abs(R.mean_average_precision(q, d, ql, dl, k, tie_aware=True)
                   - R.mean_average_precision(q, d, ql, dl, k)) < 1e-15


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed,nq,ndb,bits", CASES[:5])
def test_precision_recall_at_k(backend, seed, nq, ndb, bits):
    q, d, ql, dl = make_case(seed, nq, ndb, bits)
    ks = [1, 5, 20, ndb + 10]
    order = ref_ranking(q, d)
    rel = (ql @ dl.T) > 0
    prec = np.array([[rel[i, order[i, :k]].sum() / min(k, ndb) for k in ks] for i in range(nq)]).mean(0)
    has = rel.sum(1) > 0
    rec = np.array([[rel[i, order[i, :k]].sum() / rel[i].sum() for k in ks] for i in np.flatnonzero(has)]).mean(0)
    got_p, got_r = R.precision_recall_at_k(q, d, ql, dl, ks, backend=backend)
    assert np.allclose(got_p, prec, atol=1e-12) and np.allclose(got_r, rec, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed,nq,ndb,bits", CASES[:5])
def test_pr_curve_hamming_radius(backend, seed, nq, ndb, bits):
    q, d, ql, dl = make_case(seed, nq, ndb, bits)
    dist = ref_distance(q, d)
    rel = (ql @ dl.T) > 0
    curve = R.pr_curve_hamming_radius(q, d, ql, dl, backend=backend)
    assert np.array_equal(curve.radius, np.arange(bits + 1))
    for r in range(bits + 1):
        got = dist <= r
        some = got.sum(1) > 0
        assert curve.n_queries[r] == some.sum()
        if some.any():
            assert abs(curve.precision[r] - np.mean((got & rel)[some].sum(1) / got[some].sum(1))) < 1e-12
        else:
            assert np.isnan(curve.precision[r])
        has = rel.sum(1) > 0
        assert abs(curve.recall[r] - np.mean((got & rel)[has].sum(1) / rel[has].sum(1))) < 1e-12
    assert curve.recall[-1] == 1.0


# --------------------------------------------------------------------------------------- validation
def test_input_validation():
    q, d, ql, dl = make_case(17, 4, 20, 16)
    with pytest.raises(ValueError, match="16 bits, database codes 12"):
        R.mean_average_precision(q, d[:, :12], ql, dl)
    with pytest.raises(ValueError, match="classes"):
        R.mean_average_precision(q, d, ql, dl[:, :3])
    with pytest.raises(ValueError, match="database labels have shape"):
        R.mean_average_precision(q, d, ql, dl[:5])
    with pytest.raises(ValueError, match="one-hot"):
        R.mean_average_precision(q, d, ql.argmax(1), dl)
    with pytest.raises(ValueError, match="2-D"):
        R.hamming_topk(q[0], d, 3)
    with pytest.raises(ValueError, match="topk must be positive"):
        R.mean_average_precision(q, d, ql, dl, topk=0)
    with pytest.raises(ValueError, match="cannot hold bits=20"):
        R.hamming_topk(R.pack_codes(q), R.pack_codes(d), 3, bits=20)
    with pytest.raises(ValueError, match="backend"):
        R.hamming_topk(q, d, 3, backend="gpu")
    with pytest.raises(ValueError, match="at least one query"):
        R.mean_average_precision(q[:0], d, ql[:0], dl)
    with pytest.raises(ValueError, match="needs backend='faiss'"):
        R.hamming_topk(q, d, 3, backend="numpy", faiss_index="ivf")


def test_missing_optional_backends(monkeypatch):
    q, d, ql, dl = make_case(18, 4, 50, 16)
    expected = R.mean_average_precision(q, d, ql, dl, topk=10, backend="numpy")
    monkeypatch.setattr(RB, "_faiss", lambda: None)
    with pytest.raises(UserError, match="faiss is not installed"):
        R.hamming_topk(q, d, 3, backend="faiss")
    monkeypatch.setattr(RB, "HAVE_NUMBA", False)
    with pytest.raises(UserError, match="numba is not installed"):
        R.mean_average_precision(q, d, ql, dl, backend="numba")
    assert R.mean_average_precision(q, d, ql, dl, topk=10) == expected  # auto falls back to numpy
    assert R.HammingIndex(d).backend == "numpy"


# ----------------------------------------------------------------------------------------- processes
def test_module_does_not_import_paddle():
    code = "import sys; import utils.retrieval; assert 'paddle' not in sys.modules and 'faiss' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)


def test_benchmark_quick_smoke():
    proc = subprocess.run([sys.executable, "scripts/bench_retrieval.py", "--quick"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "identical: yes" in proc.stdout


def test_popcount_lookup_table_fallback():
    x = np.random.default_rng(19).integers(0, 2**63, (5, 7), dtype=np.uint64) * np.uint64(3)
    expected = np.array([[bin(int(v)).count("1") for v in row] for row in x])
    assert np.array_equal(RN._popcount_lut(x), expected)
