"""scripts/build_lists.py: lists for your own images from class folders or a CSV (no Paddle needed).

Tiny images are drawn in tmp_path; the script runs as a subprocess (exit status, one-line errors), and the
modules behind it are called directly: utils/data/sources.py (folders, CSV, image checks), utils/data/split.py
(the stratified split, pinned to exact indices) and utils/data/custom_lists.py (build and write).
"""
import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from utils.data import sources
from utils.data import split as sp
from utils.data.custom_lists import build
from utils.data.images import check_image
from utils.data.lists import read_list
from utils.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "build_lists.py")
SPLITS = ("train", "database", "test")
OUTPUTS = ("train.txt", "database.txt", "test.txt", "classes.txt")

def run(*args, cwd=None):
    return subprocess.run([sys.executable, SCRIPT, *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=120)


def ok(r):
    assert r.returncode == 0, r.stderr + r.stdout
    return r


def one_line_error(r, *needles):
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr
    for needle in needles:
        assert needle in r.stderr, r.stderr
    return r.stderr


def save_image(path, seed, fmt=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (12, 12, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format=fmt)


def make_folders(base, sizes, extras=True):
    """base/<class>/... with sizes[class] images: mixed case extensions, nested sub-folders."""
    exts = (".jpg", ".PNG", ".jpeg", ".Bmp", ".webp", ".tif", ".gif", ".ppm")
    n = 0
    for cls, count in sizes.items():
        for i in range(count):
            sub = ("deep", "er") if i % 4 == 1 else ("sub",) if i % 4 == 2 else ()
            save_image(os.path.join(base, cls, *sub, f"img{i:03d}{exts[i % len(exts)]}"), n)
            n += 1
    if extras:
        (open(os.path.join(base, list(sizes)[0], "notes.txt"), "w")).write("not an image")
        (open(os.path.join(base, list(sizes)[-1], "sub", "meta.json"), "w")).write("{}")
        (open(os.path.join(base, "README.md"), "w")).write("top-level file, not in a class")
        (open(os.path.join(base, list(sizes)[0], "._img000.jpg"), "wb")).write(b"\0AppleDouble")
    return str(base)


def lists(out):
    return {name: read_list(os.path.join(out, f"{name}.txt")) for name in SPLITS}


def classes_of(out):
    with open(os.path.join(out, "classes.txt"), encoding="utf-8") as f:
        return f.read().splitlines()


def per_class(out):
    """{split: {class: count}} from the written files."""
    names = classes_of(out)
    return {s: dict(zip(names, lst.labels.sum(0).tolist())) for s, lst in lists(out).items()}


def digests(out):
    return {name: hashlib.sha256(open(os.path.join(out, name), "rb").read()).hexdigest() for name in OUTPUTS}


SIZES = {"cat": 20, "dog": 10, "owl": 7}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return make_folders(tmp_path_factory.mktemp("folders") / "photos", SIZES)


# ------------------------------------------------------------------------- class folders: counts

def test_folder_defaults_exact_counts(folders, tmp_path):
    out = tmp_path / "lists"
    r = ok(run("--images", folders, "--out", out))
    # 10% queries (rounded, ≥ 1), training = 50% of the rest, drawn from the database
    assert per_class(out) == {"test": {"cat": 2, "dog": 1, "owl": 1},
                              "database": {"cat": 18, "dog": 9, "owl": 6},
                              "train": {"cat": 9, "dog": 5, "owl": 3}}
    assert classes_of(out) == ["cat", "dog", "owl"]
    ls = lists(out)
    assert all(lst.num_labels == 3 and (lst.labels.sum(1) == 1).all() for lst in ls.values())  # one-hot
    test, db, train = (set(ls[n].paths) for n in ("test", "database", "train"))
    assert not test & db and train <= db and len(test | db) == 37
    for lst in ls.values():
        assert lst.paths == sorted(lst.paths)
        for path, row in zip(lst.paths, lst.labels):
            assert os.path.isfile(os.path.join(folders, path))  # relative to --images
            assert classes_of(out)[int(row.argmax())] == path.split("/")[0]
    assert any("/deep/er/" in p for p in db | test) and any(p.endswith(".PNG") for p in db | test)
    assert "ignored 2 non-image files" in r.stdout and "1 file directly in" in r.stdout and "1 hidden entry" in r.stdout
    assert "--query-fraction 0.1 (default) and --train-fraction 0.5 (default)" in r.stdout
    table = r.stdout.split("class ", 1)[1]
    assert [ln.split() for ln in table.splitlines() if ln.startswith(("cat", "dog", "owl", "total"))] == [
        ["cat", "9", "18", "2", "20"], ["dog", "5", "9", "1", "10"], ["owl", "3", "6", "1", "7"],
        ["total", "(images)", "17", "33", "4", "37"]]
    assert f"--dataset custom --data-path {folders} --list-dir {out}" in r.stdout


def test_folder_per_class_and_excluded_train(folders, tmp_path):
    out = tmp_path / "ex"
    ok(run("--images", folders, "--out", out, "--query-per-class", 2, "--train-per-class", 3,
           "--database-excludes-train"))
    assert per_class(out) == {"test": {"cat": 2, "dog": 2, "owl": 2}, "train": {"cat": 3, "dog": 3, "owl": 3},
                              "database": {"cat": 15, "dog": 5, "owl": 2}}
    ls = lists(out)
    test, db, train = (set(ls[n].paths) for n in ("test", "database", "train"))
    assert not test & db and not test & train and not train & db and len(test | db | train) == 37

    out2 = tmp_path / "in"
    ok(run("--images", folders, "--out", out2, "--query-per-class", 2, "--train-per-class", 3))
    c = per_class(out2)
    assert c["database"] == {"cat": 18, "dog": 8, "owl": 5} and c["train"] == {"cat": 3, "dog": 3, "owl": 3}
    ls2 = lists(out2)
    assert set(ls2["train"].paths) <= set(ls2["database"].paths)
    assert ls2["test"].paths == ls["test"].paths  # same seed: the same queries in both protocols


def test_fraction_flags(folders, tmp_path):
    out = tmp_path / "f"
    r = ok(run("--images", folders, "--out", out, "--query-fraction", 0.25, "--train-fraction", 1))
    c = per_class(out)
    assert c["test"] == {"cat": 5, "dog": 3, "owl": 2}  # round(0.25 n): 5, 2.5 -> 3, 1.75 -> 2
    assert c["train"] == c["database"] == {"cat": 15, "dog": 7, "owl": 5}
    assert "--query-fraction 0.25 and --train-fraction 1.0;" in r.stdout


def test_deterministic_and_seeded(folders, tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    ok(run("--images", folders, "--out", a, "--seed", 3))
    ok(run("--images", folders, "--out", b, "--seed", 3, cwd=tmp_path))  # another cwd, another process
    assert digests(a) == digests(b)
    ok(run("--images", folders, "--out", c, "--seed", 4))
    assert digests(c)["test.txt"] != digests(a)["test.txt"]
    assert digests(c)["classes.txt"] == digests(a)["classes.txt"]
    assert per_class(c) == per_class(a)  # the counts do not depend on the seed


def test_rerun_is_noop_and_force(folders, tmp_path):
    out = tmp_path / "l"
    ok(run("--images", folders, "--out", out))
    before = {n: os.stat(out / n).st_mtime_ns for n in OUTPUTS}
    r = ok(run("--images", folders, "--out", out))
    assert "unchanged" in r.stdout
    assert {n: os.stat(out / n).st_mtime_ns for n in OUTPUTS} == before
    old = digests(out)
    err = one_line_error(run("--images", folders, "--out", out, "--seed", 1), str(out), "--force", "test.txt")
    assert "classes.txt" not in err  # it is the same
    assert digests(out) == old  # nothing was touched
    r = ok(run("--images", folders, "--out", out, "--seed", 1, "--force"))
    assert "overwrote" in r.stdout and digests(out)["test.txt"] != old["test.txt"]
    ok(run("--images", folders, "--out", out, "--seed", 1))  # now identical again: no --force needed
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")]


def test_out_inside_images_is_skipped(tmp_path):
    base = make_folders(tmp_path / "p", {"a": 3, "b": 3}, extras=False)
    out = os.path.join(base, "lists")
    ok(run("--images", base, "--out", out, "--query-per-class", 1, "--train-per-class", 1))
    r = ok(run("--images", base, "--out", out, "--query-per-class", 1, "--train-per-class", 1))
    assert "unchanged" in r.stdout and "2 class folders" in r.stdout and classes_of(out) == ["a", "b"]


# ---------------------------------------------------------------------------------- CSV, multi-label

def make_csv(base, rows, header="path,labels", name="labels.csv", images=True):
    os.makedirs(base, exist_ok=True)
    if images:
        for i, (path, _) in enumerate(rows):
            save_image(os.path.join(base, path), 1000 + i)
    text = header + "\n" + "".join(f"{p},{t}\n" for p, t in rows)
    with open(os.path.join(base, name), "w", encoding="utf-8") as f:
        f.write(text)
    return os.path.join(base, name)


def multi_rows():
    rows = [(f"img/a{i:02d}.jpg", "apple") for i in range(10)]
    rows += [(f"img/b{i:02d}.png", "banana") for i in range(10)]
    rows += [(f"img/ab{i:02d}.jpg", "banana|apple") for i in range(5)]
    rows += [(f"img/r{i}.jpg", "cherry|apple") for i in range(4)]  # cherry: rare, always with apple
    return rows


def test_csv_multilabel_round_trip_and_quotas(tmp_path):
    rows = multi_rows()
    csv_file = make_csv(str(tmp_path / "data"), rows)
    out = tmp_path / "l"
    r = ok(run("--csv", csv_file, "--out", out, "--query-per-class", 1, "--train-per-class", 2))
    assert classes_of(out) == ["apple", "banana", "cherry"]
    tags = dict(rows)
    ls = lists(out)
    for lst in ls.values():
        for path, row in zip(lst.paths, lst.labels):  # labels are exactly the row's tags
            assert {classes_of(out)[j] for j in np.flatnonzero(row)} == set(tags[path].split("|"))
    test, db, train = (set(ls[n].paths) for n in ("test", "database", "train"))
    assert not test & db and train <= db and test | db == set(tags)
    # soft quotas: each class gets exactly its quota here (images whose other labels are full are avoided)
    c = per_class(out)
    assert c["test"] == {"apple": 1, "banana": 1, "cherry": 1}
    assert c["train"] == {"apple": 2, "banana": 2, "cherry": 2}
    assert c["database"] == {"apple": 18, "banana": 14, "cherry": 3}
    assert "multi-label" in r.stdout and "greedy per-label quotas" in r.stdout


def test_csv_options_root_and_fractions(tmp_path):
    images = tmp_path / "pics"
    rows = [(f"x{i}.jpg", "red" if i % 2 else "blue;green") for i in range(12)]
    for i, (p, _) in enumerate(rows):
        save_image(str(images / p), i)
    csv_file = tmp_path / "meta" / "table.tsv"
    csv_file.parent.mkdir()
    csv_file.write_text("id\tfile\ttags\n" + "".join(f"{i}\t{p}\t{t}\n" for i, (p, t) in enumerate(rows)))
    out = tmp_path / "l"
    ok(run("--csv", csv_file, "--root", images, "--delimiter", "tab", "--path-column", "file",
           "--label-column", "tags", "--label-separator", ";", "--out", out, "--query-fraction", 0.2))
    assert classes_of(out) == ["blue", "green", "red"]
    c = per_class(out)
    assert c["test"] == {"blue": 1, "green": 1, "red": 1}  # round(0.2 × 6) = 1 each
    assert c["train"] == {"blue": 3, "green": 3, "red": 3}  # round(0.5 × 5) = 3
    ls = lists(out)
    assert set(ls["test"].paths) | set(ls["database"].paths) == {p for p, _ in rows}  # relative to --root


def test_csv_paths_normalised_and_absolute_inside_root(tmp_path):
    base = tmp_path / "d"
    rows = [(f"./s/{i}.jpg", "k") for i in range(3)] + [(f"s/{i}.jpg", "m") for i in range(3, 6)]
    csv_file = make_csv(str(base), rows)
    with open(csv_file, "a") as f:  # an absolute path inside --root is made relative
        save_image(str(base / "s" / "9.jpg"), 9)
        f.write(f"{base / 's' / '9.jpg'},m\n")
    out = tmp_path / "l"
    ok(run("--csv", csv_file, "--out", out, "--query-per-class", 1, "--train-per-class", 1))
    paths = set().union(*(lst.paths for lst in lists(out).values()))
    assert paths == {"s/0.jpg", "s/1.jpg", "s/2.jpg", "s/3.jpg", "s/4.jpg", "s/5.jpg", "s/9.jpg"}


# ------------------------------------------------------------------------------------- bad input

def test_empty_and_no_images(tmp_path):
    (tmp_path / "empty").mkdir()
    one_line_error(run("--images", tmp_path / "empty", "--out", tmp_path / "l"), "no class folders", "empty")
    (tmp_path / "docs" / "a").mkdir(parents=True)
    (tmp_path / "docs" / "a" / "x.txt").write_text("x")
    one_line_error(run("--images", tmp_path / "docs", "--out", tmp_path / "l"), "no images found",
                   "ignored 1 non-image file")
    one_line_error(run("--images", tmp_path / "nowhere", "--out", tmp_path / "l"), "nowhere", "not found")
    csv_file = tmp_path / "h.csv"
    csv_file.write_text("path,labels\n\n")
    one_line_error(run("--csv", csv_file, "--out", tmp_path / "l"), "h.csv", "no rows")
    (tmp_path / "e.csv").write_text("")
    one_line_error(run("--csv", tmp_path / "e.csv", "--out", tmp_path / "l"), "e.csv", "empty")
    assert not (tmp_path / "l").exists()


def test_class_too_small(tmp_path, folders):
    one_line_error(run("--images", folders, "--out", tmp_path / "l", "--query-per-class", 5, "--train-per-class", 3),
                   "class 'owl' has 7 images", "--query-per-class 5 and --train-per-class 3", "at least 8",
                   "--drop-small-classes")
    one_line_error(run("--images", folders, "--out", tmp_path / "l", "--query-per-class", 5, "--train-per-class", 2,
                       "--database-excludes-train"), "class 'owl' has 7 images", "at least 8")
    r = ok(run("--images", folders, "--out", tmp_path / "l", "--query-per-class", 5, "--train-per-class", 3,
               "--drop-small-classes"))
    assert "left out 1 class" in r.stdout and "owl (7)" in r.stdout
    assert classes_of(tmp_path / "l") == ["cat", "dog"]
    assert per_class(tmp_path / "l")["test"] == {"cat": 5, "dog": 5}
    assert not any(p.startswith("owl/") for lst in lists(tmp_path / "l").values() for p in lst.paths)


def test_tag_unseen_in_training(tmp_path):
    rows = [(f"i{i}.jpg", "common") for i in range(10)] + [("once.jpg", "common|unicorn")]
    csv_file = make_csv(str(tmp_path / "d"), rows)
    one_line_error(run("--csv", csv_file, "--out", tmp_path / "l"), "tag 'unicorn' has 1 image", "at least 2")
    r = ok(run("--csv", csv_file, "--out", tmp_path / "l", "--drop-small-classes"))
    assert "unicorn (1)" in r.stdout and "0 images left without a tag" in r.stdout
    assert classes_of(tmp_path / "l") == ["common"]
    assert sum(len(lists(tmp_path / "l")[n]) for n in ("test", "database")) == 11  # once.jpg kept as 'common'


def test_bad_images_error_and_skip(tmp_path):
    base = make_folders(tmp_path / "p", {"a": 6, "b": 6}, extras=False)
    with open(os.path.join(base, "a", "broken.jpg"), "wb") as f:
        f.write(b"this is not a jpeg")
    good = os.path.join(tmp_path, "big.jpg")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(good, quality=95)
    data = open(good, "rb").read()
    with open(os.path.join(base, "b", "truncated.jpg"), "wb") as f:
        f.write(data[:len(data) // 2])
    err = one_line_error(run("--images", base, "--out", tmp_path / "l"), "broken.jpg", "not a readable image",
                         "--skip-bad-images", "2 such files")
    assert os.path.join(base, "a") in err
    r = ok(run("--images", base, "--out", tmp_path / "l", "--skip-bad-images"))
    assert "skipped 2 bad images" in r.stdout and "broken.jpg" in r.stdout and "truncated.jpg" in r.stdout
    c = per_class(tmp_path / "l")
    assert {k: c["test"][k] + c["database"][k] for k in "ab"} == {"a": 6, "b": 6}


def test_check_image_direct(tmp_path):
    save_image(str(tmp_path / "fine.png"), 0)
    assert check_image(str(tmp_path / "fine.png")) is None
    (tmp_path / "x.gif").write_bytes(b"GIF89a garbage")
    assert check_image(str(tmp_path / "x.gif")).startswith("not a readable image")
    assert check_image(str(tmp_path / "missing.jpg")) == "file not found"


def test_whitespace_paths(tmp_path):
    base = make_folders(tmp_path / "p", {"a": 4, "b": 4}, extras=False)
    save_image(os.path.join(base, "a", "my photo.jpg"), 77)
    one_line_error(run("--images", base, "--out", tmp_path / "l"), "my photo.jpg", "whitespace", "--skip-bad-images")
    r = ok(run("--images", base, "--out", tmp_path / "l", "--skip-bad-images"))
    assert "skipped 1 bad image" in r.stdout and "my photo.jpg" in r.stdout
    assert sum(len(lists(tmp_path / "l")[n]) for n in ("test", "database")) == 8
    # CSV: the message names the CSV line
    csv_file = make_csv(str(tmp_path / "c"), [("x 1.jpg", "k"), ("y.jpg", "k"), ("z.jpg", "k")])
    one_line_error(run("--csv", csv_file, "--out", tmp_path / "l2"), f"{csv_file}:2", "x 1.jpg", "whitespace")


def test_csv_errors(tmp_path):
    base = str(tmp_path / "d")
    rows = [(f"i{i}.jpg", "k") for i in range(4)]
    csv_file = make_csv(base, rows + [("i1.jpg", "m")])
    one_line_error(run("--csv", csv_file, "--out", tmp_path / "l"), f"{csv_file}:6", "'i1.jpg'", "line 3")
    csv_file = make_csv(base, rows + [("./i2.jpg", "m")], name="dup2.csv", images=False)
    one_line_error(run("--csv", csv_file, "--out", tmp_path / "l"), "dup2.csv:6", "'i2.jpg'", "line 4")
    csv_file = make_csv(base, rows[:2] + [("i3.jpg", "")] + rows[3:], name="nolab.csv", images=False)
    one_line_error(run("--csv", csv_file, "--out", tmp_path / "l"), "nolab.csv:4", "no labels", "i3.jpg")
    csv_file = make_csv(base, [(p, "| |") for p, _ in rows], name="seps.csv", images=False)
    one_line_error(run("--csv", csv_file, "--out", tmp_path / "l"), "seps.csv:2", "no labels")
    csv_file = make_csv(base, rows, header="file,labels", name="cols.csv", images=False)
    one_line_error(run("--csv", csv_file, "--out", tmp_path / "l"), "no column 'path'", "--path-column",
                   "'file', 'labels'")
    csv_file = make_csv(base, rows, header="path;labels", name="semi.csv", images=False)
    one_line_error(run("--csv", csv_file, "--out", tmp_path / "l"), "no column 'path'", "--delimiter")
    csv_file = make_csv(base, rows + [("gone.jpg", "k")], name="missing.csv", images=False)
    one_line_error(run("--csv", csv_file, "--out", tmp_path / "l"), "missing.csv:6",
                   "'gone.jpg' not found under --root")
    r = ok(run("--csv", csv_file, "--out", tmp_path / "l", "--skip-bad-images"))
    assert "skipped 1 bad image" in r.stdout and "gone.jpg" in r.stdout
    csv_file = make_csv(base, rows + [("../outside.jpg", "k")], name="escape.csv", images=False)
    one_line_error(run("--csv", csv_file, "--out", tmp_path / "l2"), "escape.csv:6", "outside --root")
    one_line_error(run("--csv", tmp_path / "none.csv", "--out", tmp_path / "l2"), "none.csv", "not found")
    one_line_error(run("--csv", os.path.join(base, "labels.csv"), "--root", tmp_path / "nodir"), "--root", "nodir")


def test_read_csv_direct(tmp_path):
    csv_file = make_csv(str(tmp_path), [("b.jpg", "z|y|y"), ("a.jpg", " x ")], images=False)
    root, items = sources.read_csv(csv_file)
    assert root == str(tmp_path)
    assert [(it.path, it.tags, it.where) for it in items] == [("a.jpg", ("x",), f"{csv_file}:3"),
                                                               ("b.jpg", ("y", "z"), f"{csv_file}:2")]
    with pytest.raises(UserError, match="no column 'tags'.*'path', 'labels'"):
        sources.read_csv(csv_file, label_column="tags")
    with pytest.raises(UserError, match="one character"):
        sources.read_csv(csv_file, delimiter=";;")


@pytest.mark.parametrize("args,needles", [
    (("--images", "A", "--csv", "B"), ("--images and --csv are mutually exclusive",)),
    ((), ("--images DIR", "--csv FILE")),
    (("--images", "A", "--query-per-class", 2, "--query-fraction", 0.1), ("--query-per-class and --query-fraction",)),
    (("--images", "A", "--train-per-class", 2, "--train-fraction", 0.1), ("--train-per-class and --train-fraction",)),
    (("--images", "A", "--root", "B"), ("--root", "--csv only")),
    (("--images", "A", "--delimiter", ";", "--label-column", "t"), ("--delimiter, --label-column", "--csv only")),
    (("--images", "A", "--query-fraction", 1), ("--query-fraction", "got 1.0")),
    (("--images", "A", "--train-fraction", 0), ("--train-fraction", "got 0.0")),
    (("--images", "A", "--train-fraction", 1, "--database-excludes-train"), ("--train-fraction", "below 1")),
    (("--images", "A", "--query-per-class", 0), ("--query-per-class must be at least 1",)),
    (("--images", "A", "--seed", -1), ("--seed",)),
])
def test_flag_errors(tmp_path, args, needles):
    one_line_error(run(*args, "--out", tmp_path / "l"), *needles)


def test_out_is_a_file(folders, tmp_path):
    (tmp_path / "f").write_text("x")
    one_line_error(run("--images", folders, "--out", tmp_path / "f"), "--out", "not a directory")


# ------------------------------------------------------------------------------- functions directly

def test_split_direct_single_and_exact():
    labels = np.eye(3, dtype=np.uint8)[[0] * 30 + [1] * 12 + [2] * 5]
    plan = sp.Plan(query_per_class=2, train_fraction=0.5)
    test, train, db = sp.split(labels, plan, seed=5)
    assert labels[test].sum(0).tolist() == [2, 2, 2]
    assert labels[train].sum(0).tolist() == [14, 5, 2]  # round(0.5 × 28), round(0.5 × 10), round(0.5 × 3)
    assert labels[db].sum(0).tolist() == [28, 10, 3]
    assert set(train) <= set(db) and not set(test) & set(db)
    again = sp.split(labels, plan, seed=5)
    assert all((a == b).all() for a, b in zip(again, (test, train, db)))
    other = sp.split(labels, plan, seed=6)
    assert not (other[0] == test).all()
    with pytest.raises(UserError, match=r"class 'c' has 5 images.*at least 7"):
        sp.split(labels, sp.Plan(query_per_class=3, train_per_class=3, excludes_train=True), 0, ["a", "b", "c"])


def test_split_direct_multilabel_caps():
    # 'rare' (3 images) always co-occurs with 'big'; 'big' must not take rare's last database image as a query
    rows = [[1, 0]] * 20 + [[1, 1]] * 3
    labels = np.asarray(rows, np.uint8)
    for seed in range(10):
        test, train, db = sp.split(labels, sp.Plan(query_fraction=0.3, train_per_class=1), seed, ["big", "rare"])
        assert labels[test, 1].sum() == 1 and labels[db, 1].sum() == 2 and labels[train, 1].sum() == 1
        assert labels[test, 0].sum() == 7  # round(0.3 × 23)


def test_plan_minimums():
    assert sp.Plan(query_fraction=0.1, train_fraction=0.5).min_images() == 2
    assert sp.Plan(query_fraction=0.1, train_fraction=0.5, excludes_train=True).min_images() == 3
    assert sp.Plan(query_per_class=4, train_per_class=6).min_images() == 10
    assert sp.Plan(query_per_class=4, train_per_class=6, excludes_train=True).min_images() == 11


def test_build_direct_returns_summary(folders, tmp_path):
    s = build(str(tmp_path / "l"), images=folders, query_per_class=1, train_per_class=1)
    assert s["counts"] == {"train": 3, "database": 34, "test": 3} and s["status"] == "wrote"
    assert s["ignored"]["non_image"] == 2 and s["classes"] == ["cat", "dog", "owl"] and not s["multi_label"]
    assert build(str(tmp_path / "l"), images=folders, query_per_class=1, train_per_class=1)["status"] == "unchanged"
    with pytest.raises(UserError, match="--force"):
        build(str(tmp_path / "l"), images=folders, query_per_class=2, train_per_class=1)


def test_custom_preset_reads_the_lists(folders, tmp_path):
    """What `--dataset custom` does with them: width from the first list, the same in all three."""
    out = tmp_path / "l"
    ok(run("--images", folders, "--out", out))
    width = None
    for name in SPLITS:
        lst = read_list(os.path.join(out, f"{name}.txt"), width)
        width = lst.num_labels
        assert all(os.path.isfile(os.path.join(folders, p)) for p in lst.paths)
    assert width == len(classes_of(out)) == 3


def test_does_not_import_paddle():
    code = (f"import sys, runpy; sys.argv = ['build_lists.py', '--help']\n"
            f"try:\n    runpy.run_path({SCRIPT!r}, run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "assert 'paddle' not in sys.modules, 'paddle imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr


# ------------------------------------------------------------------------- open set and split checks
def test_unseen_classes_named_and_counted(folders, tmp_path):
    """--unseen-classes NAME: the class keeps its queries and database images, loses its training images;
    N: a seeded choice (the same for the same --seed). The run's unseen set is what train.txt lacks."""
    base = tmp_path / "closed"
    ok(run("--images", folders, "--out", base))
    out = tmp_path / "open"
    r = ok(run("--images", folders, "--out", out, "--unseen-classes", "dog"))
    closed, opened = per_class(base), per_class(out)
    assert opened["train"] == {"cat": 9, "dog": 0, "owl": 3}
    assert opened["database"] == closed["database"] and opened["test"] == closed["test"]
    assert lists(out)["train"].paths == [p for p in lists(base)["train"].paths if not p.startswith("dog/")]
    assert "open set: 1 class kept out of train.txt (dog): 5 training images carrying them removed" in r.stdout
    assert "checked: queries ∩ database = ∅ (4 queries, 33 database), train ⊆ database (12 of 33)" in r.stdout
    # the engine's rule finds exactly that class from train.txt
    from utils.report.evaluation import unseen_classes_from_train

    ls = lists(out)
    assert unseen_classes_from_train(ls["train"].labels, ls["test"].labels, ls["database"].labels) == [1]
    a = sp.choose_unseen("2", ["a", "b", "c", "d", "e"], seed=3)
    assert len(a) == 2 and a == sp.choose_unseen(2, ["a", "b", "c", "d", "e"], seed=3) == sorted(a)
    assert {tuple(sp.choose_unseen("2", list("abcde"), seed=s)) for s in range(20)} != {tuple(a)}  # seeded


def test_unseen_classes_excluded_train_goes_to_database(folders, tmp_path):
    out = tmp_path / "ex"
    r = ok(run("--images", folders, "--out", out, "--query-per-class", 2, "--train-per-class", 3,
               "--database-excludes-train", "--unseen-classes", "owl,cat"))
    c = per_class(out)
    assert c["train"] == {"cat": 0, "dog": 3, "owl": 0}
    assert c["database"] == {"cat": 18, "dog": 5, "owl": 5} and c["test"] == {"cat": 2, "dog": 2, "owl": 2}
    assert "train ∩ database = ∅ (3 train, 28 database)" in r.stdout and "given to the database" in r.stdout


def test_unseen_classes_errors(folders, tmp_path):
    one_line_error(run("--images", folders, "--out", tmp_path / "a", "--unseen-classes", "3"), "between 1 and 2")
    one_line_error(run("--images", folders, "--out", tmp_path / "b", "--unseen-classes", "cow"), "'cow'")
    one_line_error(run("--images", folders, "--out", tmp_path / "c", "--unseen-classes", "cat,dog,owl"),
                   "at least one must stay seen")
    # multi-label: cherry always comes with apple, so keeping apple out leaves cherry without training
    csv_file = make_csv(str(tmp_path / "data"), multi_rows())
    one_line_error(run("--csv", csv_file, "--out", tmp_path / "d", "--query-per-class", 1, "--train-per-class", 2,
                       "--unseen-classes", "apple"), "seen tag 'cherry' has no training image left")


def test_check_split_direct():
    from utils.data.split_check import check_split

    assert check_split(["a"], ["a", "b"], ["c"]) == ("checked: queries ∩ database = ∅ (1 queries, 2 database), "
                                                     "train ⊆ database (1 of 2), train ∩ queries = ∅")
    with pytest.raises(UserError, match="share 1 image.*e.g. b"):
        check_split(["a"], ["a", "b"], ["b"])
    with pytest.raises(UserError, match="1 training image.*not in database.txt.*e.g. z"):
        check_split(["z"], ["a", "b"], ["c"])
    with pytest.raises(UserError, match="also in database.txt"):
        check_split(["a"], ["a", "b"], ["c"], train_in_database=False)
    with pytest.raises(UserError, match="test.txt would list 1 image"):
        check_split(["a"], ["a", "b"], ["c", "c"])
    assert "train ∩ database = ∅ (1 train, 2 database)" in check_split(["x"], ["a", "b"], ["c"], False)


# ------------------------------------------------------------------- pinned splits (computed before the move)
# The values below were computed with the split code as it stood in scripts/build_lists.py, before it moved to
# utils/data/split.py; they pin the split bit for bit (numpy's default_rng is stable across platforms).
def _pinned(got, want):
    assert [a.tolist() for a in got] == want
    assert all(a.dtype.kind == "i" for a in got)


def test_split_pinned_single_label():
    labels = np.eye(3, dtype=np.uint8)[[0] * 30 + [1] * 12 + [2] * 5]
    _pinned(sp.split(labels, sp.Plan(query_per_class=2, train_fraction=0.5), seed=5),
            [[0, 10, 32, 36, 43, 44],
             [3, 4, 5, 7, 9, 11, 12, 19, 20, 23, 24, 25, 26, 29, 33, 37, 39, 40, 41, 42, 45],
             [1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29,
              30, 31, 33, 34, 35, 37, 38, 39, 40, 41, 42, 45, 46]])
    _pinned(sp.split(labels, sp.Plan(query_per_class=1, train_per_class=3, excludes_train=True), seed=5),
            [[10, 36, 44],
             [0, 3, 19, 32, 40, 41, 42, 43, 45],
             [1, 2, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 18, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31,
              33, 34, 35, 37, 38, 39, 46]])


def _multi_labels():
    rng = np.random.default_rng(0)
    labels = (rng.random((40, 4)) < [0.6, 0.3, 0.2, 0.1]).astype(np.uint8)
    labels[labels.sum(1) == 0, 0] = 1
    return labels


def test_split_pinned_multilabel():
    labels = _multi_labels()
    assert np.packbits(labels.ravel()).tolist() == [120, 148, 140, 136, 136, 136, 132, 158, 172, 136, 136, 136, 140,
                                                    137, 69, 140, 200, 136, 170, 133]  # the same input
    assert labels.sum(0).tolist() == [34, 12, 5, 6] and (labels.sum(1) > 1).sum() == 15
    fractions = sp.Plan(query_fraction=0.1, train_fraction=0.5)
    counts = sp.Plan(query_per_class=1, train_per_class=2, excludes_train=True)
    everything = set(range(40))
    # (test, train) pinned; the database is what the protocol leaves: all but the queries (train ⊆ database),
    # or with excludes_train all but the queries and the training images
    for plan, seed, test, train in [
            (fractions, 0, [0, 6, 9, 19], [2, 5, 8, 10, 14, 15, 18, 22, 23, 28, 29, 30, 31, 32, 34, 35, 36, 38]),
            (fractions, 7, [0, 1, 26, 35], [2, 5, 6, 9, 10, 14, 15, 18, 19, 20, 24, 25, 28, 30, 31, 34, 36, 39]),
            (counts, 0, [0, 19], [2, 15, 29, 36]),
            (counts, 7, [0, 1], [14, 15, 36, 39])]:
        database = sorted(everything - set(test) - (set(train) if plan.excludes_train else set()))
        _pinned(sp.split(labels, plan, seed=seed), [test, train, database])


def test_split_pinned_larger_multilabel():
    labels = (np.random.default_rng(1).random((2000, 12)) < 0.15).astype(np.uint8)
    labels[labels.sum(1) == 0, 3] = 1
    h = hashlib.sha256()
    for a in sp.split(labels, sp.Plan(query_fraction=0.1, train_fraction=0.5), seed=11):
        h.update(np.asarray(a, np.int64).tobytes())
    assert h.hexdigest() == "121b26dd32fd40886f7d9ee2207fa83a0b76d9bac825bbad796da3e85c86ee1b"


def test_choose_unseen_pinned():
    assert sp.choose_unseen("2", list("abcde"), seed=3) == [1, 3]
    assert sp.choose_unseen("3", list("abcdefgh"), seed=0) == [3, 6, 7]


def test_cli_lists_pinned(folders, tmp_path):
    """The command line end to end: the files' bytes (sha256) for a folder tree and a multi-label CSV."""
    ok(run("--images", folders, "--out", tmp_path / "f", "--seed", 3))
    assert digests(tmp_path / "f") == {
        "train.txt": "5a062d72cb55c8d3433428bfe87dd09fedc0e3d7890668717a99ea7409ec87a1",
        "database.txt": "5284c666822a352851d51ae326cb12456042d839307b236a8dec9c7072608003",
        "test.txt": "cc0dbd262621e60b3579674f5f0afe6f2719733c061106044b597b556345d2e1",
        "classes.txt": "85e8708ce3a016a01b3b949effcd63cc723351a906acd6f236427d88a4afebb3"}
    csv_file = make_csv(str(tmp_path / "data"), multi_rows())
    ok(run("--csv", csv_file, "--out", tmp_path / "m", "--query-per-class", 1, "--train-per-class", 2, "--seed", 2))
    assert digests(tmp_path / "m") == {
        "train.txt": "6a1b579efd88c460ceae64d2f4bc9868dce1aa364429811d8d95cec078de4bee",
        "database.txt": "e75629e825ec9a70c9f978ef6e2de8a44c84d861b4c4b5fb53118bec59610d72",
        "test.txt": "d882a16eac1488706aecbb8dad184ed9f7cf0b6ceb09a02398efdd0a7366dcf4",
        "classes.txt": "6883ada0490e1bd845b6032e95119d522212f98b840eef466ebb09f4a9eb7a03"}
