"""Soak: the service on a living index while other processes write it (deploy/serving/app.py --index,
scripts/index.py add / remove / compact), all on 127.0.0.1, bounded in time.

8 client threads search without pause for the whole run; meanwhile another process adds 40 images
(`add --list`), the service's admin routes upload 10 images and delete 4 of them, another process
removes 10 ids and then compacts. Checked: no answer >= 500 and no dropped connection; every externally
added image is found by the running service at distance 0; a removed id is never returned by a search
sent after its removal committed plus one refresh period; the final count is exactly what the writes
imply. The numbers (searches, q/s, answers by status) are printed (pytest -s).

Also the real commands on an index whose image root moved (--data-path, relocate).
"""
import collections
import json
import os
import shutil
import threading
import time

import pytest

from tests.helpers import ROOT, run_cli
from tests.test_index import trained  # noqa: F401 - the module's tiny 16-bit checkpoint
from tests.test_serving import Server, multipart, request

pytestmark = pytest.mark.slow
INDEX_PY = os.path.join(ROOT, "scripts", "index.py")
CLIENTS = 8
MIN_SECONDS = 60  # the clients search at least this long, and until the writes are done and checked
MAX_SECONDS = 240  # ... but never longer than this
REFRESH = 0.5 + 0.5  # the service's refresh period (IndexSearcher.refresh_seconds), and slack


def post_search(url, content, k):
    body, headers = multipart({"image": ("q.jpg", content)}, {"k": k})
    status, raw, _ = request(url + "/search", body, headers, timeout=60)
    return status, json.loads(raw)


def test_soak_service_with_writers_in_other_processes(trained, tmp_path):  # noqa: F811
    from utils.data.lite_data import generate
    from utils.index import Index

    t = trained
    idx = tmp_path / "idx"
    run_cli([INDEX_PY, "build", "--model", t["ckpt"], *t["db"], "--out", idx])
    extra = generate("single", str(tmp_path / "extra"), str(tmp_path / "extra_lists"), n_train=1, n_database=40,
                     n_test=10, seed=11)
    extra_list = os.path.join(extra["list_dir"], "database.txt")
    extra_files = [os.path.join(extra["root"], line.split()[0]) for line in open(extra_list) if line.strip()]
    uploads = [os.path.join(extra["root"], "test", f) for f in sorted(os.listdir(os.path.join(extra["root"], "test")))]
    db_root = t["data"]["root"]
    db_files = [os.path.join(db_root, line.split()[0])
                for line in open(os.path.join(t["data"]["list_dir"], "database.txt")) if line.strip()]
    queries = [open(f, "rb").read() for f in db_files + extra_files + uploads]
    with Index(idx) as index:
        start_count = len(index)
    assert start_count == 48
    server = Server(["--index", idx, "--admin-token", "tok", "--threads", 8, "--max-k", 500], tmp_path / "server.log")
    try:
        server.wait_ready()
        url, k_all = server.url, 500
        hard_stop = time.monotonic() + MAX_SECONDS
        done = threading.Event()
        log, lock, failures = [], threading.Lock(), []

        def client(n):
            i = n
            while not done.is_set() and time.monotonic() < hard_stop:
                sent = time.monotonic()
                try:
                    status, out = post_search(url, queries[i % len(queries)], k_all)
                    ids = [r["id"] for r in out.get("results", [])]
                except Exception as exc:  # noqa: BLE001 - a dropped connection or a bad answer
                    status, ids = None, []
                    with lock:
                        failures.append(repr(exc))
                with lock:
                    log.append((sent, status, ids, time.monotonic() - sent))
                i += CLIENTS

        clients = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
        t0 = time.monotonic()
        for c in clients:
            c.start()
        events, admin = {}, {"added": [], "deleted": []}

        def admin_writes():
            auth = {"Authorization": "Bearer tok"}
            for path in uploads:
                body, headers = multipart({"image": (os.path.basename(path), open(path, "rb").read())})
                status, raw, _ = request(url + "/index/add", body, {**headers, **auth}, timeout=60)
                assert status == 200, raw
                admin["added"].append(json.loads(raw)["id"])
                time.sleep(0.5)
            for item in admin["added"][:4]:
                req_status = request_delete(url + f"/index/{item}", auth)
                assert req_status == 200
                admin["deleted"].append(item)
                events["admin_deleted"] = time.monotonic()
                time.sleep(0.5)

        admin_thread = threading.Thread(target=admin_writes)
        time.sleep(3)
        admin_thread.start()
        run_cli([INDEX_PY, "add", "--index", idx, "--list", extra_list, "--data-path", extra["root"]], timeout=300)
        events["added"] = time.monotonic()
        removed = list(range(2, 48, 4))[:10]
        run_cli([INDEX_PY, "remove", "--index", idx, "--ids", ",".join(map(str, removed))], timeout=300)
        events["removed"] = time.monotonic()
        compacted = run_cli([INDEX_PY, "compact", "--index", idx], timeout=300)
        events["compacted"] = time.monotonic()
        admin_thread.join(120)
        assert not admin_thread.is_alive()
        # the externally added images, searched on the running service once a refresh period passed
        time.sleep(REFRESH)
        with Index(idx) as index:
            ext_ids, missing = index.lookup(extra_files)
        assert not missing and len(ext_ids) == 40
        found = 0
        for path, item in ext_ids.items():
            status, out = post_search(url, open(path, "rb").read(), k_all)
            assert status == 200, out
            found += any(r["id"] == item and r["distance"] == 0 for r in out["results"])
        time.sleep(max(0.0, t0 + MIN_SECONDS - time.monotonic()))
        done.set()
        for c in clients:
            c.join(120)
        elapsed = time.monotonic() - t0
        status, raw, _ = request(url + "/stats")
        stats = json.loads(raw)
    finally:
        server.stop()
    by_status = collections.Counter(entry[1] for entry in log)
    waits = sorted(entry[3] for entry in log)
    during = [entry[3] for entry in log if events["removed"] <= entry[0] <= events["compacted"]]
    print(f"\nsoak: {len(log)} searches in {elapsed:.1f} s by {CLIENTS} threads = {len(log) / elapsed:.1f} q/s; "
          f"latency p50 {1000 * waits[len(waits) // 2]:.0f} ms, p95 {1000 * waits[int(0.95 * len(waits))]:.0f} ms, "
          f"max {1000 * waits[-1]:.0f} ms (max {1000 * max(during, default=0):.0f} ms of {len(during)} sent during "
          "the compaction); "
          f"answers by status {dict(sorted(by_status.items(), key=str))}; {len(failures)} dropped; writes: "
          f"add 40 done at {events['added'] - t0:.1f} s, remove 10 at {events['removed'] - t0:.1f} s, compact at "
          f"{events['compacted'] - t0:.1f} s ({compacted.stdout.strip()}), admin +{len(admin['added'])} "
          f"-{len(admin['deleted'])}")
    assert not failures, failures[:3]
    assert all(entry[1] is not None and entry[1] < 500 for entry in log), by_status
    assert by_status[200] == len(log), by_status
    assert found == 40
    late = [ids for sent, _, ids, _ in log if sent > events["removed"] + REFRESH]
    assert late and not any(set(ids) & set(removed) for ids in late)
    assert len(removed) == 10 and len(admin["deleted"]) == 4
    deleted_late = [ids for sent, _, ids, _ in log if sent > events["admin_deleted"] + REFRESH]
    assert deleted_late
    assert not any(set(ids) & set(admin["deleted"]) for ids in deleted_late)
    expected = start_count + 40 - len(removed) + len(admin["added"]) - len(admin["deleted"])
    assert stats["count"] == stats["searchable"] == expected == 48 + 40 - 10 + 10 - 4, stats
    assert "error" not in stats["requests"]
    with Index(idx) as index:
        assert len(index) == expected and len(index.snapshot()) == expected
    assert "Traceback" not in server.output()


def request_delete(url, headers):
    import urllib.request

    req = urllib.request.Request(url, headers=headers, method="DELETE")
    with urllib.request.urlopen(req, timeout=60) as resp:
        return resp.status


def test_an_index_whose_images_moved_end_to_end(trained, tmp_path):  # noqa: F811
    """The real commands on an index whose image root moved: --data-path for one command, then relocate."""
    t = trained
    images = tmp_path / "images"
    shutil.copytree(t["data"]["root"], images)
    db_list = os.path.join(t["data"]["list_dir"], "database.txt")
    idx = tmp_path / "idx"
    run_cli([INDEX_PY, "build", "--model", t["ckpt"], "--list", db_list, "--data-path", images, "--out", idx])
    rel = [line.split()[0] for line in open(db_list) if line.strip()]
    moved = tmp_path / "moved" / "images"
    moved.parent.mkdir()
    shutil.move(str(images), str(moved))
    query = str(moved / rel[5])
    out = json.loads(run_cli([INDEX_PY, "search", "--index", idx, "--img", query, "-k", 48, "--json",
                              "--data-path", moved]).stdout)["results"]
    hit = next(r for r in out if r["id"] == 5)
    assert hit["distance"] == 0 and hit["path"] == rel[5] and hit["file"] == query
    added = run_cli([INDEX_PY, "add", "--index", idx, "--list", db_list, "--data-path", moved]).stdout
    assert "is gone: using --data-path" in added and "added 0, 48 already in the index" in added, added
    pred = run_cli(["predict.py", "--index", idx, "--img", query, "--topk", 3, "--data_path", moved,
                    "--save_path", tmp_path / "pred"]).stdout
    assert f"Found Matched Pic: {moved}" in pred, pred
    run_cli([INDEX_PY, "relocate", "--index", idx, "--root", moved])
    pred = run_cli(["predict.py", "--index", idx, "--img", query, "--topk", 3, "--save_path", tmp_path / "pred"]).stdout
    assert f"Found Matched Pic: {moved}" in pred, pred
    assert "added 0, 48 already" in run_cli([INDEX_PY, "add", "--index", idx, "--list", db_list,
                                             "--data-path", moved]).stdout
