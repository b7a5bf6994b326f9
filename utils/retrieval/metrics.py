"""Set and R-based retrieval metrics from one pass: precision / recall within a Hamming radius, MAP@R and
R-precision, precision@k / recall@k, the Hamming-radius curve, and open-set query groups.

    stats = rank_stats(query_codes, db_codes, query_labels, db_labels, ks=(1, 10, 100))
    stats.precision_at_radius(2), stats.recall_at_radius(2), stats.map_at_r(), stats.r_precision()

Codes, labels, relevance (shares at least one label) and the ranking (Hamming distance, ties by database
index) are those of `utils.retrieval`. One pass over the database per query gives everything here: each
query's distance histogram ``hist[q, d]`` (database items at distance d), relevant histogram
``relhist[q, d]``, relevant items in the top k for each k, and AP@R / R-precision (which need the rank of
each item only inside the top R: an exact counting sort by distance, no argsort). The numba kernel finds
a query's relevant items through per-class inverted lists of the database (its classes' items, not the
whole database). Memory is O(n_query × bits) for the histograms, O(label entries) for the inverted lists
and O(n_db) per thread; nothing of size n_query × n_db.

Definitions (R_q = the number of database items relevant to query q, N_q(r) = the items within Hamming
distance r of q, and N⁺_q(r) the relevant ones among them):

* **precision@radius r** = mean over *all* queries of N⁺_q(r) / N_q(r), a query with N_q(r) = 0
  counting 0 (``empty="zero"``, the default). This is the convention of the thuml group's released
  evaluation, thulab/DeepHash ``DeepHash/evaluation/__init__.py`` (``MAPs.get_precision_recall_by_Hamming_Radius``,
  which appends 0 for a query that retrieves nothing), and of the MATLAB hash-lookup evaluation
  (``eval_HammingRadius2HashLookup.m``, "precision 0" for an empty lookup). HashNet's own released code
  (thuml/HashNet ``pytorch/src/test.py`` and ``caffe/models/predict/*/predict_parallel.py``) and
  DeepHash-pytorch (``DeepHash-pytorch:utils/tools.py``: ``CalcTopMap``, ``CalcTopMapWithPR``; DPSH.py evaluates through
  it) compute mAP and top-k curves only, no radius metric. ``empty="exclude"`` averages only the queries
  that retrieve something (``N_q(r) > 0``), as this project's radius PR curve always did
  (`utils.retrieval.pr_curve_hamming_radius`); reporting the share of such queries next to it keeps
  a near-empty lookup from looking precise.
* **recall@radius r** = mean of N⁺_q(r) / R_q over the queries with R_q > 0 (recall is undefined for
  the others; an empty lookup has recall 0). thulab/DeepHash averages over all queries and gets 0/0 for
  R_q = 0; with R_q > 0 for every query the two agree.
* **MAP@R** (Musgrave, Belongie & Lim, "A Metric Learning Reality Check", ECCV 2020):
  AP@R_q = (1 / R_q) Σ_{i=1..R_q} P@i · rel(i) over the ranking (ties by database index), i.e. AP cut at
  rank R_q and divided by R_q, not by the relevant items found. Mean over queries with R_q > 0.
* **R-precision** = (relevant items in the top R_q) / R_q, mean over queries with R_q > 0. Both follow
  pytorch-metric-learning's AccuracyCalculator, which also leaves out queries without any relevant
  reference item. Inside the top R_q, only the bucket that straddles rank R_q depends on the tie rule
  for R-precision; MAP@R depends on the order inside every bucket above it too.
"""
from typing import NamedTuple

import numpy as np

from utils.retrieval.backends import _backend
from utils.retrieval.codes import _resolve_k
from utils.retrieval.kernels_numba import HAVE_NUMBA, _dist_proto, _query_block
from utils.retrieval.kernels_numpy import _np_rank_rows, _np_threshold
from utils.retrieval.ranking_metrics import PRCurve, _metric_inputs

if HAVE_NUMBA:  # the kernels below call these jitted helpers by their own names
    from utils.retrieval.kernels_numba import _nb_distances, _nb_threshold, _pjit, _prange

__all__ = ["RankStats", "rank_stats", "precision_recall_at_radius", "map_at_r", "r_precision", "query_groups",
           "subset_mean"]

EMPTY_RULES = ("zero", "exclude")


class RankStats(NamedTuple):
    """Per-query statistics of one ranking pass (see the module docstring for the definitions)."""

    ks: np.ndarray  # (n_k,) the k of rel_at_k (each min(k, n_db))
    hist: np.ndarray  # (nq, bits + 1) int64: database items at each Hamming distance
    relhist: np.ndarray  # (nq, bits + 1) int64: relevant database items at each distance
    rel_at_k: np.ndarray  # (nq, n_k) int64: relevant items in the top k (ties by database index)
    ap_at_r: np.ndarray  # (nq,) float64: AP@R_q (0 where R_q = 0)
    rel_at_r: np.ndarray  # (nq,) int64: relevant items in the top R_q

    @property
    def n_relevant(self):
        """R_q: relevant database items per query."""
        return self.relhist.sum(axis=1)

    def _has_relevant(self):
        return self.n_relevant > 0

    def precision_at_radius(self, radius=2, empty="zero", per_query=False):
        """Mean precision of the Hamming ball of radius r (see the module docstring for `empty`)."""
        if empty not in EMPTY_RULES:
            raise ValueError(f"empty must be one of {EMPTY_RULES}, got {empty!r}")
        r = min(int(radius), self.hist.shape[1] - 1)
        retrieved = self.hist[:, :r + 1].sum(axis=1)
        rel = self.relhist[:, :r + 1].sum(axis=1)
        prec = np.where(retrieved > 0, rel / np.maximum(retrieved, 1), 0.0)
        if per_query:
            return prec
        if empty == "exclude":
            some = retrieved > 0
            return float(prec[some].mean()) if some.any() else float("nan")
        return float(prec.mean())

    def recall_at_radius(self, radius=2):
        """Mean recall of the Hamming ball of radius r over the queries with at least one relevant item."""
        r = min(int(radius), self.hist.shape[1] - 1)
        has = self._has_relevant()
        if not has.any():
            return float("nan")
        return float((self.relhist[has, :r + 1].sum(axis=1) / self.n_relevant[has]).mean())

    def share_retrieving(self, radius=2):
        """Share of the queries with at least one database item within the radius."""
        r = min(int(radius), self.hist.shape[1] - 1)
        return float((self.hist[:, :r + 1].sum(axis=1) > 0).mean())

    def map_at_r(self):
        """MAP@R over the queries with R_q > 0 (nan when there is none)."""
        has = self._has_relevant()
        return float(self.ap_at_r[has].mean()) if has.any() else float("nan")

    def r_precision(self, per_query=False):
        """R-precision over the queries with R_q > 0 (per_query: nan where R_q = 0)."""
        n_rel = self.n_relevant
        has = n_rel > 0
        rp = np.where(has, self.rel_at_r / np.maximum(n_rel, 1), np.nan)
        if per_query:
            return rp
        return float(rp[has].mean()) if has.any() else float("nan")

    def precision_recall_at_k(self):
        """(precision@k, recall@k) arrays, as `utils.retrieval.precision_recall_at_k`."""
        precision = (self.rel_at_k / self.ks).mean(axis=0)
        has = self._has_relevant()
        recall = (self.rel_at_k[has] / self.n_relevant[has, None]).mean(axis=0) if has.any() else \
            np.full(len(self.ks), np.nan)
        return precision, recall

    def radius_curve(self):
        """Precision / recall per radius 0..bits → `utils.retrieval.PRCurve` (precision over the queries
        that retrieve something, as `pr_curve_hamming_radius`), plus precision with empty lookups
        counted 0 → (PRCurve, precision_zero (bits + 1,))."""
        retrieved = np.cumsum(self.hist, axis=1)
        rel_retrieved = np.cumsum(self.relhist, axis=1)
        some = retrieved > 0
        prec_q = np.where(some, rel_retrieved / np.maximum(retrieved, 1), 0.0)
        n_queries = some.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = prec_q.sum(axis=0) / n_queries
        has = self._has_relevant()
        recall = (rel_retrieved[has] / self.n_relevant[has, None]).mean(axis=0) if has.any() else \
            np.full(self.hist.shape[1], np.nan)
        curve = PRCurve(np.arange(self.hist.shape[1]), precision, recall, n_queries)
        return curve, prec_q.mean(axis=0)


def rank_stats(query_codes, db_codes, query_labels, db_labels, ks=(), bits=None, backend="auto"):
    """One pass over the database per query → `RankStats` (histograms, relevant@k, AP@R, relevant@R).

    ks: cut-offs for rel_at_k (None / -1 / > n_db: the whole database). backend "auto", "numba" or
    "numpy" (identical values). Codes and labels as in `utils.retrieval.mean_average_precision`.
    """
    qw, dw, ql, dl, bits = _metric_inputs(query_codes, db_codes, query_labels, db_labels, bits)
    ndb = dw.shape[0]
    ks = np.array([_resolve_k(k, ndb, "k") for k in ks], np.int64)
    backend = _backend(backend, ("auto", "numba", "numpy"))
    nq = qw.shape[0]
    hist = np.zeros((nq, bits + 1), np.int64)
    relhist = np.zeros((nq, bits + 1), np.int64)
    relk = np.zeros((nq, len(ks)), np.int64)
    ap_r = np.zeros(nq, np.float64)
    rel_r = np.zeros(nq, np.int64)
    if backend == "numba":
        kmax_ks = int(ks.max()) if len(ks) else 0
        q_off, q_cls = _csr(query_labels)
        c_off, c_items = _csr(np.asarray(db_labels).T)
        _nb_rank_stats_r(qw, dw, q_off, q_cls, c_off, c_items, ks, kmax_ks, 1.0 / np.arange(1, ndb + 1), bits,
                         _query_block(nq), _dist_proto(bits), hist, relhist, relk, ap_r, rel_r)
    else:
        _np_rank_stats_r(qw, dw, ql, dl, ks, bits, hist, relhist, relk, ap_r, rel_r)
    return RankStats(ks, hist, relhist, relk, ap_r, rel_r)


def precision_recall_at_radius(query_codes, db_codes, query_labels, db_labels, radius=2, empty="zero", bits=None,
                               backend="auto"):
    """(precision, recall) of Hamming-ball retrieval within `radius` (definitions: module docstring)."""
    s = rank_stats(query_codes, db_codes, query_labels, db_labels, (), bits, backend)
    return s.precision_at_radius(radius, empty), s.recall_at_radius(radius)


def map_at_r(query_codes, db_codes, query_labels, db_labels, bits=None, backend="auto"):
    """MAP@R (Musgrave et al. 2020), ties by database index; mean over queries with a relevant item."""
    return rank_stats(query_codes, db_codes, query_labels, db_labels, (), bits, backend).map_at_r()


def r_precision(query_codes, db_codes, query_labels, db_labels, bits=None, backend="auto"):
    """R-precision, ties by database index; mean over queries with a relevant item."""
    return rank_stats(query_codes, db_codes, query_labels, db_labels, (), bits, backend).r_precision()


# ----------------------------------------------------------------------------------------- open set
def query_groups(query_labels, unseen_classes):
    """Open-set query groups → {"seen": bool (nq,), "unseen": bool (nq,)}.

    A query is *unseen* when it holds at least one unseen class (the images an open-set training list
    leaves out: scripts/build_lists.py --unseen-classes drops every image with one), *seen* otherwise.
    """
    ql = np.asarray(query_labels) > 0
    unseen = np.zeros(ql.shape[1], bool)
    unseen[np.asarray(list(unseen_classes), np.int64)] = True
    is_unseen = (ql & unseen).any(axis=1)
    return {"seen": ~is_unseen, "unseen": is_unseen}


def subset_mean(values, mask):
    """Mean of per-query values over a boolean mask, ignoring nan; nan for an empty subset."""
    v = np.asarray(values, np.float64)[np.asarray(mask, bool)]
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else float("nan")


# ------------------------------------------------------------------------------------------ kernels
def _csr(labels):
    """0/1 matrix (rows, cols) → (offsets int64 (rows + 1,), column indices int64): each row's nonzeros."""
    rows, cols = np.nonzero(np.asarray(labels) > 0)  # row-major: sorted by row, then column
    offsets = np.zeros(np.shape(labels)[0] + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=np.shape(labels)[0]), out=offsets[1:])
    return offsets, cols.astype(np.int64)


def _np_rank_stats_r(qw, dw, ql, dl, ks, bits, hist, relhist, relk, ap_r, rel_r):
    """_np_rank_stats's rows (kernels_numpy._np_rank_rows), plus AP@R and #relevant in the top R."""
    for q, d, rel in _np_rank_rows(qw, dw, ql, dl, ks, bits, hist, relhist, relk):
        n_rel = int(relhist[q].sum())
        if n_rel == 0:
            continue
        t, _ = _np_threshold(hist[q], n_rel)
        sel = np.flatnonzero(d <= t)
        ranked = rel[sel[np.argsort(d[sel], kind="stable")[:n_rel]]]
        hits = np.cumsum(ranked)
        ap_r[q] = float(np.sum(ranked * hits / np.arange(1, n_rel + 1))) / n_rel
        rel_r[q] = int(hits[-1])


if HAVE_NUMBA:
    @_pjit
    def _nb_rank_stats_r(qw, dw, q_off, q_cls, c_off, c_items, ks, kmax_ks, inv, bits, block, dist_proto, hist,
                         relhist, relk, ap_r, rel_r):
        """Per query: distances and histograms, relevant@k, AP@R and relevant@R.

        Relevance comes from an inverted list (c_items[c_off[c]:c_off[c + 1]]: the database items of class
        c): the relevant items of a query are the union of its classes' lists, stamped in `mark`, so the
        work is the size of those lists, not of the database. One counting sort then ranks the top
        max(R_q, max ks) items: each bucket's first rank from the histogram, items in index order inside it
        (ties by database index, branch-free compaction), relevance written at its rank; a running count
        gives relevant@k for every k and AP@R.
        """
        nq, ndb = qw.shape[0], dw.shape[0]
        dist_type = dist_proto.dtype
        for blk in _prange((nq + block - 1) // block):
            dist = np.empty(ndb, dist_type)
            mark = np.zeros(ndb, np.int64)  # mark[j] == q + 1: item j is relevant to query q
            cand = np.empty(ndb, np.intp)
            rel_at = np.empty(ndb + 1, np.uint8)  # relevance by rank; slot ndb takes ranks past the cut
            cum = np.empty(ndb, np.int64)  # relevant items among the first i + 1 ranks
            offs = np.empty(bits + 1, np.int64)
            scratch = np.empty((4, bits + 1), np.int64)
            for q in range(blk * block, min(nq, (blk + 1) * block)):
                _nb_distances(qw, q, dw, dist, hist[q], scratch)
                stamp = q + 1
                n_rel = 0
                for p in range(q_off[q], q_off[q + 1]):
                    c = q_cls[p]
                    for i in range(c_off[c], c_off[c + 1]):
                        j = c_items[i]
                        if mark[j] != stamp:
                            mark[j] = stamp
                            relhist[q, dist[j]] += 1
                            n_rel += 1
                kmax = max(n_rel, kmax_ks)
                if kmax == 0:
                    continue
                t, before = _nb_threshold(hist[q], kmax)
                acc = 0
                for d in range(t + 1):
                    offs[d] = acc
                    acc += hist[q, d]
                m = 0
                for j in range(ndb):  # indices with dist <= t, in index order, without a branch
                    cand[m] = j
                    m += np.intp(dist[j] <= t)
                for c in range(m):
                    j = cand[c]
                    d = dist[j]
                    rank = offs[d]
                    offs[d] = rank + 1
                    rel_at[min(rank, kmax)] = mark[j] == stamp
                hits = 0
                s = 0.0
                for i in range(n_rel):  # AP@R over the first R ranks
                    x = rel_at[i]
                    hits += x
                    cum[i] = hits
                    s += x * hits * inv[i]
                for i in range(n_rel, kmax):
                    hits += rel_at[i]
                    cum[i] = hits
                for i in range(ks.shape[0]):
                    relk[q, i] = cum[ks[i] - 1]
                if n_rel > 0:
                    ap_r[q] = s / n_rel
                    rel_r[q] = cum[n_rel - 1]
else:  # pragma: no cover - exercised only where numba is absent
    _nb_rank_stats_r = None
