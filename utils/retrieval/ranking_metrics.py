"""The metrics of the ranked list (Hamming distance, ties by database index) in `utils.retrieval`: mAP@k,
plain and tie-aware, precision@k / recall@k, and precision / recall by Hamming radius (`PRCurve`).
Definitions are in the docstrings; the R-based and radius metrics of one pass live in
`utils.retrieval.metrics`."""
from typing import NamedTuple

import numpy as np

from utils.retrieval.backends import _backend
from utils.retrieval.codes import _labels_pair, _pair, _resolve_k, _words
from utils.retrieval.kernels_numba import HAVE_NUMBA, _dist_proto, _query_block
from utils.retrieval.kernels_numpy import _np_map, _np_rank_stats

if HAVE_NUMBA:
    from utils.retrieval.kernels_numba import _nb_map, _nb_rank_stats


def _metric_inputs(query_codes, db_codes, query_labels, db_labels, bits):
    qp, dp, bits = _pair(query_codes, db_codes, bits)
    nq, ndb = qp.shape[0], dp.shape[0]
    if nq == 0 or ndb == 0:
        raise ValueError(f"need at least one query and one database item (got {nq} queries, {ndb} database)")
    ql, dl = _labels_pair(query_labels, db_labels, nq, ndb)
    return _words(qp), _words(dp), ql, dl, bits


def mean_average_precision(query_codes, db_codes, query_labels, db_labels, topk=None, tie_aware=False,
                           return_per_query=False, bits=None, backend="auto"):
    """mAP@topk under the HashNet protocol (relevant = shares at least one label with the query).

    Ranking by Hamming distance, ties by database index. For one query,
    ``AP@k = (1 / R_k) Σ_{relevant positions i <= k} P@i``, with R_k the number of relevant items in the
    top k; a query with none in the top k has AP 0 and still counts in the mean (DeepHash-pytorch's
    CalcTopMap skips such queries and uses an unstable argsort; otherwise the values are the same).
    topk None, -1 or > n_db: the whole database.

    tie_aware=True gives the expected AP over uniformly random orders of the items tied in Hamming
    distance (McSherry & Najork 2008), exactly (the expectation of the ratio, not a ratio of
    expectations). Items in buckets fully inside the top k are shuffled within their bucket; the bucket
    straddling the cut contributes its first (k − items before it) positions drawn at random from the
    bucket, so J (its relevant items in the top k) is hypergeometric. Given J = j, the j relevant items
    sit uniformly among those positions and E[Σ P@i] has a closed form, so
    ``E[AP] = Σ_j P(J = j) · (E[S_full] + E[S_cut | j]) / (R_before + j)``. It depends only on each
    bucket's size and relevant count, hence not on the database order.

    Returns a float, or ``(float, per-query AP float64 array)`` with return_per_query. backend: "auto",
    "numba" or "numpy" (identical values). Memory is bounded (queries in blocks; O(n_db) per thread).
    """
    qw, dw, ql, dl, bits = _metric_inputs(query_codes, db_codes, query_labels, db_labels, bits)
    k = _resolve_k(topk, dw.shape[0])
    backend = _backend(backend, ("auto", "numba", "numpy"))
    if backend == "numba":
        ap = np.empty(qw.shape[0], np.float64)
        _nb_map(qw, dw, ql, dl, k, bits, bool(tie_aware), 1.0 / np.arange(1, k + 1), _query_block(len(qw)),
                _dist_proto(bits), ap)
    else:
        ap = _np_map(qw, dw, ql, dl, k, bits, bool(tie_aware))
    value = float(ap.mean())
    return (value, ap) if return_per_query else value


def _rank_stats(query_codes, db_codes, query_labels, db_labels, ks, bits, backend):
    qw, dw, ql, dl, bits = _metric_inputs(query_codes, db_codes, query_labels, db_labels, bits)
    ks = np.array([_resolve_k(k, dw.shape[0], "k") for k in ks], np.int64)
    backend = _backend(backend, ("auto", "numba", "numpy"))
    if backend == "numba":
        nq = qw.shape[0]
        hist = np.zeros((nq, bits + 1), np.int64)
        relhist = np.zeros((nq, bits + 1), np.int64)
        relk = np.zeros((nq, len(ks)), np.int64)
        _nb_rank_stats(qw, dw, ql, dl, ks, bits, _query_block(nq), _dist_proto(bits), hist, relhist, relk)
        return ks, hist, relhist, relk
    return (ks,) + _np_rank_stats(qw, dw, ql, dl, ks, bits)


def precision_recall_at_k(query_codes, db_codes, query_labels, db_labels, ks, bits=None, backend="auto"):
    """Mean precision@k and recall@k for each k in ks (same ranking: distance, then database index).

    precision@k = relevant in the top k' / k' with k' = min(k, n_db), averaged over all queries.
    recall@k = relevant in the top k / relevant in the database, averaged over the queries that have at
    least one relevant database item (recall is undefined for the others). Returns two float64 arrays.
    """
    ks_in = np.atleast_1d(np.asarray(ks))
    if ks_in.ndim != 1 or len(ks_in) == 0:
        raise ValueError(f"ks must be a non-empty list of positive ints, got {ks!r}")
    ks, _, relhist, relk = _rank_stats(query_codes, db_codes, query_labels, db_labels, ks_in.tolist(), bits,
                                       backend)
    precision = (relk / ks).mean(axis=0)
    total = relhist.sum(axis=1)
    has = total > 0
    recall = (relk[has] / total[has, None]).mean(axis=0) if has.any() else np.full(len(ks), np.nan)
    return precision, recall


class PRCurve(NamedTuple):
    """Precision / recall per Hamming radius r = 0..bits (retrieved: distance <= r)."""

    radius: np.ndarray  # 0..bits
    precision: np.ndarray  # mean over queries with >= 1 retrieved item (nan where there is none)
    recall: np.ndarray  # mean over queries with >= 1 relevant database item
    n_queries: np.ndarray  # queries with >= 1 retrieved item, per radius (those averaged in precision)


def pr_curve_hamming_radius(query_codes, db_codes, query_labels, db_labels, bits=None, backend="auto"):
    """Precision and recall of Hamming-ball retrieval for every radius 0..bits → `PRCurve`.

    A query that retrieves nothing within radius r has no precision there: it is left out of that
    radius' mean, and ``n_queries[r]`` says how many queries were averaged. Recall averages over queries
    with at least one relevant database item. Computed from per-query distance histograms.
    """
    _, hist, relhist, _ = _rank_stats(query_codes, db_codes, query_labels, db_labels, [1], bits, backend)
    retrieved = np.cumsum(hist, axis=1)
    rel_retrieved = np.cumsum(relhist, axis=1)
    some = retrieved > 0
    n_queries = some.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(some, rel_retrieved / np.maximum(retrieved, 1), 0.0).sum(axis=0) / n_queries
        total = relhist.sum(axis=1)
        has = total > 0
        recall = (rel_retrieved[has] / total[has, None]).mean(axis=0) if has.any() else \
            np.full(hist.shape[1], np.nan)
    return PRCurve(np.arange(hist.shape[1]), precision, recall, n_queries)
