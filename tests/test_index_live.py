"""The living index with paths that name files, and with several writers (utils/index, scripts/index.py,
the service's IndexService): any spelling of a file finds its item, an index moves with its images, old
indexes are migrated, other processes' writes are seen, compaction and concurrent writers are safe.

A fake encoder (tests/test_index.py) and tiny PNGs; subprocesses use utils.index alone (no Paddle).
"""
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading

import numpy as np
import pytest

from tests.helpers import ROOT, run_cli
from tests.test_index import fake_model, make_images, state

INDEX_PY = os.path.join(ROOT, "scripts", "index.py")


def list_index(tmp_path, n=30, chunk=10):
    """An index built from a list under an image root: (index, model, root, list file, list paths)."""
    from utils.deploy.indexing import Source, create_index, sync

    root = tmp_path / "images"
    files = make_images(str(root / "a"), n)
    rel = [os.path.relpath(f, root).replace(os.sep, "/") for f in files]
    lst = tmp_path / "db.txt"
    lst.write_text("".join(f"{p} {i % 2} {1 - i % 2}\n" for i, p in enumerate(rel)))
    model = fake_model()
    index = create_index(model, {"pretrained": "fake"}, str(tmp_path / "idx"), "embedded", None,
                         {"list": str(lst), "data_path": str(root)})
    sync(index, model, [Source(os.path.normpath(os.path.join(str(root), p)), (i % 2,)) for i, p in enumerate(rel)],
         chunk_size=chunk)
    return index, model, root, lst, rel


# ------------------------------------------------------------------------------------------ paths
def test_paths_are_stored_relative_to_the_root_and_any_spelling_removes(tmp_path, monkeypatch):
    index, model, root, lst, rel = list_index(tmp_path)
    assert index.root == str(root) and index.info()["root"] == str(root)
    assert sorted(index.alive_paths()) == sorted(rel)  # as the list writes them
    # a search's hits: the stored path as the list writes it, and the file it names
    from utils.deploy.indexing import IndexSearcher
    from PIL import Image

    searcher = IndexSearcher(index, model)
    _, hits = searcher.search(Image.open(root / rel[4]).convert("RGB"), 30)
    hit = next(h for h in hits if h.id == 4)
    assert hit.distance == 0 and hit.stored == rel[4] and hit.path == os.path.join(str(root), "a", "img_00004.png")

    ids = {p: index.alive_paths()[p][0] for p in rel}
    (tmp_path / "work" / "sub").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "work" / "sub")
    os.symlink(root, tmp_path / "link_to_root")
    os.symlink(root / rel[9], tmp_path / "link_to_file.png")
    spellings = {
        0: rel[0],  # as the list writes it
        1: os.path.join("..", "..", "images", "a", "img_00001.png"),  # relative to the current directory
        2: str(root / rel[2]),  # absolute
        3: "./" + rel[3].replace("a/", "a/./"),  # with ./
        5: str(root / "a" / ".." / "a" / "img_00005.png"),  # with ..
        8: str(tmp_path / "link_to_root" / rel[8]),  # through a symlinked folder
        9: str(tmp_path / "link_to_file.png"),  # a symlink to the file
    }
    for i, spelling in spellings.items():
        removed, missing = index.remove(paths=[spelling])
        assert removed == [ids[rel[i]]] and missing == [], (spelling, removed, missing)
    from utils.errors import UserError

    with pytest.raises(UserError, match="not in the index .*img_00099.png; nothing was removed"):
        index.remove(paths=["a/img_00099.png", rel[10]])
    assert len(index) == 30 - len(spellings)
    index.close()


def test_cli_remove_by_list_and_by_each_spelling(tmp_path):
    index, _, root, lst, rel = list_index(tmp_path)
    index.close()
    idx = str(tmp_path / "idx")
    part = tmp_path / "part.txt"
    part.write_text("".join(line + "\n" for line in lst.read_text().splitlines()[20:25]))
    out = run_cli([INDEX_PY, "remove", "--index", idx, "--list", part])
    assert "removed 5; 25 items left" in out.stdout, out.stdout
    os.symlink(root, tmp_path / "link")
    spelled = [rel[0], "./" + rel[1], str(root / rel[2]), os.path.relpath(root / rel[3], tmp_path),
               str(tmp_path / "link" / rel[4])]
    out = run_cli([INDEX_PY, "remove", "--index", idx, "--paths", *spelled], cwd=str(tmp_path))
    assert "removed 5; 20 items left" in out.stdout, out.stdout
    from utils.index import Index

    with Index(idx) as index:
        assert sorted(index.alive_paths()) == sorted(rel[5:20] + rel[25:])
    again = run_cli([INDEX_PY, "remove", "--index", idx, "--list", part], check=False)
    assert again.returncode == 2 and "not in the index" in again.stderr and "Traceback" not in again.stderr


def test_an_index_moves_with_its_images(tmp_path):
    from utils.deploy.indexing import Source, sync
    from utils.errors import UserError
    from utils.index import Index

    index, model, root, lst, rel = list_index(tmp_path)
    before = state(index)
    index.close()
    moved = tmp_path / "elsewhere" / "images"
    moved.parent.mkdir()
    shutil.move(str(root), str(moved))
    sources = [Source(os.path.join(str(moved), p), (i % 2,)) for i, p in enumerate(rel)]
    with Index(tmp_path / "idx") as index:
        assert index.root_missing()
        with pytest.raises(UserError, match="image root .* is gone.*relocate --index .* --root NEW"):
            sync(index, model, sources)
    with pytest.raises(UserError, match="--data-path .*nowhere: directory not found"):
        Index(tmp_path / "idx", data_path=str(tmp_path / "nowhere"))
    # for one session: --data-path
    with Index(tmp_path / "idx", data_path=str(moved)) as index:
        assert os.path.isfile(index.file(rel[0]))
        model.encoder.images = 0
        stats = sync(index, model, sources)
        assert (stats.added, stats.unchanged, model.encoder.images) == (0, 30, 0)  # nothing re-encoded
        assert index.remove(paths=[str(moved / rel[6])])[0] == [6]
    # for good: relocate (refused when the images are not there)
    run_cli([INDEX_PY, "relocate", "--index", tmp_path / "idx", "--root", tmp_path], check=False)
    bad = run_cli([INDEX_PY, "relocate", "--index", tmp_path / "idx", "--root", tmp_path / "elsewhere"], check=False)
    assert bad.returncode == 2 and "none of 29 images of the index is there" in bad.stderr, bad.stderr
    out = run_cli([INDEX_PY, "relocate", "--index", tmp_path / "idx", "--root", moved])
    assert f"-> {moved} (29 of 29 sampled images found there)" in out.stdout, out.stdout
    with Index(tmp_path / "idx") as index:
        assert index.root == str(moved) and not index.root_missing()
        ids, packed, paths, _ = state(index)
        assert paths == [p for i, p in enumerate(before[2]) if i != 6]  # same stored paths, same codes
        assert packed == b"".join(before[1][2 * i:2 * i + 2] for i in range(30) if i != 6)
        assert sync(index, model, sources).added == 1  # the removed one comes back, nothing else


def make_old_index(tmp_path, relative_to=None):
    """An index as the code before PATH_FORMAT 2 wrote it: paths as scan_sources made them (absolute, or
    relative to the build's directory), no root / path_format in the catalogue."""
    index, model, root, lst, rel = list_index(tmp_path)
    expected = state(index)
    index.close()
    db = sqlite3.connect(tmp_path / "idx" / "catalogue.sqlite")
    for i, path in db.execute("SELECT id, path FROM items").fetchall():
        full = os.path.join(str(root), path)
        db.execute("UPDATE items SET path = ? WHERE id = ?",
                   (os.path.relpath(full, relative_to) if relative_to else full, i))
    db.execute("DELETE FROM meta WHERE key IN ('root', 'path_format')")
    db.commit()
    db.close()
    return model, root, rel, expected


@pytest.mark.parametrize("spelling", ["absolute", "relative"])
def test_an_index_written_before_is_migrated(tmp_path, spelling):
    from utils.deploy.indexing import Source, sync
    from utils.index import Index

    model, root, rel, expected = make_old_index(tmp_path, tmp_path if spelling == "relative" else None)
    with Index(tmp_path / "idx") as index:
        assert state(index) == expected and index.root == str(root)
        model.encoder.images = 0
        assert sync(index, model, [Source(str(root / p)) for p in rel]).unchanged == 30
        assert model.encoder.images == 0
        assert index.remove(paths=[rel[3]])[0] == [3]


# ------------------------------------------------------------------------------------------ writers
WRITER = """
import json, sys, time
import numpy as np
sys.path.insert(0, {root!r})
from utils.index import Index
op, idx = sys.argv[1], Index(sys.argv[2])
arg = json.loads(sys.argv[3])
if op == "add":  # one item per commit, as a stream of small writes
    for i in range(arg["n"]):
        path = f"{{arg['dir']}}/w{{arg['tag']}}_{{i}}.png"
        idx.add(np.asarray([[arg["tag"], i]], np.uint8), [path], delta=arg["delta"])
elif op == "remove":
    idx.remove(arg)
else:
    print(json.dumps(idx.compact()))
idx.close()
"""


def writer(tmp_path, op, index_path, arg):
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(root=ROOT))
    return subprocess.Popen([sys.executable, str(script), op, str(index_path), json.dumps(arg)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_concurrent_writers_in_processes_serialise(tmp_path):
    """Two processes add 60 items each (one per commit, into delta segments and plain ones), a third
    removes and two more compact meanwhile: every write lands, ids are unique, nothing is lost."""
    from utils.index import Index

    index, _, _, _, _ = list_index(tmp_path)
    index.close()
    idx = tmp_path / "idx"
    procs = [writer(tmp_path, "add", idx, {"n": 60, "tag": 1, "dir": str(tmp_path), "delta": True}),
             writer(tmp_path, "add", idx, {"n": 60, "tag": 2, "dir": str(tmp_path), "delta": False}),
             writer(tmp_path, "remove", idx, [0, 5, 9]),
             writer(tmp_path, "compact", idx, None), writer(tmp_path, "compact", idx, None)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    with Index(idx) as index:
        ids, packed, paths, _ = state(index)
        assert len(ids) == 30 + 120 - 3 == len(set(ids)) == len(index)
        assert index.info()["next_id"] == 150 and not set(ids) & {0, 5, 9}
        codes = {p: packed[2 * k:2 * k + 2] for k, p in enumerate(paths)}
        for tag in (1, 2):
            for i in range(60):
                assert codes[str(tmp_path / f"w{tag}_{i}.png")] == bytes([tag, i])
        assert index.info()["segments"] <= 2 * index.merge_fanout  # merged as they piled up
        index.compact()
        assert state(index)[:3] == (ids, packed, paths) and index.info()["segments"] == 1


def test_delta_segment_and_segment_bound(tmp_path):
    from utils.index import Index

    index, _, _, _, _ = list_index(tmp_path, n=30, chunk=10)
    assert index.info()["segments"] == 3
    for i in range(25):  # the service's uploads: one delta segment, rewritten
        index.add(np.asarray([[7, i]], np.uint8), [str(tmp_path / f"up{i}.png")], delta=True)
    assert index.info()["segments"] == 4 and len(os.listdir(index.dir.segments)) == 4
    before = state(index)
    index.merge_fanout = 4
    most = 0
    for i in range(70):  # plain one-item adds: a file each, merged by size tier as they pile up
        index.add(np.asarray([[8, i]], np.uint8), [str(tmp_path / f"plain{i}.png")])
        most = max(most, index.info()["segments"])
        assert len(os.listdir(index.dir.segments)) == index.info()["segments"]  # merged files are deleted
    # tiers of 1, 4, 16 (, 64) items: fewer than fanout of each, plus the larger base segments
    assert most <= 3 * 3 + 4 + 1, most
    after = state(index)
    assert after[0][:55] == before[0] and after[1][:110] == before[1] and len(after[0]) == 125
    assert after[1][110:] == b"".join(bytes([8, i]) for i in range(70))
    index.close()
    with Index(tmp_path / "idx") as reopened:
        assert state(reopened) == after
        reopened.compact()
        assert state(reopened) == after and reopened.info()["segments"] == 1


def test_a_searcher_sees_other_processes_writes(tmp_path):
    """The service's searcher and a writer in another process: an added image is found, a removed id is
    never returned once its removal committed, and a compaction elsewhere (dropping the ids the old
    snapshot still holds) does not break a search."""
    from PIL import Image

    from utils.deploy.indexing import IndexSearcher, encode_packed

    index, model, root, lst, rel = list_index(tmp_path)
    searcher = IndexSearcher(index, model, refresh_seconds=0)
    new = make_images(str(tmp_path / "new"), 3, 500)
    packed, _ = encode_packed(model, new)
    script = tmp_path / "add.py"
    script.write_text(f"import sys, numpy as np\nsys.path.insert(0, {ROOT!r})\nfrom utils.index import Index\n"
                      f"i = Index({str(tmp_path / 'idx')!r})\n"
                      f"i.add(np.asarray({packed.tolist()}, np.uint8), {new!r}, delta=True)\n")
    subprocess.run([sys.executable, str(script)], check=True, timeout=120)
    _, hits = searcher.search(Image.open(new[1]).convert("RGB"), 40)
    assert any(h.id == 31 and h.distance == 0 and h.stored == new[1] for h in hits), hits[:3]
    assert len(searcher) == 33
    old = searcher.snapshot
    query = Image.open(root / rel[2]).convert("RGB")
    assert 2 in [h.id for h in searcher.search(query, 40, old)[1]]
    p = writer(tmp_path, "remove", tmp_path / "idx", [2, 3])
    assert p.wait(120) == 0
    p = writer(tmp_path, "compact", tmp_path / "idx", None)
    assert p.wait(120) == 0
    # the old snapshot still holds 2 and 3, whose rows the compaction dropped: no KeyError, not returned
    _, hits = searcher.search(query, 40, old)
    assert {2, 3}.isdisjoint(h.id for h in hits) and len(hits) == 31
    _, hits = searcher.search(query, 40)
    assert {2, 3}.isdisjoint(h.id for h in hits) and len(searcher) == 31
    index.close()


# ------------------------------------------------------------------------------------------ service
def serving():
    sys.path.insert(0, os.path.join(ROOT, "deploy", "serving"))
    import app

    return app


def test_service_status_codes_and_logged_bugs(tmp_path, caplog):
    from utils.deploy.indexing import IndexSearcher
    from utils.errors import UserError

    app = serving()
    index, model, root, lst, rel = list_index(tmp_path)
    service = app.IndexService(IndexSearcher(index, model), "index")
    client = app.create_app(service, admin_token="t").test_client()
    img = (root / rel[0]).read_bytes()

    def ask():
        return client.post("/search", data={"image": (io.BytesIO(img), "q.png"), "k": 5})

    assert ask().status_code == 200
    original = service.searcher.rank

    def refuse(*a, **k):
        raise UserError("Milvus collection c: more than 16384 codes tie at the 5-th distance; ask for a smaller k")

    service.searcher.rank = refuse
    r = ask()
    assert r.status_code == 400 and "ask for a smaller k" in r.json["error"], r.json

    def bug(*a, **k):
        raise ZeroDivisionError("a bug")

    service.searcher.rank = bug
    with caplog.at_level("ERROR"):
        r = ask()
    assert r.status_code == 500 and r.json["error"] == "internal error (ZeroDivisionError)"
    assert any(rec.exc_info and rec.exc_info[0] is ZeroDivisionError for rec in caplog.records)
    service.searcher.rank = original
    # an index emptied by another writer: 409
    index.remove(range(30))
    service.searcher.refresh()
    r = ask()
    assert r.status_code == 409 and "empty" in r.json["error"]
    stats = client.get("/stats").json
    assert stats["requests"] == {"search": 1, "rejected": 1, "error": 1}, stats
    # an admin write while another process holds the write lock past the timeout: 503, not a traceback
    service.index.catalogue.timeout = 0.2
    service.index.catalogue.db.execute("PRAGMA busy_timeout = 200")
    blocker = sqlite3.connect(tmp_path / "idx" / "catalogue.sqlite", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    auth = {"Authorization": "Bearer t"}
    try:
        r = client.post("/index/add", data={"image": (io.BytesIO(img), "up.png")}, headers=auth)
        assert r.status_code == 503 and "write lock" in r.json["error"] and r.headers["Retry-After"], r.json
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    r = client.post("/index/add", data={"image": (io.BytesIO(img), "up.png")}, headers=auth)
    assert r.status_code == 200 and r.json["added"] and r.json["path"].startswith("@index/uploads/"), r.json
    service.close()


def test_request_counts_are_thread_safe():
    counts = serving().Counts()

    def hammer():
        for _ in range(20000):
            counts.add("search")

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counts.as_dict() == {"search": 160000}


def test_failed_start_closes_the_index(tmp_path, monkeypatch):
    import utils.deploy.indexing as indexing
    from utils.errors import UserError
    from utils.index import Index

    index, _, _, _, _ = list_index(tmp_path)
    index.close()
    closed = []
    real_close = Index.close
    monkeypatch.setattr(Index, "close", lambda self: (closed.append(self), real_close(self)))
    monkeypatch.setattr(indexing, "index_model", lambda *a, **k: (_ for _ in ()).throw(UserError("model differs")))
    with pytest.raises(UserError, match="model differs"):
        indexing.open_index_search(str(tmp_path / "idx"))
    assert len(closed) == 1
    with pytest.raises(sqlite3.ProgrammingError):  # its connections are closed
        closed[0].catalogue.db.execute("SELECT 1")


def test_milvus_searcher_sees_another_handles_writes(tmp_path):
    """The same on the Milvus backend (Milvus Lite: one process, so the other writer is a second handle)."""
    from tests.test_index import milvus_or_skip

    milvus_or_skip()
    from PIL import Image

    from utils.deploy.indexing import IndexSearcher, Source, create_index, encode_packed, sync
    from utils.index import Index

    root = tmp_path / "images"
    files = make_images(str(root), 20)
    model = fake_model()
    try:
        index = create_index(model, {"pretrained": "fake"}, str(tmp_path / "idx"), "milvus", str(tmp_path / "lite.db"),
                             {"images": str(root)})
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"Milvus Lite cannot start here: {exc}")
    sync(index, model, [Source(f) for f in files])
    searcher = IndexSearcher(index, model, refresh_seconds=0)
    old = searcher.snapshot
    other = Index(tmp_path / "idx")
    new = make_images(str(tmp_path / "new"), 2, 700)
    packed, _ = encode_packed(model, new)
    other.add(packed, new)
    assert other.remove(paths=[os.path.basename(files[4]), str(root / os.path.basename(files[6]))])[0] == [4, 6]
    other.compact()
    query = Image.open(files[4]).convert("RGB")
    for snap in (old, None):  # the stale snapshot still holds 4 and 6: they are left out all the same
        _, hits = searcher.search(query, 30, snap)
        assert {4, 6}.isdisjoint(h.id for h in hits) and len(hits) == 20, [h.id for h in hits]
    _, hits = searcher.search(Image.open(new[0]).convert("RGB"), 30)
    assert any(h.id == 20 and h.distance == 0 for h in hits)
    other.close()
    index.close()


def test_service_never_returns_an_id_removed_elsewhere(tmp_path):
    """Even before its periodic refresh (here: never), the service leaves out what another writer removed
    and compacted away, and answers 200."""
    from utils.deploy.indexing import IndexSearcher
    from utils.index import Index

    app = serving()
    index, model, root, lst, rel = list_index(tmp_path)
    service = app.IndexService(IndexSearcher(index, model, refresh_seconds=1e9), "index")
    client = app.create_app(service).test_client()

    def ids():
        r = client.post("/search", data={"image": (io.BytesIO((root / rel[0]).read_bytes()), "q.png"), "k": 30})
        assert r.status_code == 200, r.json
        return [h["id"] for h in r.json["results"]]

    assert sorted(ids()) == list(range(30))
    with Index(tmp_path / "idx") as other:
        other.remove([0, 1, 2])
    assert sorted(ids()) == list(range(3, 30))
    with Index(tmp_path / "idx") as other:
        other.remove([3])
        other.compact()
    assert sorted(ids()) == list(range(4, 30)) and service.size() == 26
    # the images move and another process records it: thumbnails come from the new root after a refresh
    assert client.get("/image/5").status_code == 200
    moved = tmp_path / "moved"
    shutil.move(str(root), str(moved))
    assert client.get("/image/6").status_code == 404
    with Index(tmp_path / "idx") as other:
        other.relocate(str(moved))
    service.searcher.refresh_seconds = 0
    assert client.get("/health").json["database_size"] == 26  # a request: the generation is checked
    r = client.get("/image/6")
    assert r.status_code == 200 and r.mimetype == "image/jpeg"
    service.close()
