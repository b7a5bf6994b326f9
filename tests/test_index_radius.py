"""Radius lookup through the index: every item within Hamming distance R, ordered by (distance, id),
capped — equal to a brute-force set on both backends (embedded: utils/retrieval/radius.py; Milvus: its
range search), through the searcher (removals by others), the CLI and the service's `radius` parameter."""
import json
import os
import sys

import numpy as np
import pytest

from tests.helpers import ROOT
from tests.test_index import fake_model, milvus_or_skip, new_index, pics, sources  # noqa: F401 (pics: fixture)


def brute(queries, codes, ids, radius):
    """[(ids, distances)] of the items within `radius`, by (distance, id)."""
    bits = np.unpackbits(codes, axis=1)
    out = []
    for q in np.unpackbits(queries, axis=1):
        d = (bits != q).sum(1)
        keep = np.flatnonzero(d <= radius)
        order = np.lexsort((ids[keep], d[keep]))
        out.append((ids[keep][order], d[keep][order]))
    return out


def filled(index, codes):
    index.add(codes[:2000], [f"p{i}" for i in range(2000)])
    index.add(codes[2000:], [f"p{i}" for i in range(2000, len(codes))])
    index.remove([0, 5, 1999, 2500])


def check_against_brute(index, codes, queries, exact_total):
    alive = np.array([i for i in range(len(codes)) if i not in (0, 5, 1999, 2500)])
    for r in range(5):
        want = brute(queries, codes[alive], alive, r)
        for cap in (None, 1, 5, 50):
            got = index.snapshot().search_radius(queries, r, cap)
            for (ids, ds), h in zip(want, got):
                n = len(ids) if cap is None else min(cap, len(ids))
                assert h.indices.tolist() == ids[:n].tolist(), (r, cap)
                assert h.distances.tolist() == ds[:n].tolist(), (r, cap)
                assert h.capped == (n < len(ids))
                if exact_total or not h.capped:
                    assert h.total == len(ids)


def test_embedded_radius_equals_brute_force(tmp_path):
    from utils.index import Index

    codes = np.random.default_rng(3).integers(0, 256, (3000, 2), dtype=np.uint8)  # 16 bits: many ties
    index = Index.create(tmp_path / "emb", 16, {"weights": "w"})
    filled(index, codes)
    check_against_brute(index, codes, codes[:30], exact_total=True)
    index.close()


def test_milvus_radius_equals_brute_force(tmp_path):
    milvus_or_skip()
    from utils.index import Index

    codes = np.random.default_rng(3).integers(0, 256, (3000, 2), dtype=np.uint8)
    try:
        index = Index.create(tmp_path / "mil", 16, {"weights": "w"}, backend="milvus", uri=str(tmp_path / "l.db"))
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"Milvus Lite cannot start here: {exc}")
    filled(index, codes)
    check_against_brute(index, codes, codes[:12], exact_total=False)
    hits = index.snapshot().search_radius(codes[:2], 3, None)
    assert all(h.algorithm == "milvus range search" for h in hits)
    index.close()


def test_searcher_and_service_radius(pics, tmp_path):  # noqa: F811 (pics: the fixture)
    from PIL import Image

    from utils.deploy.indexing import IndexSearcher, sync
    from utils.index import Index

    sys.path.insert(0, os.path.join(ROOT, "deploy", "serving"))
    import app as serving

    model = fake_model()
    index = new_index(tmp_path / "idx", model)
    sync(index, model, sources(pics["paths"][:200]))
    searcher = IndexSearcher(Index(tmp_path / "idx"), model)
    query = Image.open(pics["paths"][7])
    _, top, = searcher.search(query, 200)
    for r in (0, 3, 6):
        _, hits, info = searcher.search_radius(query, r)
        want = [(h.id, h.distance) for h in top if h.distance <= r]
        assert [(h.id, h.distance) for h in hits] == want and info.total == len(want)
    # a removal by another handle is never returned once committed
    other = Index(tmp_path / "idx")
    victim = [h.id for h in top if h.distance <= 6][0]
    other.remove([victim])
    other.close()
    _, hits, _ = searcher.search_radius(query, 6)
    assert victim not in [h.id for h in hits]

    service = serving.IndexService(searcher, "index")
    client = serving.create_app(service).test_client()
    r = client.post("/search", data={"image": (open(pics["paths"][7], "rb"), "q.png"), "k": 2, "radius": 6})
    assert r.status_code == 200, r.json
    out = r.json
    assert out["radius"] == 6 and len(out["results"]) == min(2, out["total"]) and out["capped"] == (out["total"] > 2)
    assert all(h["distance"] <= 6 for h in out["results"]) and out["algorithm"] in ("scan", "mih")
    bad = client.post("/search", data={"image": (open(pics["paths"][7], "rb"), "q.png"), "radius": "-1"})
    assert bad.status_code == 400 and "radius" in bad.json["error"]
    service.close()
    json.dumps(out)  # the answer is plain JSON
