"""The numba Hamming kernels of `utils.retrieval`: parallel over query blocks, compiled on first use and
cached on disk (``cache=True``); importing this module compiles nothing. Without numba, HAVE_NUMBA is
False, `numba` is None and none of the ``_nb_*`` kernels exist (callers take the numpy path of
`utils.retrieval.kernels_numpy`, which gives identical results)."""
import numpy as np

try:  # optional accelerator; every function has a numpy path
    import numba
    from numba import types as _nbtypes
    from numba.extending import intrinsic as _intrinsic

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised only where numba is absent
    numba = None
    HAVE_NUMBA = False


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
