"""Exact Hamming top-k search of `utils.retrieval`: `hamming_distance` (small full matrices),
`hamming_topk` and `HammingIndex` (a database prepared once for numba, numpy or faiss). Results are
sorted by (distance, database index) on every backend."""
import numpy as np

from utils.retrieval.backends import _exact_backend, _search_backend
from utils.retrieval.codes import _pair, _resolve_k, _words, as_packed
from utils.retrieval.faiss_bridge import _faiss_index, _sort_by_dist_index
from utils.retrieval.kernels_numba import HAVE_NUMBA, _dist_proto, _query_block
from utils.retrieval.kernels_numpy import _np_blocks, _np_dist, _np_topk

if HAVE_NUMBA:
    from utils.retrieval.kernels_numba import _nb_topk_count, _nb_topk_insert

_TOPK_INSERT_MAX_K = 32  # exact top-k by insertion lists up to this k, by counting sort above


def hamming_distance(query_codes, db_codes, bits=None):
    """Full Hamming distance matrix (nq, n_db) int32. For small inputs only (tests, a few queries)."""
    qp, dp, bits = _pair(query_codes, db_codes, bits)
    if qp.shape[0] * dp.shape[0] > 1 << 28:
        raise ValueError(f"hamming_distance of {qp.shape[0]} × {dp.shape[0]} codes would allocate "
                         f"{qp.shape[0] * dp.shape[0] * 4 / 2**30:.1f} GiB; use hamming_topk")
    qw, dw = _words(qp), _words(dp)
    out = np.empty((qp.shape[0], dp.shape[0]), np.int32)
    for s, e in _np_blocks(qp.shape[0], dp.shape[0], dw.shape[1]):
        out[s:e] = _np_dist(qw[s:e], dw)
    return out


def hamming_topk(query_codes, db_codes, k, backend="auto", faiss_index="flat", bits=None):
    """Exact k nearest database codes per query: ``(distances int32 (nq, k'), indices int64 (nq, k'))``.

    k' = min(k, n_db); rows are sorted by (distance, database index). Memory is bounded for any database
    size (queries are processed in blocks; nothing of size nq × n_db is allocated).

    backend: "numba" (8 queries per database pass with insertion lists for k <= 32, counting sort by
    distance above), "numpy" (same results, slower), "faiss" (``IndexBinaryFlat``, ties re-sorted by
    index so results equal the other backends), "auto" (numba, else faiss, else numpy).
    faiss_index: "flat" (exact) or, with backend "faiss" only, "ivf" / "hnsw": approximate indexes whose
    results are sorted the same way but may miss true neighbours.
    """
    qp, dp, bits = _pair(query_codes, db_codes, bits)
    return _Searcher(dp, bits, backend, faiss_index).search_packed(qp, k)


class _Searcher:
    """A database prepared for one backend (words for numba/numpy, a faiss index for faiss)."""

    def __init__(self, packed, bits, backend, faiss_index):
        if faiss_index not in ("flat", "ivf", "hnsw"):
            raise ValueError(f"faiss_index must be 'flat', 'ivf' or 'hnsw'; got {faiss_index!r}")
        self.backend = _search_backend(backend)
        if faiss_index != "flat" and self.backend != "faiss":
            raise ValueError(f"faiss_index={faiss_index!r} needs backend='faiss'")
        self.packed, self.bits, self.kind = packed, bits, faiss_index
        self.words = _words(packed)
        self.index = _faiss_index(packed, faiss_index) if self.backend == "faiss" and len(packed) else None

    def search_packed(self, qp, k):
        ndb = self.packed.shape[0]
        if ndb == 0:
            raise ValueError("the database is empty")
        k = _resolve_k(k, ndb, "k")
        if self.backend == "faiss":
            return self._faiss_search(qp, k)
        return _exact_topk(_words(qp), self.words, k, self.bits, self.backend)

    def _faiss_search(self, qp, k):
        """faiss search, then ties re-sorted by index. For the flat index, a row is exact once the
        search returned an item farther than its k-th; rows that stay ambiguous after widening are
        ranked by the exact engine."""
        ndb = self.packed.shape[0]
        extra = k if self.kind == "flat" else 0
        kk = min(ndb, k + max(extra, 8))
        dist, idx = self.index.search(qp, kk)
        dist, idx = _sort_by_dist_index(dist, idx)
        if self.kind == "flat" and kk < ndb:
            ambiguous = np.flatnonzero(dist[:, kk - 1] == dist[:, k - 1])
            if len(ambiguous):  # ties reach past the returned list: rank these rows exactly
                d2, i2 = _exact_topk(_words(qp[ambiguous]), self.words, k, self.bits, _exact_backend())
                dist[ambiguous, :k], idx[ambiguous, :k] = d2, i2
        return dist[:, :k].astype(np.int32), idx[:, :k].astype(np.int64)


def _exact_topk(qw, dw, k, bits, backend):
    nq = qw.shape[0]
    if backend == "numpy" or nq == 0:
        return _np_topk(qw, dw, k, bits)
    out_d = np.empty((nq, k), np.int64)
    out_i = np.empty((nq, k), np.int64)
    if k <= _TOPK_INSERT_MAX_K:
        pad = (-nq) % 8
        qpad = np.concatenate([qw, np.zeros((pad, qw.shape[1]), np.uint64)]) if pad else qw
        _nb_topk_insert(qpad, dw, k, bits, out_d, out_i)
    else:
        _nb_topk_count(qw, dw, k, bits, _query_block(nq), _dist_proto(bits), out_d, out_i)
    return out_d.astype(np.int32), out_i


class HammingIndex:
    """A database of codes to search, faiss style: ``dist, idx = HammingIndex(db_codes).search(q, k)``.

    codes: unpacked or packed (see `as_packed`); backend / faiss_index as in `hamming_topk`. The database
    is prepared once (packed words, or a faiss index), so repeated searches only pay for the queries.
    """

    def __init__(self, codes, bits=None, backend="auto", faiss_index="flat"):
        packed, self.bits = as_packed(codes, bits)
        self._searcher = _Searcher(packed, self.bits, backend, faiss_index)
        self.backend = self._searcher.backend

    def __len__(self):
        return self._searcher.packed.shape[0]

    def search(self, query_codes, k):
        """→ (distances int32 (nq, k'), indices int64 (nq, k')), sorted by (distance, index)."""
        q = np.asarray(query_codes)
        if q.ndim != 2:
            raise ValueError(f"query codes must be 2-D (n, bits); got shape {q.shape} (use .reshape(1, -1))")
        qp, _, _ = _pair(q, self._searcher.packed, self.bits)
        return self._searcher.search_packed(qp, k)
