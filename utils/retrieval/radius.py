"""Radius lookup: every database item within Hamming distance R of a query — hashing's own use — exact,
ordered by (distance, index), optionally capped.

    index = RadiusIndex(db_codes)                    # packed uint8 or unpacked codes, as everywhere here
    hits = index.search(query_codes, radius=2, max_results=1000)
    hits[0].indices, hits[0].distances, hits[0].total, hits[0].capped
    hits[0].algorithm                                 # "scan" or "mih": how that query was answered

Two exact algorithms, chosen per query:

* **scan**: one pass over the database codes (XOR + popcount). Two passes when capped: the first counts
  items per distance 0..R, which fixes the distance at which the cap falls and how many items of that
  distance are kept, the second gathers exactly those, so memory is bounded by ``max_results`` whatever
  the number within R.
* **mih**: multi-index hashing (Norouzi, Punjani & Fleet, "Fast Search in Hamming Space with Multi-Index
  Hashing", CVPR 2012 / TPAMI 2014) with m = R + 1 disjoint substrings: by the pigeonhole principle an
  item within distance R of the query equals it exactly on at least one substring, so the union of the
  m exact-match buckets holds every answer (more substrings keep that true: m is raised so that none
  is longer than 64 bits); each candidate is then checked on the whole code. A bucket
  is a range of a sorted array (`np.searchsorted`), built once per m and kept.

Per query, the m bucket sizes are known before any candidate is read (two binary searches each); when
their sum exceeds `MIH_MAX_FRACTION` of the database the query is scanned instead. Codes that crowd into
a few buckets (trained codes often do) therefore do not make the lookup much slower than a scan. The
constant is the measured crossover: `python scripts/bench_index.py --radius-crossover` times both
algorithms on crowded codes of 1M items and prints the candidate fraction beside the time ratio (on this
2-core machine MIH with the numba check took 0.01-0.3 of the scan's time up to about 5% of the database,
0.6-0.9 near 8-10%, and about as long (0.95) at 15%).
"""
import threading
from typing import NamedTuple

import numpy as np

from utils.retrieval.codes import _words, as_packed
from utils.retrieval.kernels_numba import HAVE_NUMBA, numba

MIH_MAX_FRACTION = 0.1  # candidates (as a fraction of the database) above which a query is scanned
_SCAN_BLOCK = 1 << 16  # database rows per numpy step of the scan (bounded memory)


class RadiusHits(NamedTuple):
    indices: np.ndarray  # int64 database indices, ordered by (distance, index)
    distances: np.ndarray  # int64, the same order
    total: int  # how many items are within the radius (before the cap)
    capped: bool  # True when max_results cut the list
    algorithm: str = "scan"  # "scan" or "mih": how the query was answered


_POP8 = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def _popcount_words(x):
    """Bit counts of a uint64 array (numpy path)."""
    return _POP8[x.view(np.uint8)].reshape(x.shape + (8,)).sum(-1, dtype=np.int64)


def _np_distances(q, dw):
    """Distances (int64) of one query's words q (W,) to every row of dw (n, W)."""
    out = np.empty(len(dw), np.int64)
    for s in range(0, len(dw), _SCAN_BLOCK):
        out[s:s + _SCAN_BLOCK] = _popcount_words(dw[s:s + _SCAN_BLOCK] ^ q).sum(1)
    return out


if HAVE_NUMBA:
    from utils.retrieval.kernels_numba import _popcount

    @numba.njit(cache=True, nogil=True)
    def _nb_radius_count(q, dw, radius, counts):
        """counts[d] = items at distance d, for d <= radius."""
        counts[:] = 0
        for j in range(dw.shape[0]):
            d = 0
            for w in range(dw.shape[1]):
                d += _popcount(q[w] ^ dw[j, w])
            if d <= radius:
                counts[d] += 1

    @numba.njit(cache=True, nogil=True)
    def _nb_radius_gather(q, dw, cut, keep_at_cut, out_i, out_d):
        """Items at distance < cut, and the first `keep_at_cut` (by index) at distance == cut, in index
        order; returns how many were written."""
        n, left = 0, keep_at_cut
        for j in range(dw.shape[0]):
            d = 0
            for w in range(dw.shape[1]):
                d += _popcount(q[w] ^ dw[j, w])
            if d < cut or (d == cut and left > 0):
                if d == cut:
                    left -= 1
                out_i[n] = j
                out_d[n] = d
                n += 1
        return n


    @numba.njit(cache=True, nogil=True)
    def _nb_mih_verify(q, dw, orders, lo, hi, masks, radius, out_i, out_d):
        """Candidates of the m buckets orders[t, lo[t]:hi[t]] checked on the whole code. An item in several
        buckets is counted in the first only: it is skipped in bucket t when it also equals the query on an
        earlier substring (a mask test on q ^ x, no set needed). Returns how many were written."""
        n_words = dw.shape[1]
        n = 0
        for t in range(orders.shape[0]):
            for p in range(lo[t], hi[t]):
                j = orders[t, p]
                dup = False
                for u in range(t):
                    zero = True
                    for w in range(n_words):
                        if (q[w] ^ dw[j, w]) & masks[u, w]:
                            zero = False
                            break
                    if zero:
                        dup = True
                        break
                if dup:
                    continue
                d = 0
                for w in range(n_words):
                    d += _popcount(q[w] ^ dw[j, w])
                if d <= radius:
                    out_i[n] = j
                    out_d[n] = d
                    n += 1
        return n


def _order(idx, dist):
    o = np.lexsort((idx, dist))
    return idx[o], dist[o]


def _cap(counts, max_results):
    """(distance at which the cap falls, items of that distance kept, total) from per-distance counts."""
    total = int(counts.sum())
    if max_results is None or total <= max_results:
        return len(counts) - 1, int(counts[-1]), total
    before = 0
    for d, c in enumerate(counts):
        if before + c >= max_results:
            return d, int(max_results - before), total
        before += int(c)
    raise AssertionError("unreachable")


class RadiusIndex:
    """Exact radius lookup over a fixed database of codes (see the module docstring)."""

    def __init__(self, codes, bits=None, backend="auto"):
        self._packed, self.bits = as_packed(codes, bits)
        self._words = _words(self._packed)
        self._use_numba = HAVE_NUMBA and backend in ("auto", "numba")
        if backend not in ("auto", "numba", "numpy"):
            raise ValueError(f"unknown backend {backend!r}; choose auto, numba or numpy")
        self._tables = {}  # m -> (sorted keys, orders, masks), built on first use
        self._build_lock = threading.Lock()  # searches may run in several threads: build each table once

    def __len__(self):
        return len(self._words)

    # -------------------------------------------------------------------------------- substrings
    def _bounds(self, m):
        """m contiguous substrings of the `bits` bits, lengths differing by at most one, each <= 64 bits."""
        edges = np.linspace(0, self.bits, m + 1).round().astype(int)
        return list(zip(edges[:-1], edges[1:]))

    def _keys(self, packed, m):
        """(n, m) uint64 substring values of packed codes."""
        n = len(packed)
        keys = np.zeros((n, m), np.uint64)
        step = 1 << 18
        for s in range(0, n, step):
            bits = np.unpackbits(packed[s:s + step], axis=1)[:, :self.bits]
            for t, (a, b) in enumerate(self._bounds(m)):
                sub = bits[:, a:b]
                width = b - a
                pad = np.zeros((len(sub), 64 - width), np.uint8)
                keys[s:s + step, t] = np.packbits(np.concatenate([pad, sub], 1), axis=1).view(">u8")[:, 0]
        return keys

    def _masks(self, m):
        """(m, W) uint64: substring t's bits as a mask over the code's words (for the duplicate test)."""
        masks = np.zeros((m, self._words.shape[1] * 64), np.uint8)
        for t, (a, b) in enumerate(self._bounds(m)):
            masks[t, a:b] = 1
        return np.packbits(masks, axis=1).view(np.uint64)

    def _table(self, m):
        """(sorted keys (m, n) uint64, orders (m, n) int32/int64, masks (m, W)) for m substrings."""
        if m in self._tables:
            return self._tables[m]
        with self._build_lock:
            if m in self._tables:
                return self._tables[m]
            keys = self._keys(self._packed, m)
            n = len(keys)
            orders = np.empty((m, n), np.int32 if n < 2**31 else np.int64)
            sorted_keys = np.empty((m, n), np.uint64)
            for t in range(m):
                orders[t] = np.argsort(keys[:, t], kind="stable")
                sorted_keys[t] = keys[orders[t], t]
            self._tables[m] = (sorted_keys, orders, self._masks(m))
            return self._tables[m]

    # ------------------------------------------------------------------------------------ search
    def _scan(self, q, radius, max_results):
        dw = self._words
        if self._use_numba:
            counts = np.zeros(radius + 1, np.int64)
            _nb_radius_count(q, dw, radius, counts)
            cut, keep, total = _cap(counts, max_results)
            n_out = int(counts[:cut].sum()) + keep
            out_i, out_d = np.empty(n_out, np.int64), np.empty(n_out, np.int64)
            _nb_radius_gather(q, dw, cut, keep, out_i, out_d)
            idx, dist = _order(out_i, out_d)
            return RadiusHits(idx, dist, total, total > n_out)
        d = _np_distances(q, dw)
        idx = np.flatnonzero(d <= radius)
        idx, dist = _order(idx, d[idx])
        total = len(idx)
        if max_results is not None and total > max_results:
            return RadiusHits(idx[:max_results], dist[:max_results], total, True)
        return RadiusHits(idx, dist, total, False)

    def _buckets(self, qkeys, m, limit=MIH_MAX_FRACTION):
        """The m buckets of one query ((lo, hi) per substring), or None when their sizes sum past the scan
        threshold."""
        sorted_keys, _, _ = self._table(m)
        lo = np.array([np.searchsorted(sorted_keys[t], qkeys[t], "left") for t in range(m)], np.int64)
        hi = np.array([np.searchsorted(sorted_keys[t], qkeys[t], "right") for t in range(m)], np.int64)
        return None if limit is not None and (hi - lo).sum() > limit * len(self) else (lo, hi)

    def _verify(self, q, buckets, m, radius, max_results):
        lo, hi = buckets
        _, orders, masks = self._table(m)
        if self._use_numba:
            size = int((hi - lo).sum())
            out_i, out_d = np.empty(size, np.int64), np.empty(size, np.int64)
            n = _nb_mih_verify(q, self._words, orders, lo, hi, masks, radius, out_i, out_d)
            idx, dist = _order(out_i[:n], out_d[:n])
        else:
            cand = np.unique(np.concatenate([orders[t, lo[t]:hi[t]] for t in range(m)])).astype(np.int64)
            d = _popcount_words(self._words[cand] ^ q).sum(1)
            keep = d <= radius
            idx, dist = _order(cand[keep], d[keep])
        total = len(idx)
        if max_results is not None and total > max_results:
            return RadiusHits(idx[:max_results], dist[:max_results], total, True)
        return RadiusHits(idx, dist, total, False)

    def search(self, query_codes, radius, max_results=None, algorithm="auto"):
        """[RadiusHits] per query: every item within `radius`, ordered by (distance, index), at most
        `max_results` of them. `algorithm`: "auto" (per query, see the module docstring), "scan" or "mih"."""
        radius = int(radius)
        if radius < 0:
            raise ValueError(f"radius must be >= 0, got {radius}")
        if max_results is not None and max_results < 1:
            raise ValueError(f"max_results must be >= 1, got {max_results}")
        if algorithm not in ("auto", "scan", "mih"):
            raise ValueError(f"unknown algorithm {algorithm!r}; choose auto, scan or mih")
        qp, qbits = as_packed(query_codes, self.bits if np.asarray(query_codes).dtype == np.uint8 else None)
        if qbits != self.bits:
            raise ValueError(f"query codes have {qbits} bits, the database {self.bits}")
        qw = _words(qp)
        radius_eff = min(radius, self.bits)
        m = max(radius_eff + 1, -(-self.bits // 64))  # >= R + 1 substrings (pigeonhole), each <= 64 bits
        use_mih = algorithm != "scan" and len(self) > 0 and m <= self.bits
        qkeys = self._keys(qp, m) if use_mih else None
        out = []
        for i in range(len(qw)):
            buckets = self._buckets(qkeys[i], m) if use_mih else None
            if buckets is None and algorithm == "mih" and use_mih:  # forced: the buckets, however large
                buckets = self._buckets(qkeys[i], m, limit=None)
            if buckets is None:
                out.append(self._scan(qw[i], radius_eff, max_results))
            else:
                out.append(self._verify(qw[i], buckets, m, radius_eff, max_results)._replace(algorithm="mih"))
        return out


def radius_search(query_codes, db_codes, radius, max_results=None, bits=None, algorithm="auto"):
    """One-shot `RadiusIndex(db_codes, bits).search(query_codes, radius, max_results, algorithm)`."""
    return RadiusIndex(db_codes, bits).search(query_codes, radius, max_results, algorithm)
