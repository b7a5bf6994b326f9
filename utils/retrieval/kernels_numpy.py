"""The numpy Hamming kernels of `utils.retrieval` (the path used without numba, and the reference the numba
kernels equal): popcount, distance blocks of bounded size, the top-k threshold from a distance histogram,
top-k, mAP (plain and tie-aware) and per-query rank statistics. Inputs are the uint64 words of
`utils.retrieval.codes`."""
import numpy as np

_NUMPY_BLOCK_ELEMENTS = 1 << 22  # query block × database words per numpy step (bounded memory)

_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def _popcount_lut(x):
    """Per-element popcount of a uint64 array by a byte lookup table (numpy < 2.0 has no bitwise_count)."""
    return _POPCOUNT8[x.view(np.uint8)].reshape(x.shape + (8,)).sum(-1, dtype=np.uint8)


popcount = getattr(np, "bitwise_count", _popcount_lut)  # per element, uint64 in; sum it over the words


def _np_dist(qw, dw):
    """Hamming distances (nq, ndb) int32 between uint64 word arrays (caller keeps nq × ndb small)."""
    return popcount(qw[:, None, :] ^ dw[None, :, :]).sum(-1, dtype=np.int32)


def _np_blocks(nq, ndb, n_words):
    """Query ranges whose distance blocks stay under _NUMPY_BLOCK_ELEMENTS."""
    step = max(1, _NUMPY_BLOCK_ELEMENTS // max(1, ndb * n_words))
    return [(s, min(nq, s + step)) for s in range(0, nq, step)]


def _np_threshold(hist, k):
    """(t, before): the distance of the k-th ranked item and how many items lie strictly closer."""
    cum = np.cumsum(hist)
    t = int(np.searchsorted(cum, k))
    return t, int(cum[t] - hist[t])


def _np_top(d, k, bits):
    """Indices of the k nearest (ties by index) given one row of distances, in rank order."""
    t, _ = _np_threshold(np.bincount(d, minlength=bits + 1), k)
    sel = np.flatnonzero(d <= t)
    return sel[np.argsort(d[sel], kind="stable")[:k]]


def _np_topk(qw, dw, k, bits):
    nq = qw.shape[0]
    out_d = np.empty((nq, k), np.int32)
    out_i = np.empty((nq, k), np.int64)
    for s, e in _np_blocks(nq, dw.shape[0], dw.shape[1]):
        dist = _np_dist(qw[s:e], dw)
        for r, d in enumerate(dist):
            top = _np_top(d, k, bits)
            out_i[s + r] = top
            out_d[s + r] = d[top]
    return out_d, out_i


def _np_relevant(ql_row, dl):
    return (dl & ql_row).any(axis=1)


def _np_map(qw, dw, ql, dl, k, bits, tie_aware):
    nq = qw.shape[0]
    ap = np.zeros(nq, np.float64)
    inv = 1.0 / np.arange(1, k + 1)
    for s, e in _np_blocks(nq, dw.shape[0], dw.shape[1]):
        dist = _np_dist(qw[s:e], dw)
        for r, d in enumerate(dist):
            q = s + r
            hist = np.bincount(d, minlength=bits + 1)
            t, before = _np_threshold(hist, k)
            sel = np.flatnonzero(d <= t)
            rel = _np_relevant(ql[q], dl[sel])
            if tie_aware:
                relhist = np.bincount(d[sel], weights=rel, minlength=t + 1).astype(np.int64)
                ap[q] = _np_tie_aware_ap(hist[:t + 1], relhist[:t + 1], k - before, inv)
            else:
                rel_ranked = rel[np.argsort(d[sel], kind="stable")[:k]]
                n_rel = np.cumsum(rel_ranked)
                if n_rel[-1]:
                    ap[q] = np.sum(rel_ranked * n_rel * inv) / n_rel[-1]
    return ap


def _np_tie_aware_ap(n, r, m_last, inv):
    """Expected AP@k over random orders of tied items (see `mean_average_precision`), numpy version.

    n, r: size and relevant count of the buckets 0..t (distance order); the last bucket straddles the
    cut and contributes its first ``m_last`` positions. inv[i] = 1 / (i + 1).
    """
    n = n.astype(np.int64)
    r = r.astype(np.int64)
    m = n.copy()
    m[-1] = m_last
    start = np.concatenate([[0], np.cumsum(n)[:-1]])  # items before each bucket
    rel_before = np.concatenate([[0], np.cumsum(r)[:-1]])
    pos = np.arange(int(start[-1] + m_last))
    bucket = np.repeat(np.arange(len(n)), m)
    a = np.bincount(bucket, weights=inv[pos], minlength=len(n))  # Σ_p 1/(N+p)
    b = np.bincount(bucket, weights=(pos - start[bucket]) * inv[pos], minlength=len(n))  # Σ_p (p-1)/(N+p)

    def expected_sum(j, mm, a_, b_, rb):  # E[Σ precision over relevant in a bucket of mm with j relevant]
        second = np.where(mm > 1, (j - 1) / np.maximum(mm - 1, 1), 0.0) * b_
        return np.where(j > 0, j / np.maximum(mm, 1) * ((rb + 1) * a_ + second), 0.0)

    full = float(np.sum(expected_sum(r[:-1], m[:-1], a[:-1], b[:-1], rel_before[:-1])))
    nt, rt, mt, big_r = int(n[-1]), int(r[-1]), int(m_last), int(rel_before[-1])
    lo, hi = max(0, mt - (nt - rt)), min(rt, mt)
    j = np.arange(lo, hi + 1)
    # hypergeometric log-pmf up to a constant, from the ratio recurrence (no lgamma, no underflow)
    log_ratio = np.log((rt - j[:-1]) * (mt - j[:-1])) - np.log((j[:-1] + 1) * (nt - rt - mt + j[:-1] + 1))
    logw = np.concatenate([[0.0], np.cumsum(log_ratio)])
    w = np.exp(logw - logw.max())
    s = full + expected_sum(j, mt, a[-1], b[-1], big_r)
    denom = big_r + j
    value = np.where(denom > 0, s / np.maximum(denom, 1), 0.0)
    return float(np.sum(w * value) / np.sum(w))


def _np_rank_rows(qw, dw, ql, dl, ks, bits, hist, relhist, relk):
    """For every query, fill its row of the distance histogram, the relevant histogram (nq, bits+1) and
    #relevant in the top k for ks (ties by database order); yield (q, its distances, its relevance) for
    callers that compute more per query (utils/retrieval/metrics.py: AP@R)."""
    for s, e in _np_blocks(qw.shape[0], dw.shape[0], max(dw.shape[1], dl.shape[1])):
        dist = _np_dist(qw[s:e], dw)
        for r, d in enumerate(dist):
            q = s + r
            rel = _np_relevant(ql[q], dl)
            hist[q] = np.bincount(d, minlength=bits + 1)
            relhist[q] = np.bincount(d, weights=rel, minlength=bits + 1)
            for i, k in enumerate(ks):
                t, before = _np_threshold(hist[q], k)
                tied = np.flatnonzero(d == t)[:k - before]
                relk[q, i] = relhist[q, :t].sum() + rel[tied].sum()
            yield q, d, rel


def _np_rank_stats(qw, dw, ql, dl, ks, bits):
    """Per query: distance histogram, relevant histogram (nq, bits+1) and #relevant in the top k for ks."""
    nq = qw.shape[0]
    hist = np.zeros((nq, bits + 1), np.int64)
    relhist = np.zeros((nq, bits + 1), np.int64)
    relk = np.zeros((nq, len(ks)), np.int64)
    for _ in _np_rank_rows(qw, dw, ql, dl, ks, bits, hist, relhist, relk):
        pass
    return hist, relhist, relk
