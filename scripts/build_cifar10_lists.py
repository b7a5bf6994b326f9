"""Extract CIFAR-10 to PNG files and write hashing lists (DeepHash-pytorch protocols) from the archive you have.

    python scripts/build_cifar10_lists.py --archive cifar-10-python.tar.gz
    python scripts/build_cifar10_lists.py --archive cifar-10-batches-py --protocol cifar10-1 --out data/cifar10-1

Nothing is downloaded. --archive is the official `cifar-10-python.tar.gz` or its extracted
`cifar-10-batches-py/` folder. The batches are Python pickles; they are read with the project's
allow-list unpickler (utils/safe_pickle.py: dicts, bytes, lists, numbers, numpy arrays), so a doctored
batch is refused with a one-line error instead of running code.

Images (the 50,000 training images of data_batch_1..5, then the 10,000 of test_batch: 60,000 pooled) are
written once to --data-path (default datasets/cifar10) as `images/<i>.png` (i = position in that pooled
order); lists go to --out (default data/cifar10):

  cifar10    per class --test-per-class 100 queries and --train-per-class 500 training images drawn at
             random from the pooled images; database = the rest (54,000; training images NOT included)
  cifar10-1  same test/train draw; database = everything but the queries (59,000; includes training)
  cifar10-2  test = the 10,000 official test images, train = the 50,000 official training images,
             database = the 50,000 training images (DeepHash-pytorch draws the same per-class counts,
             1,000 / 5,000, at random from the pooled images instead)

The per-class draw is seeded (--seed, default 0). Train with `--dataset cifar10 --data-path <data-path>
--list-dir <out>`.
"""
import argparse
import hashlib
import json
import os
import sys
import tarfile

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils.cli import add_flag  # noqa: E402
from utils.errors import UserError, cli_entry, one_line  # noqa: E402
from utils.fileio import write_json  # noqa: E402
from utils.data.lists import write_list  # noqa: E402
from utils.safe_pickle import BadPickle, RefusedGlobal, refusal  # noqa: E402
from utils.safe_pickle import load as safe_load  # noqa: E402
from utils.data.split_check import check_split  # noqa: E402

BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
FOLDER = "cifar-10-batches-py"
PROTOCOLS = ("cifar10", "cifar10-1", "cifar10-2")
NUM_CLASSES = 10
STAMP = "cifar10_images.json"


def _unpickle(f, where):
    try:
        batch = safe_load(f, encoding="bytes")  # the allow-list unpickler: nothing in the file runs
    except RefusedGlobal as exc:
        raise UserError(f"{where}: {refusal(exc)}; a CIFAR-10 batch holds only bytes, lists and arrays: use the "
                        "official cifar-10-python.tar.gz")
    except BadPickle as exc:
        raise UserError(f"{where}: not a CIFAR-10 python batch ({one_line(exc)}); use the official "
                        "cifar-10-python.tar.gz")
    try:
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except Exception as exc:  # noqa: BLE001 - not a dict with data and labels: a foreign file
        raise UserError(f"{where}: not a CIFAR-10 python batch ({type(exc).__name__}: {one_line(exc)}); "
                        "use the official cifar-10-python.tar.gz")
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise UserError(f"{where}: unexpected batch shape {data.shape} with {len(labels)} labels; "
                        "expected N×3072 pixels and N labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise UserError(f"{where}: labels outside 0..9")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def read_archive(archive):
    """Return (images N×32×32×3 uint8, labels N, n_official_train) pooled as data_batch_1..5 + test_batch."""
    parts = []
    if os.path.isdir(archive):
        folder = archive if os.path.isfile(os.path.join(archive, BATCHES[0])) else os.path.join(archive, FOLDER)
        for name in BATCHES:
            path = os.path.join(folder, name)
            if not os.path.isfile(path):
                where = path if folder == archive else f"{archive} and in {folder}"
                raise UserError(f"{archive}: batch '{name}' missing (looked in {where}); extract the whole "
                                "cifar-10-python.tar.gz or pass the .tar.gz itself")
            with open(path, "rb") as f:
                parts.append(_unpickle(f, path))
    elif os.path.isfile(archive):
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = {os.path.basename(m.name): m for m in tar.getmembers() if m.isfile()}
                for name in BATCHES:
                    if name not in members:
                        raise UserError(f"{archive}: batch '{name}' missing from the archive; "
                                        "use the official cifar-10-python.tar.gz")
                    parts.append(_unpickle(tar.extractfile(members[name]), f"{archive}:{members[name].name}"))
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise UserError(f"{archive}: cannot read the archive ({type(exc).__name__}: {one_line(exc)}); "
                            "is it a complete cifar-10-python.tar.gz?")
    else:
        raise UserError(f"--archive {archive}: not found; pass cifar-10-python.tar.gz or the extracted "
                        f"{FOLDER}/ folder")
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    n_train = sum(len(p[1]) for p in parts[:5])
    return images, labels, n_train


def write_images(images, data_path):
    """Write images/<i>.png under data_path once; a stamp with a pixel checksum makes re-runs skip it."""
    digest = hashlib.sha256(images.tobytes()).hexdigest()
    stamp_path = os.path.join(data_path, STAMP)
    folder = os.path.join(data_path, "images")
    try:
        with open(stamp_path, encoding="utf-8") as f:
            stamp = json.load(f)
        if stamp.get("count") == len(images) and stamp.get("sha256") == digest and \
                all(os.path.isfile(os.path.join(folder, f"{i}.png")) for i in range(len(images))):
            return False
    except (OSError, ValueError):
        pass
    os.makedirs(folder, exist_ok=True)
    if os.path.exists(stamp_path):
        os.remove(stamp_path)
    for i, img in enumerate(images):
        path = os.path.join(folder, f"{i}.png")
        tmp = f"{path}.{os.getpid()}.tmp"
        Image.fromarray(img, "RGB").save(tmp, format="PNG")
        os.replace(tmp, path)
    write_json(stamp_path, {"count": len(images), "sha256": digest, "source": "cifar-10-python"})
    return True


def split(labels, n_official_train, protocol, test_per_class, train_per_class, seed):
    """(test, train, database) index arrays, each sorted, following `protocol`."""
    n = len(labels)
    if protocol == "cifar10-2":
        train = np.arange(n_official_train)
        return np.arange(n_official_train, n), train, train.copy()
    if test_per_class < 1 or train_per_class < 1:
        raise UserError("--test-per-class and --train-per-class must be positive")
    rng = np.random.default_rng(seed)
    test, train, rest = [], [], []
    for c in range(NUM_CLASSES):
        idx = np.flatnonzero(labels == c)
        if len(idx) <= test_per_class + train_per_class:
            raise UserError(f"class {c} has {len(idx)} images, not more than --test-per-class {test_per_class} + "
                            f"--train-per-class {train_per_class}; the database would be empty")
        idx = idx[rng.permutation(len(idx))]
        test.append(idx[:test_per_class])
        train.append(idx[test_per_class:test_per_class + train_per_class])
        rest.append(idx[test_per_class + train_per_class:])
    test, train, rest = (np.sort(np.concatenate(x)) for x in (test, train, rest))
    database = rest if protocol == "cifar10" else np.sort(np.concatenate([train, rest]))
    return test, train, database


def build(archive, data_path, out, protocol="cifar10", test_per_class=100, train_per_class=500, seed=0):
    """Extract images (once) and write out/{train,database,test}.txt; return a summary dict."""
    if protocol not in PROTOCOLS:
        raise UserError(f"--protocol {protocol}: choose one of {', '.join(PROTOCOLS)}")
    images, labels, n_official_train = read_archive(archive)
    test, train, database = split(labels, n_official_train, protocol, test_per_class, train_per_class, seed)
    checked = check_split(train.tolist(), database.tolist(), test.tolist(), train_in_database=protocol != "cifar10")
    wrote = write_images(images, data_path)
    onehot = np.eye(NUM_CLASSES, dtype=np.uint8)[labels]
    for name, idx in (("train", train), ("database", database), ("test", test)):
        write_list(os.path.join(out, f"{name}.txt"), [f"images/{i}.png" for i in idx], onehot[idx])
    return {"protocol": protocol, "images": len(images), "images_written": wrote, "train": len(train),
            "database": len(database), "test": len(test), "data_path": data_path, "out": out, "checked": checked}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archive", required=True, help="cifar-10-python.tar.gz or the extracted cifar-10-batches-py/")
    add_flag(p, "--data-path", default="datasets/cifar10",
             help="where images/<i>.png are written (default datasets/cifar10)")
    p.add_argument("--out", default="data/cifar10", help="list folder (default data/cifar10)")
    p.add_argument("--protocol", choices=PROTOCOLS, default="cifar10")
    add_flag(p, "--test-per-class", type=int, default=None,
             help="queries per class (default 100; cifar10 and cifar10-1 only)")
    add_flag(p, "--train-per-class", type=int, default=None,
             help="training images per class (default 500; cifar10 and cifar10-1 only)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


@cli_entry
def main(argv=None):
    args = parse_args(argv)
    if args.protocol == "cifar10-2" and (args.test_per_class or args.train_per_class):
        raise UserError("--test-per-class/--train-per-class do not apply to cifar10-2 (the official split)")
    s = build(args.archive, args.data_path, args.out, args.protocol, args.test_per_class or 100,
              args.train_per_class or 500, args.seed)
    where = os.path.join(args.data_path, "images")
    print(f"{s['images']} images {'written to' if s['images_written'] else 'already in'} {where}")
    print(f"protocol {s['protocol']}: wrote {args.out}: train.txt {s['train']}, database.txt {s['database']}, "
          f"test.txt {s['test']} (seed {args.seed})")
    print(s["checked"])


if __name__ == "__main__":
    main()
