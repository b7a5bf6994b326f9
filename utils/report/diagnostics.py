"""Code diagnostics: the properties that make binary codes retrieve well (numpy only, no Paddle).

OrthoHash's four properties of good codes, each measured on the database codes, plus the quantity
that ties them to retrieval quality, the gap between intra- and inter-class Hamming distances:

* discriminative  — `hamming_intra_inter`: distance histograms of relevant (share >= 1 label; same
  class when single-label) and irrelevant query–database pairs, their means and the gap
  E[D_inter] − E[D_intra] (OrthoHash, Fig. 3: the larger the gap, the better the mAP);
* quantisation    — `quantization_error`: how far the continuous output is from its sign;
* bit balance     — `bit_balance`: mean of each ±1 bit over the database (0 = balanced);
* uncorrelated    — `bit_correlation`: Pearson correlation between bits, and `(1/N) BᵀB` (the slides'
  orthogonality condition, which also sees unbalanced bits);
plus `distinct_codes` (how many different codes the database uses), `codebook_stats` for methods
with one target code per class, and `random_code_map`, the chance level a trained model must beat.

A bit is 1 where the continuous value is > 0, as in `utils.retrieval` (so 0 counts as −1).
Everything that would be O(n_query × n_db) is sampled with a fixed seed so that a COCO-size database
costs seconds; small inputs are computed exactly.
"""
import numpy as np

from utils import retrieval
from utils.retrieval import binarize

__all__ = ["binarize", "bit_balance", "bit_correlation", "quantization_error", "distinct_codes",
           "hamming_intra_inter", "codebook_stats", "random_code_map"]

DEFAULT_MAX_PAIRS = 2_000_000  # sampled query–database pairs for the distance histograms (half intra)
DEFAULT_MAX_CORR_CODES = 50_000  # database codes sampled for the bit correlation
_CHUNK = 1 << 18  # pairs per step when sampling (bounded memory)


# ------------------------------------------------------------------------------------ per-code stats
def bit_balance(b):
    """Mean of each ±1 bit over the codes (float64, (bits,)): 0 = perfectly balanced, ±1 = constant."""
    b = np.asarray(b)
    if len(b) == 0:
        return np.full(b.shape[1], np.nan)
    return b.astype(np.float64).mean(axis=0)


def _sample_rows(n, max_rows, seed):
    if max_rows is None or n <= max_rows:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=int(max_rows), replace=False))


def _offdiag_stats(m):
    iu = np.triu_indices(m.shape[0], k=1)
    vals = np.abs(m[iu])
    vals = vals[np.isfinite(vals)]
    if len(vals) == 0:
        return None, None
    return float(vals.mean()), float(vals.max())


def bit_correlation(b, max_codes=DEFAULT_MAX_CORR_CODES, seed=0):
    """Correlation between bits over (at most `max_codes` seeded, sampled) ±1 codes → dict.

    ``matrix``: Pearson correlation (bits × bits). A constant bit (all +1 or all −1 over the codes) has no
    correlation: its row and column are NaN and it is left out of ``mean_abs_offdiag`` /
    ``max_abs_offdiag`` (the mean and max of |corr| over the pairs of different bits); it is counted in
    ``constant_bits`` instead. Two identical non-constant bits have correlation 1.
    ``orthogonality_mean_abs`` / ``orthogonality_max_abs``: the same statistics of ``(1/N) BᵀB`` off the
    diagonal (the slides' condition ``(1/N) BᵀB = I``); uncentred, so defined for every bit, and
    unbalanced bits raise it too (two constant bits give 1).
    Stats are None when there are fewer than two bits (or no non-constant pair).
    """
    b = np.asarray(b)
    rows = _sample_rows(len(b), max_codes, seed)
    x = b[rows].astype(np.float32)  # ±1: float32 sums are exact per block of < 2^24 rows
    n, bits = x.shape
    gram = np.zeros((bits, bits))
    for s in range(0, n, 1 << 20):  # contiguous xᵀ: BLAS' fast path (strided x.T @ x is ~10x slower)
        xb = x[s:s + (1 << 20)]
        gram += np.ascontiguousarray(xb.T) @ xb
    gram /= max(n, 1)
    mean = x.mean(axis=0, dtype=np.float64) if n else np.zeros(bits)
    cov = gram - np.outer(mean, mean)
    std = np.sqrt(np.clip(np.diag(cov), 0, None))
    constant = std < 1e-12
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.outer(std, std)
    corr[constant, :] = np.nan
    corr[:, constant] = np.nan
    np.fill_diagonal(corr, np.where(constant, np.nan, 1.0))
    corr = np.clip(corr, -1.0, 1.0)
    mean_abs, max_abs = _offdiag_stats(corr)
    o_mean, o_max = _offdiag_stats(gram)
    return {"matrix": corr, "mean_abs_offdiag": mean_abs, "max_abs_offdiag": max_abs,
            "constant_bits": [int(i) for i in np.nonzero(constant)[0]], "orthogonality_mean_abs": o_mean,
            "orthogonality_max_abs": o_max, "n_codes": int(n)}


def quantization_error(u):
    """Mean |continuous − sign| per entry, three ways (dict of floats):

    * ``normalized`` (the headline value): each code u is rescaled to RMS 1, ``ũ = u·√bits / ‖u‖₂``
      (the RMS of a ±1 code), then mean |ũ − b|. Scale-free, so HashNet's raw linear output and
      OrthoHash's batch-normalised output are comparable; 0 exactly when every |u_k| of a code is equal.
    * ``raw``: mean |u − b| on the output as it is. Its scale is method-dependent (HashNet's linear
      output is not bounded; OrthoHash's is batch-normalised), so compare it only within one method.
    * ``tanh``: mean |tanh(u) − b| (HashNet trains on tanh(β·u) with a growing β; this is β = 1).
    b = sign(u) with 0 → −1, as everywhere else.
    """
    u = np.asarray(u)
    u = u.astype(np.float64) if u.dtype != np.float32 else u  # float32 network output stays float32
    if u.ndim != 2:
        raise ValueError(f"continuous codes must be a 2-D array (n, bits), got shape {u.shape}")
    if u.size == 0:
        return {"normalized": None, "raw": None, "tanh": None}
    b = binarize(u).astype(u.dtype)
    norm = np.sqrt(np.square(u, dtype=np.float64).sum(axis=1, keepdims=True))
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(norm > 0, np.sqrt(u.shape[1]) / norm, 0.0).astype(u.dtype)
    f64 = np.float64
    return {"normalized": float(np.abs(u * scale - b).mean(dtype=f64)), "raw": float(np.abs(u - b).mean(dtype=f64)),
            "tanh": float(np.abs(np.tanh(u) - b).mean(dtype=f64))}


def _row_keys(b):
    """±1 codes → one hashable key per row (uint64 when bits <= 64, raw bytes of the words otherwise)."""
    words = retrieval.code_words(b)
    if words.shape[1] == 1:
        return words.ravel()
    return words.view(np.dtype((np.void, 8 * words.shape[1]))).ravel()


def distinct_codes(b):
    """(number of distinct codes, their share of the rows). Share 1 = every item has its own code;
    a small share means many items collide in one Hamming bucket (ties, see the tie-aware mAP)."""
    b = np.asarray(b)
    if len(b) == 0:
        return 0, None
    count = int(len(np.unique(_row_keys(b))))
    return count, count / len(b)


# ------------------------------------------------------------------------------ pair distances
def _pair_distances(qw, dw, qi, di):
    """Hamming distances of the pairs (qw[qi], dw[di]) of `retrieval.code_words` rows."""
    return retrieval.popcount(qw[qi] ^ dw[di]).sum(axis=1, dtype=np.int64)


def _pair_relevant(qlp, dlp, qi, di):
    return np.any(qlp[qi] & dlp[di], axis=1)


def _summary(hist):
    total = hist.sum()
    if total <= 0:
        return np.full(len(hist), np.nan), None
    p = hist / total
    return p, float((p * np.arange(len(hist))).sum())


def hamming_intra_inter(query_b, db_b, query_labels, db_labels, max_pairs=DEFAULT_MAX_PAIRS, seed=0):
    """Hamming distances of intra-class (relevant) and inter-class (irrelevant) query–database pairs.

    Relevant = the two share at least one label (single-label: same class), as in the mAP. Over all
    query × database pairs, each pair counting once: ``hist_intra`` / ``hist_inter`` (length bits + 1,
    each summing to 1), ``mean_intra``, ``mean_inter`` and ``gap = mean_inter − mean_intra``.

    When n_query × n_db <= max_pairs every pair is used (``exact`` True). Otherwise (seeded):
    inter-class pairs come from max_pairs/2 uniformly drawn pairs (the irrelevant ones among them);
    intra-class pairs are drawn separately, max_pairs/2 of them, so that rare classes are seen even when
    relevant pairs are rare: a query uniformly, one of its labels uniformly, a database item with that
    label uniformly; each pair is then weighted by 1 / its probability of being drawn, which makes the
    weighted histogram an unbiased estimate of the histogram over all relevant pairs (for single-label
    data the weight is just the size of the class in the database).
    ``n_intra_pairs`` / ``n_inter_pairs``: pairs behind each histogram (sampled or exact).
    """
    qb, db = np.asarray(query_b), np.asarray(db_b)
    ql, dl = np.asarray(query_labels) > 0, np.asarray(db_labels) > 0
    bits = qb.shape[1]
    nq, ndb = len(qb), len(db)
    if db.shape[1] != bits:
        raise ValueError(f"query codes have {bits} bits, database codes {db.shape[1]}")
    if ql.shape != (nq, ql.shape[1]) or dl.shape != (ndb, ql.shape[1]):
        raise ValueError(f"labels {ql.shape} / {dl.shape} do not match codes ({nq}, ·) / ({ndb}, ·)")
    h_intra = np.zeros(bits + 1)
    h_inter = np.zeros(bits + 1)
    n_intra = n_inter = 0
    exact = nq * ndb <= max_pairs
    if nq and ndb and exact:
        dist = retrieval.hamming_distance(qb, db)
        rel = (ql.astype(np.float32) @ dl.astype(np.float32).T) > 0
        h_intra = np.bincount(dist[rel], minlength=bits + 1).astype(np.float64)
        h_inter = np.bincount(dist[~rel], minlength=bits + 1).astype(np.float64)
        n_intra, n_inter = int(rel.sum()), int((~rel).sum())
    elif nq and ndb:
        rng = np.random.default_rng(seed)
        qw, dw = retrieval.code_words(qb), retrieval.code_words(db)
        qlp, dlp = np.packbits(ql, axis=1), np.packbits(dl, axis=1)
        half = max(1, int(max_pairs) // 2)
        # inter: uniform pairs, keep the irrelevant ones
        for s in range(0, half, _CHUNK):
            m = min(_CHUNK, half - s)
            qi, di = rng.integers(0, nq, m), rng.integers(0, ndb, m)
            keep = ~_pair_relevant(qlp, dlp, qi, di)
            h_inter += np.bincount(_pair_distances(qw, dw, qi[keep], di[keep]), minlength=bits + 1)
            n_inter += int(keep.sum())
        # intra: query → one of its labels (present in the database) → database item with that label
        n_label = dl.sum(axis=0)
        present = n_label > 0
        ql_eff = ql & present
        n_lab_q = ql_eff.sum(axis=1)
        eligible = np.nonzero(n_lab_q > 0)[0]
        if len(eligible):
            max_l = int(n_lab_q.max())
            lab_pad = np.zeros((nq, max_l), np.int64)  # each query's usable labels, left-aligned
            qq, cc = np.nonzero(ql_eff)
            pos = np.arange(len(qq)) - np.searchsorted(qq, qq)
            lab_pad[qq, pos] = cc
            flat_items = np.nonzero(dl.T)[1]  # database items grouped by label (row-major order)
            offset = np.r_[0, np.cumsum(n_label)[:-1]]
            inv_n = np.where(present, 1.0 / np.maximum(n_label, 1), 0.0).astype(np.float32)
            for s in range(0, half, _CHUNK):
                m = min(_CHUNK, half - s)
                qi = eligible[rng.integers(0, len(eligible), m)]
                k = (rng.random(m) * n_lab_q[qi]).astype(np.int64)
                lab = lab_pad[qi, k]
                di = flat_items[offset[lab] + (rng.random(m) * n_label[lab]).astype(np.int64)]
                shared = np.unpackbits(qlp[qi] & dlp[di], axis=1, count=ql.shape[1]).astype(np.float32)
                w = n_lab_q[qi] / (shared @ inv_n).astype(np.float64)  # ∝ 1 / P(draw this pair)
                h_intra += np.bincount(_pair_distances(qw, dw, qi, di), weights=w, minlength=bits + 1)
                n_intra += m
    p_intra, m_intra = _summary(h_intra)
    p_inter, m_inter = _summary(h_inter)
    gap = None if m_intra is None or m_inter is None else m_inter - m_intra
    return {"hist_intra": p_intra, "hist_inter": p_inter, "mean_intra": m_intra, "mean_inter": m_inter,
            "gap": gap, "n_intra_pairs": int(n_intra), "n_inter_pairs": int(n_inter), "exact": bool(exact),
            "bits": int(bits)}


# ------------------------------------------------------------------------------------- codebook
def codebook_stats(codebook, db_b=None, db_labels=None, max_codes=DEFAULT_MAX_CORR_CODES, seed=0):
    """Pairwise Hamming distances between the rows of a ±1 codebook (one target code per class):
    ``min_pairwise``, ``mean_pairwise``, ``max_pairwise`` over pairs of different rows (None for < 2 rows).

    With database codes and labels also ``nearest_is_own_class``: the share of (at most max_codes,
    sampled) database codes whose nearest codebook row (ties: smallest row) is one of their own classes
    — how often a code lands in its class's Hamming ball rather than another's.
    """
    cb = binarize(codebook)
    out = {"num_codes": int(len(cb)), "min_pairwise": None, "mean_pairwise": None, "max_pairwise": None,
           "nearest_is_own_class": None}
    if len(cb) >= 2:
        d = retrieval.hamming_distance(cb, cb)
        off = d[~np.eye(len(cb), dtype=bool)]
        out.update(min_pairwise=int(off.min()), mean_pairwise=float(off.mean()), max_pairwise=int(off.max()))
    if db_b is not None and db_labels is not None and len(db_b) and len(cb):
        db_labels = np.asarray(db_labels) > 0
        if db_labels.shape[1] == len(cb):
            rows = _sample_rows(len(db_b), max_codes, seed)
            nearest = retrieval.hamming_topk(np.asarray(db_b)[rows], cb, 1)[1][:, 0]
            out["nearest_is_own_class"] = float(db_labels[rows, nearest].mean())
    return out


def random_code_map(query_labels, db_labels, bits, topk=None, repeats=3, seed=0):
    """Chance level: the mAP of codes drawn uniformly at random (each bit ±1 with probability ½), with
    the same labels, code length and topk; mean over `repeats` seeded draws. A trained model's mAP
    means something only well above this (on lite data it is roughly the share of relevant items)."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(repeats):
        q = np.where(rng.random((len(query_labels), bits)) < 0.5, -1, 1).astype(np.int8)
        d = np.where(rng.random((len(db_labels), bits)) < 0.5, -1, 1).astype(np.int8)
        values.append(retrieval.mean_average_precision(q, d, query_labels, db_labels, topk=topk))
    return float(np.mean(values))
