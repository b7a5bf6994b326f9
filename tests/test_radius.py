"""Exact radius lookup (utils/retrieval/radius.py): every item within Hamming distance R, ordered by
(distance, index), capped — against a brute-force set, for scan, multi-index hashing and the per-query
choice, numba and numpy, code lengths that are and are not multiples of 8 or of 64."""
import numpy as np
import pytest

from utils.retrieval import HAVE_NUMBA, pack_codes
from utils.retrieval.radius import MIH_MAX_FRACTION, RadiusIndex, radius_search

BACKENDS = ["numpy"] + (["numba"] if HAVE_NUMBA else [])


def codes_with_crowds(bits, n=1500, seed=0):
    rng = np.random.default_rng(seed)
    db = rng.integers(0, 2, (n, bits)).astype(np.int8) * 2 - 1
    db[500:800] = db[0]  # one crowded bucket: 301 identical codes
    db[800:900, : bits // 2] = db[1, : bits // 2]  # half of the code shared by 101 items
    q = np.concatenate([db[:4], rng.integers(0, 2, (4, bits)).astype(np.int8) * 2 - 1, db[800:802]])
    q[1, :3] *= -1  # 3 bits away from item 1
    return db, q


def brute(q, db, r):
    d = (q[:, None, :] != db[None]).sum(-1)
    out = []
    for i in range(len(q)):
        ids = np.flatnonzero(d[i] <= r)
        ids = ids[np.lexsort((ids, d[i][ids]))]
        out.append((ids, d[i][ids]))
    return out


@pytest.mark.parametrize("bits", [12, 48, 64, 128])
@pytest.mark.parametrize("backend", BACKENDS)
def test_equals_brute_force(bits, backend):
    db, q = codes_with_crowds(bits)
    index = RadiusIndex(db, backend=backend)
    for r in range(5):
        want = brute(q, db, r)
        for alg in ("auto", "scan", "mih"):
            for cap in (None, 1, 7, 400):
                hits = index.search(q, r, max_results=cap, algorithm=alg)
                for (ids, ds), h in zip(want, hits):
                    n = len(ids) if cap is None else min(cap, len(ids))
                    assert np.array_equal(h.indices, ids[:n]), (bits, r, alg, cap)
                    assert np.array_equal(h.distances, ds[:n])
                    assert h.total == len(ids) and h.capped == (n < len(ids))
        assert {h.algorithm for h in hits} <= {"scan", "mih"}


def test_packed_input_and_one_shot():
    db, q = codes_with_crowds(48)
    a = radius_search(pack_codes(q), pack_codes(db), 2, bits=48)
    b = radius_search(q, db, 2)
    assert all(np.array_equal(x.indices, y.indices) for x, y in zip(a, b))
    with pytest.raises(ValueError, match="bits"):
        RadiusIndex(db).search(q[:, :40], 2)
    with pytest.raises(ValueError, match="radius"):
        RadiusIndex(db).search(q, -1)


def test_auto_scans_crowded_queries():
    """A query whose buckets hold more than MIH_MAX_FRACTION of the database is scanned; a rare code is
    looked up."""
    bits, n = 32, 2000
    rng = np.random.default_rng(1)
    db = np.ones((n, bits), np.int8)
    db[: n // 2] = rng.integers(0, 2, (n // 2, bits)).astype(np.int8) * 2 - 1  # half random, half identical
    index = RadiusIndex(db)
    hits = index.search(np.stack([db[-1], db[0]]), 1)
    assert [h.algorithm for h in hits] == ["scan", "mih"]
    assert MIH_MAX_FRACTION * n < n // 2


def test_radius_beyond_code_length_returns_everything():
    db, q = codes_with_crowds(12, n=200)
    hits = RadiusIndex(db).search(q[:2], 40)
    assert all(h.total == 200 and len(h.indices) == 200 for h in hits)
