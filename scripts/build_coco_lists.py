"""Build the COCO hashing lists (HashNet / DeepHash-pytorch protocol) from COCO 2014 annotations you have.

    python scripts/build_coco_lists.py --annotations datasets/coco/annotations --image-root datasets/coco
    python scripts/build_coco_lists.py --train-json .../instances_train2014.json \\
        --val-json .../instances_val2014.json --image-root datasets/coco --check-images

Nothing is downloaded. Input: `instances_train2014.json` and `instances_val2014.json` (from
annotations_trainval2014.zip). The 80 categories become label columns in increasing category-id order;
train2014 and val2014 images are pooled and images without any instance annotation are pruned (122,218
labelled images remain). A seeded random split then gives 5,000 queries (test.txt), a database of all the
other labelled images (database.txt, 117,218) and 10,000 training images drawn from the database
(train.txt). Lists are written to --out (default data/coco) with paths relative to --image-root, e.g.
`train2014/COCO_train2014_000000000009.jpg`; train with `--dataset coco --data-path <image-root>`.
Each list is sorted by path. `--check-images` verifies that every listed image exists under --image-root.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils.cli import add_flag  # noqa: E402
from utils.errors import UserError, cli_entry, one_line  # noqa: E402
from utils.data.lists import write_list  # noqa: E402
from utils.data.split_check import check_split  # noqa: E402

SPLITS = (("train2014", "instances_train2014.json"), ("val2014", "instances_val2014.json"))


def load_instances(path):
    """Parse one COCO instances file: (categories {id: name}, images {id: file_name}, labelled {image_id: set})."""
    if not os.path.isfile(path):
        raise UserError(f"{path}: COCO annotation file not found; pass --annotations DIR (holding "
                        "instances_train2014.json and instances_val2014.json) or --train-json/--val-json")
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{path}: not a readable JSON file ({type(exc).__name__}: {one_line(exc)}); "
                        "re-extract it from annotations_trainval2014.zip")
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list)
                                             for k in ("images", "annotations", "categories")):
        raise UserError(f"{path}: not a COCO instances file (needs 'images', 'annotations' and 'categories' "
                        "lists); use instances_*2014.json, not captions or person_keypoints")
    try:
        categories = {int(c["id"]): str(c.get("name", c["id"])) for c in data["categories"]}
        images = {int(im["id"]): str(im["file_name"]) for im in data["images"]}
        labelled = {}
        for ann in data["annotations"]:
            labelled.setdefault(int(ann["image_id"]), set()).add(int(ann["category_id"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path}: malformed COCO entry ({type(exc).__name__}: {one_line(exc)}); the file looks corrupt")
    unknown = {c for cats in labelled.values() for c in cats} - set(categories)
    if unknown:
        raise UserError(f"{path}: annotations use category ids {sorted(unknown)[:5]} missing from 'categories'")
    missing = set(labelled) - set(images)
    if missing:
        raise UserError(f"{path}: {len(missing)} annotations refer to image ids not in 'images' "
                        f"(first {min(missing)}); the file looks corrupt")
    return categories, images, labelled


def collect(json_files):
    """Pool the splits: (category ids sorted, paths, label matrix, number of images before pruning)."""
    categories, items, n_images = {}, [], 0
    for (folder, _), path in zip(SPLITS, json_files):
        cats, images, labelled = load_instances(path)
        for cid, name in cats.items():
            if categories.setdefault(cid, name) != name:
                raise UserError(f"{path}: category {cid} is '{name}' here but '{categories[cid]}' in the other file")
        n_images += len(images)
        for image_id, cids in labelled.items():
            items.append((f"{folder}/{images[image_id]}", cids))
    cat_ids = sorted(categories)
    column = {cid: j for j, cid in enumerate(cat_ids)}
    items.sort(key=lambda item: item[0])
    paths = [p for p, _ in items]
    if len(set(paths)) != len(paths):
        raise UserError("the two annotation files list the same image file twice; pass the train2014 and "
                        "val2014 files once each")
    labels = np.zeros((len(items), len(cat_ids)), np.uint8)
    for i, (_, cids) in enumerate(items):
        labels[i, [column[c] for c in cids]] = 1
    return cat_ids, categories, paths, labels, n_images


def split(n, n_query, n_train, seed):
    """Seeded split of n items: (query idx, database idx, train idx ⊂ database), each sorted."""
    if n_query < 1 or n_train < 1:
        raise UserError("--n-query and --n-train must be positive")
    if n_query >= n:
        raise UserError(f"--n-query {n_query} leaves no database: only {n} labelled images")
    if n_train > n - n_query:
        raise UserError(f"--n-train {n_train} is larger than the database ({n - n_query} images)")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    query, database = np.sort(perm[:n_query]), np.sort(perm[n_query:])
    train = np.sort(rng.choice(database, size=n_train, replace=False))
    return query, database, train


def check_images(image_root, paths):
    missing = [p for p in paths if not os.path.isfile(os.path.join(image_root, p))]
    if missing:
        raise UserError(f"--image-root {image_root}: {len(missing)} of {len(paths)} images not found (first "
                        f"'{missing[0]}'); it must contain train2014/ and val2014/")


def build(json_files, out, image_root=None, n_query=5000, n_train=10000, seed=0, verify_images=False):
    """Write out/{test,database,train}.txt; return a summary dict."""
    cat_ids, names, paths, labels, n_images = collect(json_files)
    query, database, train = split(len(paths), n_query, n_train, seed)
    if verify_images:
        check_images(image_root, paths)
    checked = check_split([paths[i] for i in train], [paths[i] for i in database], [paths[i] for i in query])
    for name, idx in (("test", query), ("database", database), ("train", train)):
        write_list(os.path.join(out, f"{name}.txt"), [paths[i] for i in idx], labels[idx])
    return {"images": n_images, "labelled": len(paths), "pruned": n_images - len(paths),
            "num_labels": len(cat_ids), "test": len(query), "database": len(database), "train": len(train),
            "category_ids": cat_ids, "category_names": [names[c] for c in cat_ids], "out": out, "checked": checked}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--annotations", help="folder with instances_train2014.json and instances_val2014.json "
                                         "(default <image-root>/annotations)")
    add_flag(p, "--train-json", help="instances_train2014.json")
    add_flag(p, "--val-json", help="instances_val2014.json")
    add_flag(p, "--image-root", "--data-path", dest="image_root", default="datasets/coco",
             help="folder holding train2014/ and val2014/; list paths are relative to it "
                  "(default datasets/coco)")
    add_flag(p, "--check-images", action="store_true",
             help="verify that every listed image exists under --image-root")
    p.add_argument("--out", default="data/coco", help="list folder (default data/coco)")
    add_flag(p, "--n-query", type=int, default=5000)
    add_flag(p, "--n-train", type=int, default=10000)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


@cli_entry
def main(argv=None):
    args = parse_args(argv)
    folder = args.annotations or os.path.join(args.image_root, "annotations")
    train_json = args.train_json or os.path.join(folder, SPLITS[0][1])
    val_json = args.val_json or os.path.join(folder, SPLITS[1][1])
    print(f"reading {train_json} and {val_json} ...", flush=True)
    s = build((train_json, val_json), args.out, args.image_root, args.n_query, args.n_train, args.seed,
              args.check_images)
    print(f"{s['images']} images, {s['pruned']} without labels pruned, {s['labelled']} labelled, "
          f"{s['num_labels']} label columns (category ids {s['category_ids'][0]}..{s['category_ids'][-1]})")
    print(f"wrote {args.out}: test.txt {s['test']} queries, database.txt {s['database']}, "
          f"train.txt {s['train']} (from the database), seed {args.seed}")
    print(s["checked"])
    if not args.check_images:
        print(f"paths are relative to {args.image_root} (not checked; pass --check-images to verify)")


if __name__ == "__main__":
    main()
