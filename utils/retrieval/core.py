"""The kernels and public functions of `utils.retrieval` (see the package docstring): packing, the numpy
and numba Hamming kernels, exact top-k search and mAP. The package `__init__` is a facade over this
module, `metrics` (radius / R-based metrics) and `radius` (radius lookup); those import this module,
never the facade."""
import functools
import math
from typing import NamedTuple

import numpy as np

try:  # optional accelerator; every function has a numpy path
    import numba
    from numba import types as _nbtypes
    from numba.extending import intrinsic as _intrinsic

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised only where numba is absent
    numba = None
    HAVE_NUMBA = False

__all__ = [
    "HAVE_NUMBA", "binarize", "pack_codes", "code_words", "popcount", "unpack_codes", "as_packed", "codes_to_hex",
    "hex_to_codes",
    "hamming_distance", "hamming_topk", "mean_average_precision", "precision_recall_at_k",
    "pr_curve_hamming_radius", "PRCurve", "HammingIndex",
]

_TOPK_INSERT_MAX_K = 32  # exact top-k by insertion lists up to this k, by counting sort above
_NUMPY_BLOCK_ELEMENTS = 1 << 22  # query block × database words per numpy step (bounded memory)


# ------------------------------------------------------------------------------------------- codes
def binarize(codes):
    """Continuous or ±1 / {0,1} codes (n, bits) → ±1 int8 (bit 1 where > 0, as everywhere here; 0 → −1)."""
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(f"codes must be a 2-D array (n, bits), got shape {codes.shape}")
    return np.where(codes > 0, 1, -1).astype(np.int8)


def pack_codes(codes):
    """±1 / {0,1} / bool codes ``(n, bits)`` → packed uint8 ``(n, ceil(bits/8))`` (bit 1 where > 0).

    Unlike `as_packed`, the input is always read as unpacked codes, whatever its dtype.
    """
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(f"codes must be a 2-D array (n, bits), got shape {codes.shape}")
    return np.packbits(codes > 0, axis=1)


def unpack_codes(packed, bits):
    """Packed uint8 ``(n, ceil(bits/8))`` → ±1 int8 ``(n, bits)``."""
    packed, bits = as_packed(_require_uint8(packed), bits)
    bits01 = np.unpackbits(packed, axis=1, count=bits)
    return (bits01.astype(np.int8) * 2 - 1).astype(np.int8)


def as_packed(codes, bits=None):
    """Normalise codes to ``(packed uint8 (n, ceil(bits/8)), bits)``.

    uint8 input is taken as already packed (padding bits beyond ``bits`` are cleared); anything else is
    unpacked codes ``(n, bits)`` with bit 1 where the value is > 0 (so 0 in ±1 input is a negative bit).
    """
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(f"codes must be a 2-D array (n, bits) or packed (n, bytes); got shape {codes.shape}"
                         " (use .reshape(1, -1) for a single code)")
    if codes.dtype == np.uint8:
        n_bytes = codes.shape[1]
        if bits is None:
            bits = 8 * n_bytes
        bits = int(bits)
        if bits <= 0 or (bits + 7) // 8 != n_bytes:
            raise ValueError(f"packed codes have {n_bytes} bytes per row, which cannot hold bits={bits}")
        packed = np.ascontiguousarray(codes)
        if bits % 8:
            packed = packed.copy()
            packed[:, -1] &= np.uint8((0xFF << (8 - bits % 8)) & 0xFF)
        return packed, bits
    if bits is not None and int(bits) != codes.shape[1]:
        raise ValueError(f"codes have {codes.shape[1]} bits per row, expected bits={bits}")
    if codes.shape[1] == 0:
        raise ValueError("codes have zero bits per row")
    return np.packbits(codes > 0, axis=1), codes.shape[1]


def codes_to_hex(codes, bits=None):
    """Codes (unpacked or packed, see `as_packed`) → one hex string per row (of the packed bytes)."""
    packed, _ = as_packed(codes, bits)
    return [row.tobytes().hex() for row in packed]


def hex_to_codes(hex_codes, bits):
    """Hex strings (one per code, as from `codes_to_hex`; a single string is one code) → ±1 int8 (n, bits)."""
    if isinstance(hex_codes, str):
        hex_codes = [hex_codes]
    bits = int(bits)
    n_bytes = (bits + 7) // 8
    rows = []
    for i, h in enumerate(hex_codes):
        try:
            raw = bytes.fromhex(h)
        except ValueError:
            raise ValueError(f"code {i}: {h!r} is not a hex string") from None
        if len(raw) != n_bytes:
            raise ValueError(f"code {i}: {h!r} has {len(raw)} bytes, {bits} bits need {n_bytes}")
        rows.append(np.frombuffer(raw, np.uint8))
    packed = np.stack(rows) if rows else np.zeros((0, n_bytes), np.uint8)
    if bits % 8 and len(packed) and np.any(packed[:, -1] & np.uint8(0xFF >> (bits % 8))):
        raise ValueError(f"hex codes have bits set beyond bit {bits}")
    return unpack_codes(packed, bits)


def _require_uint8(packed):
    packed = np.asarray(packed)
    if packed.dtype != np.uint8:
        raise ValueError(f"packed codes must be uint8, got {packed.dtype}")
    return packed


def _pair(query_codes, db_codes, bits):
    """Validate a (query, database) pair → (query packed, database packed, bits)."""
    q, d = np.asarray(query_codes), np.asarray(db_codes)
    for name, a in (("query codes", q), ("database codes", d)):
        if a.ndim != 2:
            raise ValueError(f"{name} must be a 2-D array (n, bits) or packed uint8 (n, bytes); got shape "
                             f"{a.shape} (use .reshape(1, -1) for a single code)")
    if bits is None:  # an unpacked operand knows its width
        unpacked = [a.shape[1] for a in (q, d) if a.dtype != np.uint8]
        if len(unpacked) == 2 and unpacked[0] != unpacked[1]:
            raise ValueError(f"query codes have {unpacked[0]} bits, database codes {unpacked[1]}")
        bits = unpacked[0] if unpacked else None
    try:
        qp, q_bits = as_packed(q, bits)
        dp, d_bits = as_packed(d, bits)
    except ValueError as exc:
        raise ValueError(f"query/database codes do not match: {exc}") from None
    if qp.shape[1] != dp.shape[1] or q_bits != d_bits:
        raise ValueError(f"query codes have {q_bits} bits ({qp.shape[1]} bytes), database codes {d_bits} bits "
                         f"({dp.shape[1]} bytes)")
    return qp, dp, q_bits


def code_words(codes):
    """Unpacked codes (n, bits), read as `pack_codes` does → uint64 words (n, W) for XOR-popcount."""
    return _words(pack_codes(codes))


def _words(packed):
    """Packed uint8 (n, B) → uint64 words (n, W), zero padded (distances are unchanged).

    W = ceil(B / 8) rounded up to 1, 2 or 4 (the word counts with unrolled kernels), exact above 4.
    """
    n, n_bytes = packed.shape
    n_words = max(1, (n_bytes + 7) // 8)
    n_words = 4 if n_words == 3 else n_words
    buf = np.zeros((n, 8 * n_words), np.uint8)
    buf[:, :n_bytes] = packed
    return buf.view(np.uint64)


def _label_words(labels, name, n_rows):
    labels = np.asarray(labels)
    if labels.ndim == 1:
        raise ValueError(f"{name} must be 0/1 arrays (n, n_classes); got shape {labels.shape} "
                         "(one-hot encode class indices first)")
    if labels.ndim != 2 or labels.shape[0] != n_rows:
        raise ValueError(f"{name} have shape {labels.shape}, expected ({n_rows}, n_classes) to match the codes")
    return _words(np.packbits(labels > 0, axis=1))


def _labels_pair(query_labels, db_labels, nq, ndb):
    ql = _label_words(query_labels, "query labels", nq)
    dl = _label_words(db_labels, "database labels", ndb)
    if np.shape(query_labels)[1] != np.shape(db_labels)[1]:
        raise ValueError(f"query labels have {np.shape(query_labels)[1]} classes, database labels "
                         f"{np.shape(db_labels)[1]}")
    return ql, dl


def _resolve_k(k, ndb, name="topk"):
    """None / -1 / > n_db → the whole database."""
    if k is None or k == -1:
        return ndb
    k = int(k)
    if k <= 0:
        raise ValueError(f"{name} must be positive, -1 or None (whole database), got {k}")
    return min(k, ndb)


@functools.lru_cache(maxsize=None)
def _faiss():
    """The faiss module (imported on first use, it is an optional backend), or None if not installed."""
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def _backend(backend, allowed):
    if backend not in allowed:
        raise ValueError(f"backend must be one of {', '.join(allowed)}; got {backend!r}")
    if backend == "auto":
        return "numba" if HAVE_NUMBA else "numpy"
    if backend == "numba" and not HAVE_NUMBA:
        from utils.errors import UserError

        raise UserError("backend 'numba' requested but numba is not installed (pip install numba)")
    if backend == "faiss" and _faiss() is None:
        from utils.errors import UserError

        raise UserError("backend 'faiss' requested but faiss is not installed (pip install faiss-cpu)")
    return backend


# ------------------------------------------------------------------------------------ numpy kernels
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


def _np_rank_stats(qw, dw, ql, dl, ks, bits):
    """Per query: distance histogram, relevant histogram (nq, bits+1) and #relevant in the top k for ks."""
    nq = qw.shape[0]
    hist = np.zeros((nq, bits + 1), np.int64)
    relhist = np.zeros((nq, bits + 1), np.int64)
    relk = np.zeros((nq, len(ks)), np.int64)
    for s, e in _np_blocks(nq, dw.shape[0], max(dw.shape[1], dl.shape[1])):
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
    return hist, relhist, relk


# ------------------------------------------------------------------------------------ numba kernels
if HAVE_NUMBA:
    @_intrinsic
    def _popcount(typingctx, x):
        """LLVM ctpop on a uint64 (one POPCNT instruction on x86-64), returned as int64."""
        if not isinstance(x, _nbtypes.Integer):
            return None

        def codegen(context, builder, signature, args):
            return builder.ctpop(args[0])

        return _nbtypes.int64(_nbtypes.uint64), codegen

    _jit = numba.njit(cache=True, nogil=True)
    _pjit = numba.njit(cache=True, parallel=True, nogil=True)
    _prange = numba.prange

    @_jit
    def _nb_distances(qw, q, dw, dist, hist, scratch):
        """dist[j] = d(q, j) for every database item j; hist[d] = how many items are at distance d.

        Four interleaved sub-histograms (scratch, shape (4, bits + 1)) avoid the store-to-load stall
        of consecutive increments of the same counter.
        """
        ndb, n_words = dw.shape
        scratch[:] = 0
        n4 = ndb - ndb % 4
        if n_words == 1:
            x = qw[q, 0]
            d1 = dw[:, 0]
            for j in range(0, n4, 4):
                a = _popcount(x ^ d1[j])
                b = _popcount(x ^ d1[j + 1])
                c = _popcount(x ^ d1[j + 2])
                e = _popcount(x ^ d1[j + 3])
                dist[j] = a
                dist[j + 1] = b
                dist[j + 2] = c
                dist[j + 3] = e
                scratch[0, a] += 1
                scratch[1, b] += 1
                scratch[2, c] += 1
                scratch[3, e] += 1
            for j in range(n4, ndb):
                a = _popcount(x ^ d1[j])
                dist[j] = a
                scratch[0, a] += 1
        else:
            for j in range(ndb):
                d = 0
                for w in range(n_words):
                    d += _popcount(qw[q, w] ^ dw[j, w])
                dist[j] = d
                scratch[j & 3, d] += 1
        for d in range(hist.shape[0]):
            hist[d] = scratch[0, d] + scratch[1, d] + scratch[2, d] + scratch[3, d]

    @_jit
    def _nb_threshold(hist, k):
        """(t, before) as in _np_threshold."""
        before = 0
        t = 0
        while before + hist[t] < k:
            before += hist[t]
            t += 1
        return t, before

    @_jit
    def _nb_relevant(ql, q, dl, j):
        hit = np.uint64(0)
        for w in range(dl.shape[1]):
            hit |= ql[q, w] & dl[j, w]
        return hit != 0

    @_jit
    def _nb_compact(dist, t, cand):
        """cand[:m] = indices j with dist[j] <= t, in index order (branch-free); returns m."""
        m = 0
        for j in range(dist.shape[0]):
            cand[m] = j
            m += np.intp(dist[j] <= t)
        return m

    @_jit
    def _nb_position_sums(inv, before, m):
        """(Σ_{p=1..m} 1/(before+p), Σ_{p=1..m} (p-1)/(before+p)) for a run of m ranks after `before`."""
        a = 0.0
        b = 0.0
        for p in range(m):
            x = inv[before + p]
            a += x
            b += p * x
        return a, b

    @_jit
    def _nb_expected_precision_sum(j, m, rel_before, a, b):
        """E[Σ P@i over the relevant ranks i of a run of m ranks holding j relevant items in random
        positions], with rel_before relevant items ranked earlier; a, b from _nb_position_sums."""
        if j == 0:
            return 0.0
        second = (j - 1) / (m - 1) * b if m > 1 else 0.0
        return j / m * ((rel_before + 1) * a + second)

    @_jit
    def _nb_tie_aware_ap(hist, relhist, t, m_last, inv):
        """Expected AP@k over random orders of tied items (see mean_average_precision).

        Buckets 0..t in distance order with sizes hist and relevant counts relhist; bucket t is cut
        after its first m_last ranks, so its relevant count in the top k, J, is hypergeometric. The
        expectation over J is summed outward from the mode with the pmf ratio recurrence (no factorials,
        no underflow), normalised by the sum of the weights.
        """
        full = 0.0  # E[Σ P@i] over the buckets fully inside the top k
        before = 0
        rel_before = 0
        for d in range(t):
            if relhist[d] > 0:
                a, b = _nb_position_sums(inv, before, hist[d])
                full += _nb_expected_precision_sum(relhist[d], hist[d], rel_before, a, b)
            before += hist[d]
            rel_before += relhist[d]
        n, r, m = hist[t], relhist[t], m_last
        a, b = _nb_position_sums(inv, before, m)
        lo = max(0, m - (n - r))
        hi = min(r, m)
        mode = min(hi, max(lo, (m + 1) * (r + 1) // (n + 2)))
        total = rel_before + mode
        num = (full + _nb_expected_precision_sum(mode, m, rel_before, a, b)) / total if total > 0 else 0.0
        wsum = 1.0
        w = 1.0
        for j in range(mode, hi):  # weight of j + 1 relative to the mode
            w *= (r - j) * (m - j) / ((j + 1) * (n - r - m + j + 1))
            if w < 1e-30 * wsum:  # the pmf is log-concave: the rest of the tail is negligible
                break
            num += w * (full + _nb_expected_precision_sum(j + 1, m, rel_before, a, b)) / (rel_before + j + 1)
            wsum += w
        w = 1.0
        for j in range(mode, lo, -1):  # weight of j - 1
            w *= j * (n - r - m + j) / ((r - j + 1) * (m - j + 1))
            if w < 1e-30 * wsum:
                break
            if rel_before + j - 1 > 0:
                num += w * (full + _nb_expected_precision_sum(j - 1, m, rel_before, a, b)) / (rel_before + j - 1)
            wsum += w
        return num / wsum

    @_pjit
    def _nb_map(qw, dw, ql, dl, k, bits, tie_aware, inv, block, dist_proto, out):
        nq, ndb = qw.shape[0], dw.shape[0]
        dist_type = dist_proto.dtype
        n_blocks = (nq + block - 1) // block
        for blk in _prange(n_blocks):
            dist = np.empty(ndb, dist_type)
            cand = np.empty(ndb, np.intp)
            hist = np.empty(bits + 1, np.int64)
            scratch = np.empty((4, bits + 1), np.int64)
            relhist = np.empty(bits + 1, np.int64)
            offs = np.empty(bits + 1, np.int64)
            rel_at = np.empty(k + 1, np.uint8)  # relevance by rank; slot k takes ranks past the cut
            for q in range(blk * block, min(nq, (blk + 1) * block)):
                _nb_distances(qw, q, dw, dist, hist, scratch)
                t, before = _nb_threshold(hist, k)
                m = _nb_compact(dist, t, cand)
                if tie_aware:
                    relhist[:t + 1] = 0
                    for c in range(m):
                        j = cand[c]
                        relhist[dist[j]] += _nb_relevant(ql, q, dl, j)
                    out[q] = _nb_tie_aware_ap(hist, relhist, t, k - before, inv)
                    continue
                acc = 0
                for d in range(t + 1):  # first rank of each distance bucket
                    offs[d] = acc
                    acc += hist[d]
                for c in range(m):  # exact rank = bucket start + order of appearance
                    j = cand[c]
                    d = dist[j]
                    rank = offs[d]
                    offs[d] = rank + 1
                    rel_at[min(rank, k)] = _nb_relevant(ql, q, dl, j)
                n_rel = 0
                s = 0.0
                for i in range(k):  # every rank < k was written exactly once
                    x = rel_at[i]
                    n_rel += x
                    s += x * n_rel * inv[i]
                out[q] = s / n_rel if n_rel > 0 else 0.0

    @_jit
    def _nb_insert(best_d, best_i, a, d, j):
        """Insert (d, j) into row a of the sorted lists, after entries at distance <= d; returns the
        new k-th distance."""
        p = best_d.shape[1] - 1
        while p > 0 and best_d[a, p - 1] > d:
            best_d[a, p] = best_d[a, p - 1]
            best_i[a, p] = best_i[a, p - 1]
            p -= 1
        best_d[a, p] = d
        best_i[a, p] = j
        return best_d[a, -1]

    @_pjit
    def _nb_topk_insert(qw, dw, k, bits, out_d, out_i):
        """Exact top-k, 8 queries per pass over the database, each with a sorted k-slot list.

        An item enters a list only if strictly closer than its current k-th entry, and is placed after
        entries at the same distance, so tied items stay in index order. qw rows: a multiple of 8.
        The loops for 1, 2 and 4 words per code are written out (a runtime word loop is 2-4x slower).
        """
        ndb, n_words = dw.shape
        for g in _prange(qw.shape[0] // 8):
            q0 = 8 * g
            qv = qw[q0:q0 + 8].copy()
            best_d = np.full((8, k), bits + 1, np.int64)
            best_i = np.full((8, k), -1, np.int64)
            worst = np.full(8, bits + 1, np.int64)
            if n_words == 1:
                q1 = qv[:, 0].copy()
                d1 = dw[:, 0]
                for j in range(ndb):
                    x = d1[j]
                    for a in range(8):
                        d = _popcount(q1[a] ^ x)
                        if d < worst[a]:
                            worst[a] = _nb_insert(best_d, best_i, a, d, j)
            elif n_words == 2:
                q1, q2 = qv[:, 0].copy(), qv[:, 1].copy()
                for j in range(ndb):
                    x1, x2 = dw[j, 0], dw[j, 1]
                    for a in range(8):
                        d = _popcount(q1[a] ^ x1) + _popcount(q2[a] ^ x2)
                        if d < worst[a]:
                            worst[a] = _nb_insert(best_d, best_i, a, d, j)
            elif n_words == 4:
                q1, q2, q3, q4 = qv[:, 0].copy(), qv[:, 1].copy(), qv[:, 2].copy(), qv[:, 3].copy()
                for j in range(ndb):
                    x1, x2, x3, x4 = dw[j, 0], dw[j, 1], dw[j, 2], dw[j, 3]
                    for a in range(8):
                        d = (_popcount(q1[a] ^ x1) + _popcount(q2[a] ^ x2)
                             + _popcount(q3[a] ^ x3) + _popcount(q4[a] ^ x4))
                        if d < worst[a]:
                            worst[a] = _nb_insert(best_d, best_i, a, d, j)
            else:
                for j in range(ndb):
                    for a in range(8):
                        d = 0
                        for w in range(n_words):
                            d += _popcount(qv[a, w] ^ dw[j, w])
                        if d < worst[a]:
                            worst[a] = _nb_insert(best_d, best_i, a, d, j)
            for a in range(8):
                if q0 + a < out_d.shape[0]:
                    out_d[q0 + a] = best_d[a]
                    out_i[q0 + a] = best_i[a]

    @_pjit
    def _nb_topk_count(qw, dw, k, bits, block, dist_proto, out_d, out_i):
        """Exact top-k for large k: distance histogram → threshold → counting sort of the selection."""
        nq, ndb = qw.shape[0], dw.shape[0]
        dist_type = dist_proto.dtype
        for blk in _prange((nq + block - 1) // block):
            dist = np.empty(ndb, dist_type)
            cand = np.empty(ndb, np.intp)
            hist = np.empty(bits + 1, np.int64)
            scratch = np.empty((4, bits + 1), np.int64)
            offs = np.empty(bits + 1, np.int64)
            for q in range(blk * block, min(nq, (blk + 1) * block)):
                _nb_distances(qw, q, dw, dist, hist, scratch)
                t, before = _nb_threshold(hist, k)
                m = _nb_compact(dist, t, cand)
                acc = 0
                for d in range(t + 1):
                    offs[d] = acc
                    acc += hist[d]
                for c in range(m):
                    j = cand[c]
                    d = dist[j]
                    rank = offs[d]
                    offs[d] = rank + 1
                    if rank < k:
                        out_d[q, rank] = d
                        out_i[q, rank] = j

    @_pjit
    def _nb_rank_stats(qw, dw, ql, dl, ks, bits, block, dist_proto, hist, relhist, relk):
        """Per query: distance histogram, relevant-distance histogram, #relevant in the top k per ks."""
        nq, ndb = qw.shape[0], dw.shape[0]
        dist_type = dist_proto.dtype
        for blk in _prange((nq + block - 1) // block):
            dist = np.empty(ndb, dist_type)
            rel = np.empty(ndb, np.uint8)
            scratch = np.empty((4, bits + 1), np.int64)
            for q in range(blk * block, min(nq, (blk + 1) * block)):
                _nb_distances(qw, q, dw, dist, hist[q], scratch)
                for j in range(ndb):
                    x = _nb_relevant(ql, q, dl, j)
                    rel[j] = x
                    relhist[q, dist[j]] += x
                for i in range(ks.shape[0]):
                    t, before = _nb_threshold(hist[q], ks[i])
                    total = 0
                    for d in range(t):
                        total += relhist[q, d]
                    quota = ks[i] - before
                    j = 0
                    while quota > 0:
                        if dist[j] == t:
                            total += rel[j]
                            quota -= 1
                        j += 1
                    relk[q, i] = total


def _dist_proto(bits):
    """An empty array whose dtype holds distances 0..bits (the kernels allocate their buffers with it)."""
    return np.empty(0, np.uint8 if bits < 256 else np.uint16)


def _query_block(nq):
    """Queries per parallel task: enough tasks for load balance, few enough to amortise buffers."""
    return max(1, min(64, nq // (8 * max(1, numba.get_num_threads())) or 1)) if HAVE_NUMBA else 1


# ------------------------------------------------------------------------------------------ search
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
        if backend == "auto":
            backend = "numba" if HAVE_NUMBA else ("faiss" if _faiss() is not None else "numpy")
        self.backend = _backend(backend, ("numba", "numpy", "faiss"))
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
                exact = "numba" if HAVE_NUMBA else "numpy"
                d2, i2 = _exact_topk(_words(qp[ambiguous]), self.words, k, self.bits, exact)
                dist[ambiguous, :k], idx[ambiguous, :k] = d2, i2
        return dist[:, :k].astype(np.int32), idx[:, :k].astype(np.int64)


def _faiss_index(packed, kind):
    faiss = _faiss()
    d = 8 * packed.shape[1]
    if kind == "flat":
        index = faiss.IndexBinaryFlat(d)
    elif kind == "hnsw":
        index = faiss.IndexBinaryHNSW(d, 32)
    else:
        nlist = int(min(65536, max(1, round(4 * math.sqrt(len(packed))))))
        index = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(d), d, nlist)
        index.train(packed)
        index.nprobe = max(1, nlist // 16)
    index.add(packed)
    return index


def _sort_by_dist_index(dist, idx):
    """Sort each row by (distance, index); faiss returns -1 indices for missing results, put last."""
    idx = idx.astype(np.int64)
    missing = idx < 0
    key_d = np.where(missing, np.iinfo(np.int32).max, dist)
    key_i = np.where(missing, np.iinfo(np.int64).max, idx)
    order = np.lexsort((key_i, key_d), axis=1)
    return np.take_along_axis(dist, order, 1), np.take_along_axis(idx, order, 1)


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


# ------------------------------------------------------------------------------------------ metrics
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
