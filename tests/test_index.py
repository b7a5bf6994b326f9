"""The living index (utils/index, utils/deploy/indexing.py, scripts/index.py) and its wiring into
predict.py and the service.

Library tests use a fake encoder (a fixed random projection of the pixels, counting the images it sees)
on tiny generated PNGs; the end-to-end tests train one tiny checkpoint and run the real commands.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest

from tests.helpers import ROOT, lite_flags, run_cli

INDEX_PY = os.path.join("scripts", "index.py")
CRASH_LAUNCHER = os.path.join(ROOT, "tests", "crash_launcher.py")  # arms utils.index.store.crash_hook, runs a script


# ------------------------------------------------------------------------------------------ fakes
class CountingEncoder:
    def __init__(self, bit=16, seed=0):
        self.w = np.random.default_rng(seed).normal(size=(3 * 8 * 8, bit)).astype(np.float32)
        self.images = 0

    def run(self, batch):
        self.images += len(batch)
        return batch.reshape(len(batch), -1) @ self.w


def fake_model(seed=0, bit=16):
    from utils.data.transforms import Preprocess
    from utils.deploy.searcher import Model

    return Model(CountingEncoder(bit, seed), Preprocess(8, 8), bit, f"fake-weights-{seed}", f"fake{seed}", {})


def make_images(folder, n, start=0):
    """n tiny PNGs with 4 levels per pixel (so codes repeat and tie)."""
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(start, start + n):
        rng = np.random.default_rng(i)
        arr = (rng.integers(0, 4, (8, 8, 3)) * 80).astype(np.uint8)
        path = os.path.join(folder, f"img_{i:05d}.png")
        Image.fromarray(arr).save(path)
        paths.append(path)
    return paths


def sources(paths):
    from utils.deploy.indexing import Source

    return [Source(os.path.normpath(p), (i % 3,)) for i, p in enumerate(paths)]


def new_index(path, model, backend="embedded", uri=None):
    from utils.deploy.indexing import create_index

    return create_index(model, {"pretrained": "fake"}, path, backend, uri, {"images": "test"})


def state(index):
    """Everything a reader sees: alive ids, their codes and paths, and the top-10 of a few queries."""
    snap = index.snapshot()
    items = index.describe(snap.ids)
    result = None
    if len(snap):
        dist, ids = snap.search(snap.packed[:5], 10)
        result = (dist.tolist(), ids.tolist())
    return snap.ids.tolist(), snap.packed.tobytes(), [items[int(i)][0] for i in snap.ids], result


@pytest.fixture(scope="module")
def pics(tmp_path_factory):
    base = tmp_path_factory.mktemp("index_pics")
    return {"base": base, "paths": make_images(str(base / "a"), 1000), "extra": make_images(str(base / "b"), 10, 1000)}


# ------------------------------------------------------------------------------------------ library
def test_add_encodes_only_new_images(pics, tmp_path):
    from utils.deploy.indexing import sync

    model = fake_model()
    index = new_index(tmp_path / "idx", model)
    stats = sync(index, model, sources(pics["paths"]), chunk_size=300)
    assert (stats.added, model.encoder.images, len(index)) == (1000, 1000, 1000)
    model.encoder.images = 0
    stats = sync(index, model, sources(pics["paths"] + pics["extra"]), chunk_size=300)
    assert (stats.added, stats.unchanged, model.encoder.images, len(index)) == (10, 1000, 10, 1010)
    # a file whose content changed is re-encoded under a new id; its old id is tombstoned
    shutil.copyfile(pics["extra"][0], tmp_path / "changed.png")
    target = pics["paths"][7]
    backup = tmp_path / "backup.png"
    shutil.copyfile(target, backup)
    try:
        shutil.copyfile(pics["extra"][0], target)
        model.encoder.images = 0
        stats = sync(index, model, sources(pics["paths"] + pics["extra"]))
        assert (stats.added, stats.changed, model.encoder.images, len(index)) == (1, 1, 1, 1010)
        assert 7 not in index.snapshot().ids and index.alive_paths()[target][0] == 1010
    finally:
        shutil.copyfile(backup, target)
    index.close()


def test_build_add_remove_equals_a_fresh_build(pics, tmp_path):
    from utils.deploy.indexing import sync

    model = fake_model()
    first, extra = pics["paths"][:300], pics["paths"][300:400]
    index = new_index(tmp_path / "inc", model)
    sync(index, model, sources(first), chunk_size=64)
    ids_before = dict(index.alive_paths())
    sync(index, model, sources(first + extra), chunk_size=64)
    gone = sorted(np.random.default_rng(1).choice(400, 40, replace=False).tolist())
    removed, _ = index.remove(ids=gone[:20], paths=[index.describe([g])[g][0] for g in gone[20:]])
    assert removed == gone
    final = [p for i, p in enumerate(first + extra) if i not in set(gone)]
    fresh = new_index(tmp_path / "fresh", fake_model())
    sync(fresh, fake_model(), [s for s in sources(first + extra) if s.path in set(final)], chunk_size=1000)

    def by_path(idx):
        snap = idx.snapshot()
        items = idx.describe(snap.ids)
        return {items[int(i)][0]: (int(i), snap.packed[k].tobytes(), items[int(i)][1])
                for k, i in enumerate(snap.ids)}

    inc, new = by_path(index), by_path(fresh)
    assert sorted(inc) == sorted(new) == sorted(final)
    assert all(inc[p][1:] == new[p][1:] for p in final)  # same codes and labels
    assert all(inc[p][0] == ids_before[p][0] for p in final if p in ids_before)  # ids never changed
    queries = index.snapshot().packed[:20]
    for k in (1, 10, 100):
        (d1, i1), (d2, i2) = index.snapshot().search(queries, k), fresh.snapshot().search(queries, k)
        paths1 = [[index.describe([j])[j][0] for j in row] for row in i1.tolist()]
        paths2 = [[fresh.describe([j])[j][0] for j in row] for row in i2.tolist()]
        assert d1.tolist() == d2.tolist() and paths1 == paths2
        assert all(list(row) == sorted(row, key=lambda t: (t[0], t[1])) for row in
                   [list(zip(d, i)) for d, i in zip(d1.tolist(), i1.tolist())])  # ties by id
    before = state(index)
    assert index.compact() == (360, 40)
    after = state(index)
    assert before == after and index.info()["segments"] == 1 and index.info()["tombstones"] == 0
    index.close()
    fresh.close()


CRASH_SCRIPT = """
import json, sys
import numpy as np
sys.path.insert(0, {root!r})
from utils.index import Index
op, arg = sys.argv[1], json.loads(sys.argv[2])
idx = Index(sys.argv[3])
if op == "add":
    idx.add(np.asarray(arg["codes"], np.uint8), arg["paths"], None, ["h"] * len(arg["paths"]))
elif op == "remove":
    idx.remove(arg)
else:
    idx.compact()
print("done")
"""


@pytest.mark.parametrize("op,step", [("add", "add:stored"), ("add", "add:committed"),
                                     ("remove", "remove:committed"), ("remove", "remove:applied"),
                                     ("compact", "compact:stored"), ("compact", "compact:committed")])
def test_a_crash_at_each_write_step_leaves_before_or_after(pics, tmp_path, op, step):
    from utils.deploy.indexing import sync
    from utils.index import CRASH_POINTS

    assert step in CRASH_POINTS
    model = fake_model()
    base = new_index(tmp_path / "base", model)
    sync(base, model, sources(pics["paths"][:120]), chunk_size=50)
    base.remove([3, 4])
    before = state(base)
    base.close()
    codes = np.random.default_rng(5).integers(0, 256, (7, 2)).tolist()
    arg = {"add": {"codes": codes, "paths": [f"new/{i}.png" for i in range(7)]}, "remove": [10, 11, 50],
           "compact": None}[op]
    script = tmp_path / "op.py"
    script.write_text(CRASH_SCRIPT.format(root=ROOT))
    results = {}
    for crash in (None, step):
        target = tmp_path / f"idx_{crash is not None}"
        shutil.copytree(tmp_path / "base", target)
        launch = [CRASH_LAUNCHER, crash] if crash else []
        proc = subprocess.run([sys.executable, *launch, str(script), op, json.dumps(arg), str(target)],
                              capture_output=True, text=True, timeout=120)
        if crash:
            assert proc.returncode == -signal.SIGKILL, proc.stderr
        else:
            assert proc.returncode == 0 and "done" in proc.stdout, proc.stderr
        from utils.index import Index

        idx = Index(target)
        results[crash] = state(idx)
        # still writable after the crash
        idx.add(np.zeros((1, 2), np.uint8), ["later.png"])
        idx.close()
    after = results[None]
    assert before != after or op == "compact"
    assert results[step] in (before, after), f"crash at {step}: neither the previous nor the new state"


def test_remove_unknown_id_is_an_error_and_changes_nothing(pics, tmp_path):
    from utils.deploy.indexing import sync
    from utils.errors import UserError

    model = fake_model()
    index = new_index(tmp_path / "idx", model)
    sync(index, model, sources(pics["paths"][:20]))
    before = state(index)
    with pytest.raises(UserError, match="not in the index .*: 99; nothing was removed"):
        index.remove([2, 99])
    assert state(index) == before
    removed, missing = index.remove([2, 99], missing_ok=True)
    assert removed == [2] and missing == ["99"] and len(index) == 19
    with pytest.raises(UserError, match="not in the index"):
        index.remove([2])  # already removed
    index.close()


def test_unreadable_image_during_add(pics, tmp_path):
    from utils.deploy.indexing import sync
    from utils.errors import UserError

    model = fake_model()
    index = new_index(tmp_path / "idx", model)
    sync(index, model, sources(pics["paths"][:20]))
    before = state(index)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    srcs = sources(pics["paths"][:30] + [str(bad)])
    with pytest.raises(UserError, match="broken.png: not a readable image.*--skip-bad-images"):
        sync(index, model, srcs, chunk_size=100)
    assert state(index) == before
    stats = sync(index, model, srcs, chunk_size=100, skip_bad=True)
    assert stats.added == 10 and len(stats.bad) == 1 and "broken.png" in stats.line() and len(index) == 30
    index.close()


def test_model_mismatch_is_refused(pics, tmp_path):
    from utils.deploy.indexing import IndexSearcher, sync
    from utils.errors import UserError

    model = fake_model(0)
    index = new_index(tmp_path / "idx", model)
    sync(index, model, sources(pics["paths"][:10]))
    with pytest.raises(UserError, match="differs from the one that encoded the index .*weights"):
        IndexSearcher(index, fake_model(1))
    index.close()


def test_bad_index_directories_are_one_line_errors(pics, tmp_path):
    from utils.deploy.indexing import sync
    from utils.errors import UserError
    from utils.index import Index, IndexDir

    with pytest.raises(UserError, match="no such directory"):
        Index(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="not an index directory"):
        Index(tmp_path / "empty")
    model = fake_model()
    index = new_index(tmp_path / "idx", model)
    sync(index, model, sources(pics["paths"][:40]), chunk_size=16)
    index.close()
    d = IndexDir(tmp_path / "idx")
    seg = sorted(os.listdir(d.segments))[1]
    original = open(d.segment(seg), "rb").read()
    with open(d.segment(seg), "r+b") as f:
        f.truncate(len(original) - 3)
    with pytest.raises(UserError, match=f"{seg}: segment file is truncated"):
        Index(d.path).snapshot()
    flipped = bytearray(original)
    flipped[-1] ^= 0xFF
    open(d.segment(seg), "wb").write(bytes(flipped))
    with pytest.raises(UserError, match=f"{seg}: segment file does not match its checksum"):
        Index(d.path).snapshot()
    open(d.segment(seg), "wb").write(original)
    idx = Index(d.path)
    assert len(idx.snapshot()) == 40  # nothing lost once the file is restored
    idx.close()
    shutil.copytree(d.path, tmp_path / "corrupt")
    (tmp_path / "corrupt" / IndexDir.META).write_text("{not json")
    with pytest.raises(UserError, match="not a valid index description"):
        Index(tmp_path / "corrupt")
    shutil.copytree(d.path, tmp_path / "nocat")
    os.remove(tmp_path / "nocat" / IndexDir.CATALOGUE)
    with pytest.raises(UserError, match="catalogue.sqlite is missing"):
        Index(tmp_path / "nocat")
    (tmp_path / "badcat").mkdir()
    shutil.copy(d.meta, tmp_path / "badcat")
    (tmp_path / "badcat" / IndexDir.CATALOGUE).write_bytes(b"garbage" * 100)
    with pytest.raises(UserError, match="not a readable index catalogue"):
        Index(tmp_path / "badcat")


def test_admin_routes_refuse_without_token(pics, tmp_path):
    sys.path.insert(0, os.path.join(ROOT, "deploy", "serving"))
    import app as serving
    from utils.deploy.indexing import IndexSearcher, sync
    from utils.index import Index

    model = fake_model()
    index = new_index(tmp_path / "idx", model)
    sync(index, model, sources(pics["paths"][:30]))
    for token in (None, "s3cret"):
        service = serving.IndexService(IndexSearcher(Index(tmp_path / "idx"), model), "index")
        client = serving.create_app(service, admin_token=token).test_client()
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-Admin-Token": "s3cret!"}):
            r = client.post("/index/add", data={"image": (open(pics["extra"][3], "rb"), "q.png")}, headers=headers)
            assert r.status_code == 403, r.json
            assert client.delete("/index/1", headers=headers).status_code == 403
        assert service.size() == 30
        if token:
            auth = {"Authorization": "Bearer s3cret"}
            r = client.post("/index/add", data={"image": (open(pics["extra"][3], "rb"), "q.png"), "labels": "1,2"},
                            headers=auth)
            assert r.status_code == 200 and r.json["added"] and r.json["database_size"] == 31, r.json
            new_id = r.json["id"]
            hit = client.post("/search", data={"image": (open(pics["extra"][3], "rb"), "q.png"), "k": 31}).json
            assert any(h["id"] == new_id and h["distance"] == 0 and h["labels"] == [1, 2] for h in hit["results"])
            again = client.post("/index/add", data={"image": (open(pics["extra"][3], "rb"), "q.png")}, headers=auth)
            assert again.json == {**again.json, "id": new_id, "added": False}
            assert client.delete(f"/index/{new_id}", headers=auth).status_code == 200
            assert client.delete(f"/index/{new_id}", headers=auth).status_code == 404
            assert client.delete("/index/abc", headers=auth).status_code == 404
            stats = client.get("/stats").json
            assert stats["count"] == 30 and stats["bit"] == 16 and stats["requests"]["add"] == 2
        service.close()
    index.close()


# ------------------------------------------------------------------------------------------ Milvus
def milvus_or_skip():
    try:
        import pymilvus  # noqa: F401
        import milvus_lite  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - ImportError, or pkg_resources missing under setuptools>=70
        pytest.skip(f"Milvus Lite cannot start here ({type(exc).__name__}: {exc}); "
                    "pip install -r requirements-test.txt -c constraints.txt")


def test_milvus_lite_gives_the_embedded_results(tmp_path, monkeypatch):
    milvus_or_skip()
    from utils.index import Index

    rng = np.random.default_rng(3)
    codes = rng.integers(0, 256, (3000, 2), dtype=np.uint8)  # 16 bits: many ties at every distance
    fp = {"weights": "w"}
    try:
        mil = Index.create(tmp_path / "mil", 16, fp, backend="milvus", uri=str(tmp_path / "lite.db"))
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"Milvus Lite cannot start here: {exc}")
    emb = Index.create(tmp_path / "emb", 16, fp)
    for idx in (emb, mil):
        idx.add(codes[:2000], [f"p{i}" for i in range(2000)])
        idx.add(codes[2000:], [f"p{i}" for i in range(2000, 3000)])
        idx.remove([0, 5, 1999, 2500])
    queries = codes[:40]
    for k in (1, 10, 64):
        d1, i1 = emb.snapshot().search(queries, k)
        d2, i2 = mil.snapshot().search(queries, k)
        assert d1.tolist() == d2.tolist() and i1.tolist() == i2.tolist(), k
    assert mil.info()["count"] == emb.info()["count"] == 2996 and mil.info()["milvus_rows"] == 2996
    mil.compact()
    assert mil.snapshot().search(queries, 10)[1].tolist() == emb.snapshot().search(queries, 10)[1].tolist()

    # --rebuild: new codes for the same ids; Milvus writes them into a new collection and switches to it
    # with the new fingerprint in one catalogue commit. A failure before the switch leaves the old state.
    new_codes = rng.integers(0, 256, (3000, 2), dtype=np.uint8)
    import utils.index

    def fail_at(name):
        if name == "rebuild:stored":
            raise RuntimeError("injected")

    monkeypatch.setattr(utils.index.store, "crash_hook", fail_at)
    with pytest.raises(RuntimeError, match="injected"):
        mil.replace_codes({"weights": "w2"}, lambda ids, paths: new_codes[ids])
    monkeypatch.undo()
    assert mil.fingerprint == fp and mil.snapshot().search(queries, 10)[1].tolist() == i1[:, :10].tolist()
    for idx in (emb, mil):
        assert idx.replace_codes({"weights": "w2"}, lambda ids, paths: new_codes[ids]) == 2996
        assert idx.fingerprint == {"weights": "w2"}
    d1, i1 = emb.snapshot().search(new_codes[:40], 64)
    d2, i2 = mil.snapshot().search(new_codes[:40], 64)
    assert d1.tolist() == d2.tolist() and i1.tolist() == i2.tolist()
    mil.close()
    reopened = Index(tmp_path / "mil")  # the index directory records backend, URI and collection
    assert reopened.backend == "milvus" and len(reopened) == 2996
    assert reopened.snapshot().search(new_codes[:40], 64)[1].tolist() == i1.tolist()
    reopened.compact()  # a write: would drop any collection the index no longer uses
    names = reopened.store.client.list_collections()
    assert names == [reopened.store.name] and reopened.store.name.endswith("_r1"), names  # the failed try used _r1 too
    reopened.close()
    emb.close()


def reader_state(index, queries):
    """What a reader of any backend sees: alive ids, the fingerprint, the top-10 of `queries`."""
    ids = sorted(i for i, _ in index.alive_paths().values())
    dist, hits = index.snapshot().search(queries, 10)
    return ids, index.fingerprint, dist.tolist(), hits.tolist()


@pytest.fixture(scope="module")
def milvus_file(tmp_path_factory):
    """One Milvus Lite file for the crash cases (each index its own collection): starting a Milvus Lite
    server on a new file right after another one stopped fails now and then ("internal error")."""
    return str(tmp_path_factory.mktemp("milvus") / "lite.db")


MILVUS_OPS = {"add": lambda idx, new: idx.add(new[:50], [f"n{i}" for i in range(50)]),
              "remove": lambda idx, new: idx.remove([1, 7, 100]),
              "rebuild": lambda idx, new: idx.replace_codes({"weights": "w2"}, lambda ids, paths: new[ids])}


@pytest.mark.parametrize("step", ["add:stored", "add:committed", "remove:committed", "remove:applied",
                                  "rebuild:stored", "rebuild:committed"])
def test_milvus_crash_at_each_write_step_leaves_before_or_after(tmp_path, monkeypatch, step, milvus_file):
    """A crash is simulated in-process (a Milvus Lite server does not outlive a SIGKILLed client cleanly):
    the step raises, and the clean-up a killed process would not run (abandon) is switched off. The index
    reopened by a new process's handle must read as before or after, and stay writable."""
    milvus_or_skip()
    import utils.index
    from utils.index import Index

    rng = np.random.default_rng(8)
    codes, new = rng.integers(0, 256, (300, 2), dtype=np.uint8), rng.integers(0, 256, (400, 2), dtype=np.uint8)
    op, queries = MILVUS_OPS[step.split(":")[0]], codes[:20]
    emb = Index.create(tmp_path / "emb", 16, {"weights": "w"})
    try:
        mil = Index.create(tmp_path / "mil", 16, {"weights": "w"}, backend="milvus", uri=milvus_file)
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"Milvus Lite cannot start here: {exc}")
    for idx in (emb, mil):
        idx.add(codes, [f"p{i}" for i in range(300)])
    before = reader_state(mil, queries)
    op(emb, new)
    after = reader_state(emb, queries)
    assert after != before

    def crash(name):
        if name == step:
            raise KeyboardInterrupt(f"crash at {name}")

    monkeypatch.setattr(utils.index.store, "crash_hook", crash)
    monkeypatch.setattr(mil.store, "abandon", lambda token: None)
    with pytest.raises(KeyboardInterrupt):
        op(mil, new)
    monkeypatch.undo()
    mil.close()
    reopened = Index(tmp_path / "mil")
    got = reader_state(reopened, queries)
    assert got in (before, after), f"crash at {step}: neither the previous nor the new state"
    reopened.add(np.zeros((1, 2), np.uint8), ["later"])  # writable, and the write clears what the crash left
    assert reopened.info()["milvus_rows"] == reopened.info()["count"]
    reopened.close()
    emb.close()


# ------------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def trained(lite_single, tmp_path_factory):
    """A 1-epoch 16-bit OrthoHash checkpoint on lite data, and a copy with one weight changed."""
    out = tmp_path_factory.mktemp("index_run")
    run_cli(["main_single_gpu.py", *lite_flags(lite_single, "orthohash", out / "run", epochs=1)])
    import paddle

    ckpt = paddle.load(str(out / "run" / "best.pdparams"))
    name = sorted(k for k in ckpt["model"] if k.endswith("weight"))[-1]
    ckpt["model"][name] = ckpt["model"][name] + 0.05
    paddle.save(ckpt, str(out / "other.pdparams"))
    d = lite_single
    return {"ckpt": out / "run" / "best.pdparams", "other": out / "other.pdparams", "out": out, "data": d,
            "db": ["--list", os.path.join(d["list_dir"], "database.txt"), "--data-path", d["root"]],
            "test": ["--list", os.path.join(d["list_dir"], "test.txt"), "--data-path", d["root"]]}


def index_cli(*args, check=True, env=None, crash_at=None):
    """scripts/index.py ARGS; `crash_at`: a crash point armed (tests/crash_launcher.py)."""
    launch = [CRASH_LAUNCHER, crash_at] if crash_at else []
    return run_cli([*launch, INDEX_PY, *args], timeout=300, check=check, env=env)


def one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def search_json(index, img, k=20, *extra):
    return json.loads(index_cli("search", "--index", index, "--img", img, "-k", k, "--json", *extra).stdout)


def snapshot_of(path):
    from utils.index import Index

    idx = Index(path)
    try:
        return state(idx)
    finally:
        idx.close()


def test_build_killed_resumes_equal_to_uninterrupted(trained):
    out, t = trained["out"], trained
    index_cli("build", "--model", t["ckpt"], *t["db"], "--out", out / "full", "--chunk-size", 8)
    killed = index_cli("build", "--model", t["ckpt"], *t["db"], "--out", out / "resumed", "--chunk-size", 8,
                       check=False, crash_at="add:committed@2")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    info = json.loads(index_cli("info", "--index", out / "resumed", "--json").stdout)
    assert info["count"] == 16 and info["bit"] == 16 and info["backend"] == "embedded"
    resumed = index_cli("build", "--model", t["ckpt"], *t["db"], "--out", out / "resumed", "--chunk-size", 8)
    assert "resuming the build" in resumed.stdout and "added 32, 16 already in the index" in resumed.stdout
    assert snapshot_of(out / "full") == snapshot_of(out / "resumed")
    db_dir = os.path.join(t["data"]["root"], "database")
    img = os.path.join(db_dir, sorted(os.listdir(db_dir))[3])
    a, b = search_json(out / "full", img, 48), search_json(out / "resumed", img, 48)
    assert a == b and len(a["results"]) == 48 and a["results"][0]["distance"] == 0
    keys = [(r["distance"], r["id"]) for r in a["results"]]
    assert keys == sorted(keys)
    # SIGTERM after the first chunk's commit (as docker stop sends it): that chunk stays, the build stops
    # with one line and exit 0, and the same command finishes it
    stopped = index_cli("build", "--model", t["ckpt"], *t["db"], "--out", out / "stopped", "--chunk-size", 8,
                        check=False, crash_at="add:committed@1:SIGTERM")
    assert stopped.returncode == 0, stopped.stderr
    assert "----- stopped by SIGTERM: added 8" in stopped.stdout and "40 images left" in stopped.stdout
    assert "FatalError" not in stopped.stderr and "Traceback" not in stopped.stderr
    assert json.loads(index_cli("info", "--index", out / "stopped", "--json").stdout)["count"] == 8
    index_cli("build", "--model", t["ckpt"], *t["db"], "--out", out / "stopped", "--chunk-size", 8)
    assert snapshot_of(out / "full") == snapshot_of(out / "stopped")


def test_cli_add_remove_mismatch_and_bad_input(trained, tmp_path):
    t = trained
    idx = tmp_path / "idx"
    index_cli("build", "--model", t["ckpt"], *t["db"], "--out", idx)
    added = index_cli("add", "--index", idx, *t["test"])
    assert "added 12, 0 already in the index; 60 items" in added.stdout
    assert "added 0, 12 already" in index_cli("add", "--index", idx, *t["test"]).stdout
    before = snapshot_of(idx)
    one_line_error(index_cli("remove", "--index", idx, "--ids", "3,999", check=False), "999", "nothing was removed")
    one_line_error(index_cli("add", "--index", idx, "--model", t["other"], *t["test"], check=False),
                   "differs from the one that encoded the index")
    img = os.path.join(t["data"]["root"], "test", sorted(os.listdir(os.path.join(t["data"]["root"], "test")))[0])
    one_line_error(index_cli("search", "--index", idx, "--img", img, "--model", t["other"], check=False), "differs")
    folder = tmp_path / "more"
    folder.mkdir()
    shutil.copy(img, folder / "copy.jpg")
    (folder / "zz_broken.jpg").write_bytes(b"not a jpeg")
    one_line_error(index_cli("add", "--index", idx, "--images", folder, check=False), "zz_broken.jpg",
                   "--skip-bad-images")
    assert snapshot_of(idx) == before
    skipped = index_cli("add", "--index", idx, "--images", folder, "--skip-bad-images")
    assert "added 1" in skipped.stdout and "skipped 1 unreadable" in skipped.stdout
    out = index_cli("remove", "--index", idx, "--ids", "3,999", "--skip-missing")
    assert "removed 1, skipped 1 not in the index (999); 60 items left" in out.stdout
    one_line_error(index_cli("info", "--index", tmp_path / "nope", check=False), "no such directory")
    # the index's model, re-encoded: ids stay, the new model is accepted from then on
    ids_before = [r["id"] for r in search_json(idx, img, 60)["results"]]
    rebuilt = index_cli("add", "--index", idx, "--model", t["other"], "--rebuild")
    assert "re-encoded 60 items" in rebuilt.stdout
    after = search_json(idx, img, 60)
    assert sorted(r["id"] for r in after["results"]) == sorted(ids_before)
    pred = run_cli(["predict.py", "--index", idx, "--img", img, "--topk", 5, "--save_path", tmp_path / "pred"])
    assert "----- Found Matched Pic" in pred.stdout and f"Index {idx}" in pred.stdout
    # a segment file truncated by hand
    segs = idx / "segments"
    seg = sorted(os.listdir(segs))[0]
    with open(segs / seg, "r+b") as f:
        f.truncate(os.path.getsize(segs / seg) - 5)
    one_line_error(index_cli("search", "--index", idx, "--img", img, check=False), seg, "truncated")


# ------------------------------------------------------------------------------------------ service
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_service_sigterm_lets_the_request_in_flight_finish(trained, tmp_path):
    t = trained
    idx = tmp_path / "idx"
    index_cli("build", "--model", t["ckpt"], *t["db"], "--out", idx)
    port = free_port()
    log_path = tmp_path / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "deploy", "serving", "app.py"), "--index", str(idx),
                                 "--port", str(port), "--admin-token", "tok"], cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT, env=dict(os.environ, FLAGS_use_mkldnn="0",
                                                                   PYTHONUNBUFFERED="1"))
    try:
        deadline = time.time() + 120
        while "Serving on" not in log_path.read_text():
            assert proc.poll() is None and time.time() < deadline, log_path.read_text()
            time.sleep(0.2)
        img = os.path.join(t["data"]["root"], "database",
                           sorted(os.listdir(os.path.join(t["data"]["root"], "database")))[5])
        with open(img, "rb") as f:
            content = f.read()
        boundary = uuid.uuid4().hex
        body = (f'--{boundary}\r\nContent-Disposition: form-data; name="k"\r\n\r\n5\r\n--{boundary}\r\n'
                f'Content-Disposition: form-data; name="image"; filename="q.jpg"\r\n'
                f'Content-Type: application/octet-stream\r\n\r\n').encode() + content
        body += f"\r\n--{boundary}--\r\n".encode()
        head = (f"POST /search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary={boundary}"
                f"\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.sendall(head + body[:len(body) // 2])  # a request in flight: half its body sent
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        assert proc.poll() is None, "the server exited with a request in flight"
        sock.sendall(body[len(body) // 2:])
        answer = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        sock.close()
        status, _, payload = answer.partition(b"\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 200"), answer[:300]
        results = json.loads(payload)["results"]
        assert len(results) == 5 and results[0]["distance"] == 0
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    output = log_path.read_text()
    assert "stopped by SIGTERM" in output.splitlines()[-1]
    assert "FatalError" not in output and "Traceback" not in output and "Termination signal" not in output


def test_cli_search_radius_equals_the_ranking_cut_at_r(trained, tmp_path):
    """search --radius R gives exactly the top-k list's items at distance <= R, in the same order; capped by
    --max-results with a note; --verbose names the algorithm."""
    idx = tmp_path / "idx"
    index_cli("build", "--model", trained["ckpt"], *trained["db"], "--out", idx)
    db_list = os.path.join(trained["data"]["list_dir"], "database.txt")
    img = os.path.join(trained["data"]["root"], open(db_list).readline().split()[0])
    full = search_json(idx, img, 48)["results"]
    for r in (0, 2, 5):
        out = json.loads(index_cli("search", "--index", idx, "--img", img, "--radius", r, "--json").stdout)
        want = [(h["id"], h["distance"]) for h in full if h["distance"] <= r]
        assert [(h["id"], h["distance"]) for h in out["results"]] == want and out["total"] == len(want)
        assert not out["capped"] and out["algorithm"] in ("scan", "mih")
    big = [(h["id"], h["distance"]) for h in full if h["distance"] <= 8]
    assert len(big) > 2
    capped = index_cli("search", "--index", idx, "--img", img, "--radius", 8, "--max-results", 2, "--verbose")
    assert "within distance 8; showing the first 2" in capped.stderr and "algorithm:" in capped.stdout
    rows = [line.split() for line in capped.stdout.splitlines()[2:]]
    assert [(int(r[1]), int(r[2])) for r in rows] == big[:2]
    one_line_error(index_cli("search", "--index", idx, "--img", img, "--radius", -1, check=False), "--radius")


# ------------------------------------------------------------------------------------------ the sealed index
def test_a_backend_registered_through_the_contract_is_created_and_opened_like_the_others(tmp_path):
    """A new storage backend needs a Store subclass and one register_backend(...): Index.create / Index open
    it through its Backend entry (index.json gets its `describe` fields, its `options` stay out of the
    catalogue); a store that misses a method of the contract is refused at registration."""
    import utils.index as ix
    from utils.index.embedded import EmbeddedStore
    from utils.index.store import BACKENDS, Backend, Store, register_backend

    opened = []

    class CountingStore(EmbeddedStore):  # the embedded store, under another name
        def __init__(self, d, meta, catalogue, bit):
            opened.append(meta["flavour"])
            super().__init__(d, meta, catalogue, bit)

    class Incomplete(Store):
        def __init__(self, d, meta, catalogue, bit):
            pass

    with pytest.raises(TypeError, match="does not implement the Store contract .*compact"):
        register_backend(Backend("incomplete", "no", Incomplete))
    with pytest.raises(TypeError, match="not a Store subclass"):
        register_backend(Backend("not-a-store", "no", dict))
    assert "incomplete" not in BACKENDS and "not-a-store" not in BACKENDS
    register_backend(Backend("counting", "test", CountingStore,
                             describe=lambda path, uri, options: {"flavour": options.get("flavour", "plain")},
                             options=("flavour",)))
    try:
        with pytest.raises(ValueError, match="registered twice"):
            register_backend(Backend("counting", "again", CountingStore))
        index = ix.Index.create(tmp_path / "idx", 16, {"weights": "w"}, backend="counting",
                                extra={"flavour": "salted", "model": {"pretrained": "m"}})
        codes = np.random.default_rng(0).integers(0, 256, (20, 2), dtype=np.uint8)
        index.add(codes, [f"p{i}.png" for i in range(20)])
        want = index.snapshot().search(codes[:3], 5)
        index.close()
        with open(tmp_path / "idx" / "index.json") as f:
            meta = json.load(f)
        assert meta["backend"] == "counting" and meta["flavour"] == "salted"
        reopened = ix.Index(tmp_path / "idx")
        assert opened == ["salted", "salted"] and reopened.backend == "counting"
        assert reopened.model_record() == {"pretrained": "m"} and reopened.catalogue.get("flavour") is None
        got = reopened.snapshot().search(codes[:3], 5)
        assert got[0].tolist() == want[0].tolist() and got[1].tolist() == want[1].tolist()
        reopened.close()
    finally:
        BACKENDS.pop("counting", None)
    from utils.errors import UserError

    with pytest.raises(UserError, match="unknown backend 'counting'"):
        ix.Index(tmp_path / "idx")


def test_the_facade_names_no_backend_and_the_catalogue_stays_inside_utils_index():
    """Index.create / Index open every backend the same way (no `milvus` in the facade or the layout), SQL
    is in catalogue.py only, and `.catalogue` of an index is used only inside utils/index (callers use
    Index's methods)."""
    import ast

    for name in ("__init__.py", "layout.py", "writes.py"):
        tree = ast.parse(open(os.path.join(ROOT, "utils", "index", name), encoding="utf-8").read())
        special = [f"{name}:{n.lineno}" for n in ast.walk(tree)
                   if (isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.strip().lower() == "milvus")
                   or (isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "resolve_uri")
                   or (isinstance(n, ast.Attribute) and n.attr == "MilvusStore")]
        assert not special, special
    for name in os.listdir(os.path.join(ROOT, "utils", "index")):  # SQL is spelled in the catalogue only
        if name.endswith(".py") and name != "catalogue.py":
            text = open(os.path.join(ROOT, "utils", "index", name), encoding="utf-8").read()
            assert ".execute(" not in text and ".executemany(" not in text, name
    offenders = []
    skip = {".git", ".venv", "tests", "output", "datasets", "__pycache__", "node_modules"}
    for base, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in skip]
        rel_base = os.path.relpath(base, ROOT)
        if rel_base == os.path.join("utils", "index") or rel_base.startswith(os.path.join("utils", "index") + os.sep):
            continue
        for f in files:
            if not f.endswith(".py"):
                continue
            path = os.path.join(base, f)
            for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
                if isinstance(node, ast.Attribute) and node.attr == "catalogue":
                    offenders.append(f"{os.path.relpath(path, ROOT)}:{node.lineno}")
    assert not offenders, offenders


def test_crash_points_are_armed_only_by_a_hook(tmp_path, monkeypatch):
    """No environment switch in production code: the old HASHING_INDEX_CRASH_AT does nothing; a test's
    crash_hook sees every step (tests/crash_launcher.py sets it in a subprocess)."""
    import utils.index.store as store
    from utils.index import Index

    for name in os.listdir(os.path.join(ROOT, "utils", "index")):
        if name.endswith(".py"):
            text = open(os.path.join(ROOT, "utils", "index", name), encoding="utf-8").read()
            assert "os.environ" not in text or name == "milvus.py", name  # Milvus: MILVUS_TOKEN only
            assert "CRASH_AT" not in text, name
    monkeypatch.setenv("HASHING_INDEX_CRASH_AT", "add:stored")
    index = Index.create(tmp_path / "idx", 16, {"weights": "w"})
    seen = []
    monkeypatch.setattr(store, "crash_hook", seen.append)
    index.add(np.zeros((2, 2), np.uint8), ["a.png", "b.png"])
    index.remove([0])
    index.compact()
    assert seen == ["add:stored", "add:committed", "remove:committed", "remove:applied", "compact:stored",
                    "compact:committed"]
    assert set(seen) <= set(store.CRASH_POINTS)
    index.close()


def test_renamed_flags_keep_their_old_spellings():
    """--runtime (old: --backend) in the service and predict's shared flags, with the runtime registry's
    choices; scripts/index.py: --backend is the storage, --runtime the model's runtime, --engine the kernel."""
    import importlib.util

    from utils.deploy.runtimes import RUNTIMES

    spec = importlib.util.spec_from_file_location("index_cli_under_test", os.path.join(ROOT, INDEX_PY))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    args = cli.parse_args(["build", "--model", "m", "--images", "x", "--out", "o", "--backend", "milvus",
                           "--runtime", "onnx-int8"])
    assert (args.backend, args.runtime) == ("milvus", "onnx-int8") and "onnx-int8" in RUNTIMES
    args = cli.parse_args(["search", "--index", "i", "--img", "q.jpg", "--engine", "numpy", "--runtime", "onnx"])
    assert (args.engine, args.runtime) == ("numpy", "onnx")
    app = serving_app()
    for flag in ("--runtime", "--backend"):
        args = app.parse_args(["--model-dir", "m", flag, "onnx"])
        assert args.runtime == "onnx", flag
    args = app.parse_args(["--index", "i", "--engine", "numpy"])
    assert (args.runtime, args.engine) == ("paddle", "numpy")
    import argparse

    from utils.deploy.options import add_search_model

    p = argparse.ArgumentParser()
    add_search_model(p)  # predict.py's and the service's
    assert p.parse_args(["--runtime", "onnx-int8"]).runtime == "onnx-int8"
    assert p.parse_args(["--backend", "onnx"]).runtime == "onnx"  # the old spelling
    assert p.parse_args(["--data_path", "d", "--list_dir", "l"]).data_path == "d"


def serving_app():
    sys.path.insert(0, os.path.join(ROOT, "deploy", "serving"))
    import app

    return app
