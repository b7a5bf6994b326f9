"""Data tools: the lite data generator, make_lite_data.py, build_coco_lists.py, build_cifar10_lists.py.

No Paddle needed; fake COCO annotations and a fake CIFAR-10 archive stand in for the real files.
"""
import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from PIL import Image

from utils.errors import UserError
from utils.data.lists import read_list
from utils.data.lite_data import STAMP_NAME, generate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPLITS = ("train", "database", "test")
SMALL = dict(n_train=24, n_database=36, n_test=12)


def run_script(name, *args, cwd=None):
    return subprocess.run([sys.executable, os.path.join(ROOT, "scripts", name), *map(str, args)],
                          capture_output=True, text=True, cwd=cwd or ROOT, timeout=120)


def file_hashes(root, list_dir):
    """sha256 of every list and every listed image, keyed by relative name."""
    out = {}
    for name in SPLITS:
        lst = os.path.join(list_dir, f"{name}.txt")
        out[f"lists/{name}.txt"] = hashlib.sha256(open(lst, "rb").read()).hexdigest()
        for path in read_list(lst).paths:
            out[path] = hashlib.sha256(open(os.path.join(root, path), "rb").read()).hexdigest()
    return out


def mtimes(root, list_dir):
    paths = [os.path.join(list_dir, f"{n}.txt") for n in SPLITS] + [os.path.join(list_dir, STAMP_NAME)]
    for n in SPLITS:
        paths += [os.path.join(root, p) for p in read_list(os.path.join(list_dir, f"{n}.txt")).paths]
    return {p: os.stat(p).st_mtime_ns for p in paths}


@pytest.fixture(scope="module", params=["single", "multi"])
def lite(request, tmp_path_factory):
    base = tmp_path_factory.mktemp(f"lite_{request.param}")
    root, list_dir = str(base / "images"), str(base / "lists")
    summary = generate(request.param, root, list_dir, **SMALL, seed=0)
    lists = {n: read_list(os.path.join(list_dir, f"{n}.txt")) for n in SPLITS}
    return {"kind": request.param, "root": root, "list_dir": list_dir, "summary": summary, "lists": lists}


# ---------------------------------------------------------------- lite data: structure

def test_generate_counts_and_summary(lite):
    s = lite["summary"]
    assert s["regenerated"] and s["num_labels"] == 10 and s["kind"] == lite["kind"]
    assert s["counts"] == {"train": 24, "database": 36, "test": 12}
    assert (s["train"], s["database"], s["test"]) == (24, 36, 12)
    for name, n in s["counts"].items():
        lst = lite["lists"][name]
        assert len(lst) == n and lst.num_labels == 10
        assert all(os.path.isfile(os.path.join(lite["root"], p)) for p in lst.paths)
        assert all(p.startswith(name + "/") for p in lst.paths)
        with Image.open(os.path.join(lite["root"], lst.paths[0])) as im:
            assert im.size == (64, 64) and im.mode == "RGB"


def test_splits_disjoint(lite):
    sets = [set(lite["lists"][n].paths) for n in SPLITS]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    # and the pixels differ too (no image is copied between splits)
    hashes = file_hashes(lite["root"], lite["list_dir"])
    image_hashes = [h for k, h in hashes.items() if not k.startswith("lists/")]
    assert len(set(image_hashes)) == len(image_hashes)


def test_labels_valid(lite):
    for name in SPLITS:
        labels = lite["lists"][name].labels
        counts = labels.sum(1)
        assert counts.min() >= 1
        if lite["kind"] == "single":
            assert (counts == 1).all()
        else:
            assert counts.max() <= 3
    if lite["kind"] == "single":
        # round-robin classes: every class in every split, balanced in train (24 = 2*10 + 4)
        for name in SPLITS:
            assert (lite["lists"][name].labels.sum(0) >= 1).all()
        per_class = lite["lists"]["train"].labels.sum(0)
        assert per_class.max() - per_class.min() <= 1
    else:
        train = lite["lists"]["train"].labels
        assert (train.sum(1) > 1).sum() >= 5  # a good share of images carry several labels
        assert (train.sum(0) >= 1).all()


# ---------------------------------------------------------------- lite data: determinism, idempotence

def test_deterministic_across_dirs(tmp_path):
    for kind in ("single", "multi"):
        a = generate(kind, str(tmp_path / f"a_{kind}" / "img"), str(tmp_path / f"a_{kind}" / "lst"), **SMALL, seed=3)
        b = generate(kind, str(tmp_path / f"b_{kind}" / "img"), str(tmp_path / f"b_{kind}" / "lst"), **SMALL, seed=3)
        assert a["regenerated"] and b["regenerated"]
        ha = file_hashes(a["root"], a["list_dir"])
        hb = file_hashes(b["root"], b["list_dir"])
        assert ha == hb and len(ha) == 3 + 24 + 36 + 12


def test_seed_changes_images(tmp_path):
    a = generate("single", str(tmp_path / "a"), str(tmp_path / "la"), **SMALL, seed=0)
    b = generate("single", str(tmp_path / "b"), str(tmp_path / "lb"), **SMALL, seed=1)
    ha, hb = file_hashes(a["root"], a["list_dir"]), file_hashes(b["root"], b["list_dir"])
    shared = set(ha) & set(hb)
    assert sum(ha[k] == hb[k] for k in shared if not k.startswith("lists/")) == 0


def test_idempotent_and_regenerates_on_change(tmp_path):
    root, list_dir = str(tmp_path / "img"), str(tmp_path / "lst")
    generate("multi", root, list_dir, **SMALL)
    before = mtimes(root, list_dir)
    again = generate("multi", root, list_dir, **SMALL)
    assert not again["regenerated"]
    assert mtimes(root, list_dir) == before

    # a missing image (e.g. an interrupted or tampered run) triggers regeneration
    victim = next(iter(p for p in before if p.endswith(".jpg")))
    os.remove(victim)
    assert generate("multi", root, list_dir, **SMALL)["regenerated"]
    assert os.path.isfile(victim)

    # other arguments regenerate, and images the new lists do not use are removed
    smaller = dict(SMALL, n_database=20)
    s = generate("multi", root, list_dir, **smaller)
    assert s["regenerated"] and s["counts"]["database"] == 20
    assert len(read_list(os.path.join(list_dir, "database.txt"))) == 20
    assert len([f for f in os.listdir(os.path.join(root, "database")) if f.endswith(".jpg")]) == 20
    with open(os.path.join(list_dir, STAMP_NAME)) as f:
        assert json.load(f)["args"]["n_database"] == 20
    assert not [f for d in SPLITS for f in os.listdir(os.path.join(root, d)) if f.endswith(".tmp")]


def test_missing_stamp_regenerates(tmp_path):
    root, list_dir = str(tmp_path / "img"), str(tmp_path / "lst")
    generate("single", root, list_dir, **SMALL)
    os.remove(os.path.join(list_dir, STAMP_NAME))  # what an interrupted run leaves behind
    assert generate("single", root, list_dir, **SMALL)["regenerated"]


@pytest.mark.parametrize("kwargs", [dict(kind="pairs"), dict(n_train=0), dict(num_classes=1), dict(size=8)])
def test_generate_rejects_bad_args(tmp_path, kwargs):
    args = dict(kind="single", root=str(tmp_path / "i"), list_dir=str(tmp_path / "l"), **SMALL)
    args.update(kwargs)
    with pytest.raises(UserError):
        generate(**args)


# ---------------------------------------------------------------- lite data: labels match content

def _features(root, paths):
    """Colour features of downsampled pixels: a 20-bin hue histogram of the saturated pixels of a 16x16
    thumbnail (the background and clutter are grey, so they fall out)."""
    feats = []
    for p in paths:
        with Image.open(os.path.join(root, p)) as im:
            hsv = np.asarray(im.convert("RGB").resize((16, 16), Image.BILINEAR).convert("HSV"), np.float32) / 255
        saturated = hsv[..., 1] > 0.45
        feats.append(np.histogram(hsv[..., 0][saturated], bins=20, range=(0, 1))[0] / saturated.size)
    return np.stack(feats)


@pytest.mark.parametrize("kind", ["single", "multi"])
def test_nearest_class_mean_beats_chance(tmp_path, kind):
    """Labels correspond to image content: a nearest-class-mean classifier on colour features learns them."""
    s = generate(kind, str(tmp_path / "img"), str(tmp_path / "lst"), n_train=200, n_database=10, n_test=80)
    train = read_list(os.path.join(s["list_dir"], "train.txt"))
    test = read_list(os.path.join(s["list_dir"], "test.txt"))
    xtr, xte = _features(s["root"], train.paths), _features(s["root"], test.paths)
    ytr, yte = train.labels.astype(bool), test.labels.astype(bool)
    means = np.stack([xtr[ytr[:, c]].mean(0) for c in range(ytr.shape[1])])
    dist = ((xte[:, None, :] - means[None]) ** 2).sum(-1)
    pred = dist.argmin(1)
    accuracy = yte[np.arange(len(yte)), pred].mean()  # multi: the top class is one of the image's labels
    chance = yte.sum(1).mean() / yte.shape[1]
    assert accuracy >= max(0.8, 4 * chance), (accuracy, chance)  # chance: 0.1 single, about 0.18 multi


# ---------------------------------------------------------------- make_lite_data.py

def test_make_lite_data_cli(tmp_path):
    r = run_script("make_lite_data.py", "--kind", "single", "--n-train", 12, "--n-database", 16, "--n-test", 8,
                   "--data-path", tmp_path / "img", "--list-dir", tmp_path / "lst")
    assert r.returncode == 0, r.stderr
    assert "wrote 12 train / 16 database / 8 test" in r.stdout
    assert len(read_list(str(tmp_path / "lst" / "database.txt"))) == 16
    r = run_script("make_lite_data.py", "--kind", "single", "--n-train", 12, "--n-database", 16, "--n-test", 8,
                   "--data-path", tmp_path / "img", "--list-dir", tmp_path / "lst")
    assert r.returncode == 0 and "up to date" in r.stdout


def test_make_lite_data_defaults_and_errors(tmp_path):
    # default folders are relative to the working directory
    r = run_script("make_lite_data.py", "--n-train", 10, "--n-database", 10, "--n-test", 10, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    for kind in ("single", "multi"):
        assert len(read_list(str(tmp_path / "data" / f"lite_{kind}" / "train.txt"))) == 10
        assert (tmp_path / "datasets" / f"lite_{kind}" / "train").is_dir()
    r = run_script("make_lite_data.py", "--list-dir", tmp_path / "x", cwd=str(tmp_path))
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr
    r = run_script("make_lite_data.py", "--kind", "single", "--n-test", 0, cwd=str(tmp_path))
    assert r.returncode == 2 and r.stderr.strip() == "error: --n-test must be positive, got 0"


# ---------------------------------------------------------------- build_coco_lists.py

# category ids deliberately out of order and with gaps, as in COCO (1..90 with holes)
COCO_CATS = [{"id": 90, "name": "toothbrush"}, {"id": 1, "name": "person"}, {"id": 18, "name": "dog"},
             {"id": 3, "name": "car"}]


def _fake_coco(folder, n_train=14, n_val=8):
    rng = np.random.default_rng(5)
    ids = [c["id"] for c in COCO_CATS]
    for split, n, offset in (("train2014", n_train, 1), ("val2014", n_val, 1000)):
        images, anns = [], []
        for k in range(n):
            image_id = offset + 7 * k
            images.append({"id": image_id, "file_name": f"COCO_{split}_{image_id:012d}.jpg", "width": 64,
                           "height": 64})
            if split == "train2014" and k == 3:
                continue  # no annotations: pruned
            for cid in rng.choice(ids, size=rng.integers(1, 3), replace=False):
                anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": int(cid), "iscrowd": 0})
            anns.append(dict(anns[-1], id=len(anns) + 1))  # a repeated category on the same image
        with open(os.path.join(folder, f"instances_{split}.json"), "w") as f:
            json.dump({"images": images, "annotations": anns, "categories": COCO_CATS}, f)
    return n_train + n_val - 1  # labelled images


def test_build_coco_lists(tmp_path):
    ann = tmp_path / "annotations"
    ann.mkdir()
    n_labelled = _fake_coco(str(ann))
    out = tmp_path / "lists"
    r = run_script("build_coco_lists.py", "--annotations", ann, "--out", out, "--n-query", 5, "--n-train", 6)
    assert r.returncode == 0, r.stderr
    assert "1 without labels pruned" in r.stdout and f"{n_labelled} labelled" in r.stdout
    lists = {n: read_list(str(out / f"{n}.txt"), 4) for n in SPLITS}
    assert len(lists["test"]) == 5 and len(lists["database"]) == n_labelled - 5 and len(lists["train"]) == 6
    q, db, tr = (set(lists[n].paths) for n in ("test", "database", "train"))
    assert not q & db and tr <= db and len(q | db) == n_labelled
    assert (f"checked: queries ∩ database = ∅ (5 queries, {n_labelled - 5} database), train ⊆ database "
            f"(6 of {n_labelled - 5}), train ∩ queries = ∅") in r.stdout
    assert "train2014/COCO_train2014_000000000022.jpg" not in q | db  # the unannotated image (k = 3)
    assert all(p.startswith(("train2014/COCO_train2014_", "val2014/COCO_val2014_")) for p in q | db)

    # label columns follow increasing category id: person(1), car(3), dog(18), toothbrush(90)
    with open(ann / "instances_train2014.json") as f:
        data = json.load(f)
    expected = {}
    for a in data["annotations"]:
        name = next(im["file_name"] for im in data["images"] if im["id"] == a["image_id"])
        expected.setdefault("train2014/" + name, set()).add([1, 3, 18, 90].index(a["category_id"]))
    everything = {p: set(np.flatnonzero(row)) for n in ("test", "database")
                  for p, row in zip(lists[n].paths, lists[n].labels)}
    for path, cols in expected.items():
        assert everything[path] == cols

    # seeded: same seed, same lists; another seed, another split
    out2, out3 = tmp_path / "again", tmp_path / "other"
    assert run_script("build_coco_lists.py", "--annotations", ann, "--out", out2, "--n-query", 5,
                      "--n-train", 6).returncode == 0
    assert run_script("build_coco_lists.py", "--annotations", ann, "--out", out3, "--n-query", 5,
                      "--n-train", 6, "--seed", 1).returncode == 0
    for n in SPLITS:
        assert (out / f"{n}.txt").read_bytes() == (out2 / f"{n}.txt").read_bytes()
    assert any((out / f"{n}.txt").read_bytes() != (out3 / f"{n}.txt").read_bytes() for n in SPLITS)


def test_build_coco_lists_check_images(tmp_path):
    ann = tmp_path / "annotations"
    ann.mkdir()
    _fake_coco(str(ann))
    args = ("--annotations", ann, "--out", tmp_path / "l", "--n-query", 5, "--n-train", 6,
            "--image-root", tmp_path / "coco", "--check-images")
    r = run_script("build_coco_lists.py", *args)
    assert r.returncode == 2 and "images not found" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    with open(ann / "instances_train2014.json") as f:
        train = json.load(f)
    with open(ann / "instances_val2014.json") as f:
        val = json.load(f)
    for split, data in (("train2014", train), ("val2014", val)):
        (tmp_path / "coco" / split).mkdir(parents=True)
        for im in data["images"]:
            (tmp_path / "coco" / split / im["file_name"]).write_bytes(b"")
    r = run_script("build_coco_lists.py", *args)
    assert r.returncode == 0, r.stderr


def test_build_coco_lists_errors(tmp_path):
    ann = tmp_path / "annotations"
    ann.mkdir()
    _fake_coco(str(ann))
    missing = tmp_path / "nowhere" / "instances_train2014.json"
    r = run_script("build_coco_lists.py", "--train-json", missing, "--val-json", ann / "instances_val2014.json",
                   "--out", tmp_path / "l")
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("error: ") and str(missing) in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr

    (ann / "instances_val2014.json").write_text('{"images": [')  # truncated download
    r = run_script("build_coco_lists.py", "--annotations", ann, "--out", tmp_path / "l")
    assert r.returncode == 2 and "instances_val2014.json" in r.stderr and "JSON" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1

    (ann / "instances_val2014.json").write_text('{"annotations": []}')
    r = run_script("build_coco_lists.py", "--annotations", ann, "--out", tmp_path / "l")
    assert r.returncode == 2 and "not a COCO instances file" in r.stderr

    _fake_coco(str(ann))
    r = run_script("build_coco_lists.py", "--annotations", ann, "--out", tmp_path / "l", "--n-query", 50)
    assert r.returncode == 2 and "--n-query 50" in r.stderr
    assert not (tmp_path / "l").exists()


# ---------------------------------------------------------------- build_cifar10_lists.py

TRAIN_PER_CLASS, TEST_PER_CLASS = 8, 2  # fake archive: 80 "official" training images, 20 test images


def _fake_cifar(path, as_folder=False, drop=None):
    rng = np.random.default_rng(11)
    train_labels = np.repeat(np.arange(10), TRAIN_PER_CLASS)
    rng.shuffle(train_labels)
    test_labels = np.repeat(np.arange(10), TEST_PER_CLASS)
    rng.shuffle(test_labels)
    batches = {f"data_batch_{i + 1}": chunk for i, chunk in enumerate(np.array_split(train_labels, 5))}
    batches["test_batch"] = test_labels
    blobs = {}
    for name, labels in batches.items():
        data = rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)
        blobs[name] = pickle.dumps({b"batch_label": name.encode(), b"labels": [int(v) for v in labels],
                                    b"data": data, b"filenames": [b"x.png"] * len(labels)})
    blobs.pop(drop, None)
    if as_folder:
        os.makedirs(os.path.join(path, "cifar-10-batches-py"))
        for name, blob in blobs.items():
            with open(os.path.join(path, "cifar-10-batches-py", name), "wb") as f:
                f.write(blob)
        return path, train_labels, test_labels
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in blobs.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path, train_labels, test_labels


@pytest.mark.parametrize("protocol,counts", [("cifar10", (30, 50, 20)), ("cifar10-1", (30, 80, 20)),
                                             ("cifar10-2", (80, 80, 20))])
def test_build_cifar10_lists(tmp_path, protocol, counts):
    archive, train_labels, test_labels = _fake_cifar(str(tmp_path / "cifar-10-python.tar.gz"))
    data_path, out = tmp_path / "cifar", tmp_path / "lists"
    extra = () if protocol == "cifar10-2" else ("--test-per-class", 2, "--train-per-class", 3)
    r = run_script("build_cifar10_lists.py", "--archive", archive, "--data-path", data_path, "--out", out,
                   "--protocol", protocol, *extra)
    assert r.returncode == 0, r.stderr
    lists = {n: read_list(str(out / f"{n}.txt"), 10) for n in SPLITS}
    assert tuple(len(lists[n]) for n in SPLITS) == counts
    tr, db, te = (set(lists[n].paths) for n in SPLITS)
    assert not te & db and not te & tr
    if protocol == "cifar10":
        assert not tr & db and len(tr | db | te) == 100
        assert f"train ∩ database = ∅ ({counts[0]} train, {counts[1]} database)" in r.stdout
    else:
        assert tr <= db
        assert f"train ⊆ database ({counts[0]} of {counts[1]})" in r.stdout
    assert f"checked: queries ∩ database = ∅ ({counts[2]} queries, {counts[1]} database)" in r.stdout
    for n in SPLITS:
        assert (lists[n].labels.sum(1) == 1).all()
        assert all(os.path.isfile(data_path / p) for p in lists[n].paths)
    pooled = np.concatenate([train_labels, test_labels])  # data_batch_1..5 then test_batch
    for n in SPLITS:
        idx = [int(p[len("images/"):-len(".png")]) for p in lists[n].paths]
        assert (lists[n].labels.argmax(1) == pooled[idx]).all()
    if protocol == "cifar10-2":
        assert te == {f"images/{i}.png" for i in range(80, 100)}
    else:
        for n, k in (("test", 2), ("train", 3)):
            assert (lists[n].labels.sum(0) == k).all()  # per-class counts
    with Image.open(data_path / "images" / "0.png") as im:
        assert im.size == (32, 32) and im.mode == "RGB"


def test_build_cifar10_lists_folder_seed_and_reuse(tmp_path):
    folder, _, _ = _fake_cifar(str(tmp_path / "extracted"), as_folder=True)
    common = ("--data-path", tmp_path / "cifar", "--test-per-class", 2, "--train-per-class", 3)
    r1 = run_script("build_cifar10_lists.py", "--archive", folder, "--out", tmp_path / "a", *common)
    assert r1.returncode == 0 and "written to" in r1.stdout, r1.stderr
    r2 = run_script("build_cifar10_lists.py", "--archive", os.path.join(folder, "cifar-10-batches-py"),
                    "--out", tmp_path / "b", *common)
    assert r2.returncode == 0 and "already in" in r2.stdout, r2.stderr  # images are not rewritten
    r3 = run_script("build_cifar10_lists.py", "--archive", folder, "--out", tmp_path / "c", "--seed", 1, *common)
    assert r3.returncode == 0
    for n in SPLITS:
        assert (tmp_path / "a" / f"{n}.txt").read_bytes() == (tmp_path / "b" / f"{n}.txt").read_bytes()
    assert (tmp_path / "a" / "test.txt").read_bytes() != (tmp_path / "c" / "test.txt").read_bytes()


def test_build_cifar10_lists_errors(tmp_path):
    def one_line_error(r, *needles):
        assert r.returncode == 2, r.stderr
        assert r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1, r.stderr
        for needle in needles:
            assert needle in r.stderr, r.stderr

    one_line_error(run_script("build_cifar10_lists.py", "--archive", tmp_path / "nope.tar.gz"), "nope.tar.gz")
    archive, _, _ = _fake_cifar(str(tmp_path / "partial.tar.gz"), drop="data_batch_3")
    one_line_error(run_script("build_cifar10_lists.py", "--archive", archive), "data_batch_3")
    folder, _, _ = _fake_cifar(str(tmp_path / "dir"), as_folder=True, drop="test_batch")
    one_line_error(run_script("build_cifar10_lists.py", "--archive", folder), "test_batch")
    (tmp_path / "junk.tar.gz").write_bytes(b"not an archive")
    one_line_error(run_script("build_cifar10_lists.py", "--archive", tmp_path / "junk.tar.gz"), "junk.tar.gz")
    archive, _, _ = _fake_cifar(str(tmp_path / "ok.tar.gz"))
    one_line_error(run_script("build_cifar10_lists.py", "--archive", archive, "--data-path", tmp_path / "c",
                              "--out", tmp_path / "l"), "class", "--test-per-class 100")  # 10 images per class


def test_data_tools_do_not_import_paddle():
    code = ("import sys; sys.path.insert(0, %r); import utils.data.lite_data; "
            "import importlib.util as u; [u.spec_from_file_location(n, %r + '/scripts/' + n + '.py').loader"
            ".exec_module(u.module_from_spec(u.spec_from_file_location(n, %r + '/scripts/' + n + '.py'))) "
            "for n in ('make_lite_data', 'build_coco_lists', 'build_cifar10_lists')]; "
            "assert 'paddle' not in sys.modules, 'paddle imported'") % (ROOT, ROOT, ROOT)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
