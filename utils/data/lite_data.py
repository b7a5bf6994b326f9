"""Synthetic "lite" image data sets with known labels, for tests, TIPC and the quick start.

`generate(kind, root, list_dir, ...)` draws small images whose content determines their labels:

* every class has a distinctive pattern — its own hue, a shape (disk, square, diamond, ring), and
  stripes with a class-specific orientation and frequency — drawn at a random position and scale on a
  noisy background with some grey clutter, with brightness and stripe-angle jitter;
* kind "single": one pattern per image, one-hot labels, classes assigned round-robin so every class
  appears in every split (as evenly as the counts allow);
* kind "multi": 1–3 patterns per image, each in its own quadrant, multi-hot labels (every image has at
  least one label; the first label is round-robin so every class appears).

Images go to `root/<split>/<name>.jpg` (JPEG, fixed encoder settings, so output is byte-identical for the
same arguments), lists to `list_dir/{train,database,test}.txt` in HashNet format with paths relative to
`root`. A stamp `list_dir/lite_data.json` records the arguments; it is written last, so a call whose
stamp matches and whose files all exist returns at once, and an interrupted run is redone. numpy + PIL
only; no Paddle import.
"""
import colorsys
import json
import os
import re

import numpy as np
from PIL import Image

from utils.errors import UserError
from utils.fileio import write_json
from utils.data.lists import LIST_NAMES, write_list

FORMAT_VERSION = 1  # bump when the drawing changes, so stale stamps regenerate
STAMP_NAME = "lite_data.json"
KINDS = ("single", "multi")
JPEG_QUALITY = 90
_SPLIT_CODE = {"train": 1, "database": 2, "test": 3}
_KIND_CODE = {"single": 1, "multi": 2}
_NAME_RE = re.compile(r"^(?:\d+|img)_\d{5,}\.jpg$")
_N_SHAPES = 4


def class_style(c, num_classes):
    """The visual signature of class `c`: (rgb in 0..1, shape id, stripe angle, stripe frequency)."""
    hue = (c / num_classes + 0.03) % 1.0
    sat = 0.9 if c % 2 == 0 else 0.65  # neighbouring hues also differ in saturation
    rgb = np.array(colorsys.hsv_to_rgb(hue, sat, 1.0), dtype=np.float32)
    shape = c % _N_SHAPES
    # spread orientations and frequencies so neighbouring classes (close hues) differ in both
    angle = np.pi * ((c * 3) % num_classes) / num_classes
    freq = 1.5 + (c % 3)  # stripe periods across the pattern's radius
    return rgb, shape, angle, freq


def _draw_pattern(img, yy, xx, cy, cx, r, c, num_classes, rng):
    """Draw class c's pattern centred at (cy, cx) with radius r onto float image img (H, W, 3)."""
    rgb, shape, angle, freq = class_style(c, num_classes)
    dy, dx = yy - cy, xx - cx
    if shape == 0:
        mask = dy * dy + dx * dx <= r * r
    elif shape == 1:
        mask = np.maximum(np.abs(dy), np.abs(dx)) <= 0.85 * r
    elif shape == 2:
        mask = np.abs(dy) + np.abs(dx) <= 1.15 * r
    else:
        d2 = dy * dy + dx * dx
        mask = (d2 <= r * r) & (d2 >= (0.45 * r) ** 2)
    # stripes: class-specific orientation and frequency, random phase
    angle = angle + rng.uniform(-0.12, 0.12)  # about ±7 degrees of jitter
    t = (dx * np.cos(angle) + dy * np.sin(angle)) / r
    stripes = np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi)) > 0
    # brightness jitter; dark stripes are a darker shade of the same colour
    bright = rng.uniform(0.75, 1.0)
    fg = rgb * bright
    dark = fg * 0.35
    colour = np.where(stripes[..., None], fg, dark)
    img[mask] = colour[mask]


def _draw_image(labels_idx, kind, num_classes, size, rng):
    """One image (uint8 H×W×3) with the patterns of the classes in labels_idx."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    # background: random grey level, a faint tint, pixel noise
    base = rng.uniform(0.25, 0.6)
    tint = rng.normal(0, 0.04, size=3)
    img = base + tint + rng.normal(0, 0.07, size=(size, size, 3))
    # clutter: a few low-saturation rectangles that carry no label information
    for _ in range(rng.integers(1, 4)):
        h, w = rng.integers(size // 10, size // 4, size=2)
        y0, x0 = rng.integers(0, size - h), rng.integers(0, size - w)
        img[y0:y0 + h, x0:x0 + w] = rng.uniform(0.1, 0.8) + rng.normal(0, 0.03, size=3)
    if kind == "single":
        c = labels_idx[0]
        r = size * rng.uniform(0.2, 0.34)
        cy, cx = rng.uniform(r, size - r, size=2)
        _draw_pattern(img, yy, xx, cy, cx, r, c, num_classes, rng)
    else:
        quadrants = rng.permutation(4)[:len(labels_idx)]
        half = size / 2
        for c, q in zip(labels_idx, quadrants):
            r = size * rng.uniform(0.13, 0.2)
            qy, qx = divmod(int(q), 2)
            cy = qy * half + half / 2 + rng.uniform(-0.06, 0.06) * size
            cx = qx * half + half / 2 + rng.uniform(-0.06, 0.06) * size
            _draw_pattern(img, yy, xx, cy, cx, r, c, num_classes, rng)
    img = img + rng.normal(0, 0.03, size=img.shape)  # noise over everything
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def _split_labels(kind, n, num_classes, rng):
    """Label rows (n × num_classes uint8) for one split."""
    labels = np.zeros((n, num_classes), np.uint8)
    first = np.arange(n) % num_classes  # round-robin: every class appears when n >= num_classes
    labels[np.arange(n), first] = 1
    if kind == "multi":
        k_max = min(3, num_classes)
        ks = rng.choice(np.arange(1, k_max + 1), size=n, p=_k_probs(k_max))
        for i in range(n):
            others = np.setdiff1d(np.arange(num_classes), [first[i]])
            labels[i, rng.choice(others, size=ks[i] - 1, replace=False)] = 1
    return labels


def _k_probs(k_max):
    p = np.array([0.4, 0.4, 0.2][:k_max])
    return p / p.sum()


def _check_args(kind, counts, num_classes, size):
    if kind not in KINDS:
        raise UserError(f"kind '{kind}' is not one of {', '.join(KINDS)}")
    for name, n in counts.items():
        if int(n) != n or n < 1:
            raise UserError(f"n_{name} must be a positive integer, got {n}")
    if int(num_classes) != num_classes or num_classes < 2:
        raise UserError(f"num_classes must be an integer >= 2, got {num_classes}")
    if int(size) != size or size < 16:
        raise UserError(f"size must be an integer >= 16 pixels, got {size}")


def _stamp_args(kind, root, counts, num_classes, size, seed):
    return {"format_version": FORMAT_VERSION, "kind": kind, "root": os.path.abspath(root),
            "n_train": int(counts["train"]), "n_database": int(counts["database"]),
            "n_test": int(counts["test"]), "num_classes": int(num_classes), "size": int(size),
            "seed": int(seed), "jpeg_quality": JPEG_QUALITY}


def _read_stamp(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _up_to_date(stamp_path, args, root, list_dir):
    stamp = _read_stamp(stamp_path)
    if stamp is None or stamp.get("args") != args:
        return False
    for name in LIST_NAMES:
        list_file = os.path.join(list_dir, f"{name}.txt")
        if not os.path.isfile(list_file):
            return False
        with open(list_file, encoding="utf-8") as f:
            rels = [line.split(maxsplit=1)[0] for line in f if line.strip()]
        if len(rels) != args[f"n_{name}"]:
            return False
        if not all(os.path.isfile(os.path.join(root, rel)) for rel in rels):
            return False
    return True


def _save_jpeg(array, path):
    tmp = f"{path}.{os.getpid()}.tmp"  # per process: two runs on one folder do not share temp files
    # fixed encoder settings -> byte-identical files for identical pixels
    Image.fromarray(array, "RGB").save(tmp, format="JPEG", quality=JPEG_QUALITY, subsampling=0,
                                       optimize=False, progressive=False)
    os.replace(tmp, path)


def _remove_stale(split_dir, keep):
    """Remove images a previous (different) run left in split_dir that are not in `keep`."""
    if not os.path.isdir(split_dir):
        return
    for name in os.listdir(split_dir):
        if (_NAME_RE.match(name) or name.endswith(f".jpg.{os.getpid()}.tmp")) and name not in keep:
            os.remove(os.path.join(split_dir, name))


def _summary(args, root, list_dir, regenerated):
    counts = {name: args[f"n_{name}"] for name in LIST_NAMES}
    return {"kind": args["kind"], "root": root, "list_dir": list_dir, "counts": counts, **counts,
            "num_labels": args["num_classes"], "size": args["size"], "seed": args["seed"],
            "regenerated": regenerated}


def generate(kind, root, list_dir, n_train=200, n_database=400, n_test=100, num_classes=10, size=64, seed=0):
    """Generate (or reuse) a synthetic data set under `root` with lists in `list_dir`; return a summary.

    kind: "single" (one-hot over `num_classes`) or "multi" (1-3 labels per image); n_*: images per split;
    size: image side in pixels; seed: everything drawn depends on it (same arguments, same bytes).
    The summary: {"kind", "root", "list_dir", "counts": {"train", "database", "test"}, the same counts as
    top-level "train"/"database"/"test", "num_labels", "size", "seed", "regenerated"}. When the stamp in
    `list_dir` matches the arguments and every listed file exists, nothing is written (`regenerated` False).
    Bad arguments raise UserError.
    """
    counts = {"train": n_train, "database": n_database, "test": n_test}
    _check_args(kind, counts, num_classes, size)
    args = _stamp_args(kind, root, counts, num_classes, size, seed)
    stamp_path = os.path.join(list_dir, STAMP_NAME)
    if _up_to_date(stamp_path, args, root, list_dir):
        return _summary(args, root, list_dir, False)

    os.makedirs(list_dir, exist_ok=True)
    if os.path.exists(stamp_path):
        os.remove(stamp_path)  # a run interrupted from here on is redone next time
    for name in LIST_NAMES:
        n = int(counts[name])
        rng = np.random.default_rng([int(seed), _KIND_CODE[kind], _SPLIT_CODE[name], int(num_classes)])
        labels = _split_labels(kind, n, num_classes, rng)
        order = rng.permutation(n)  # list order is shuffled; names keep the image index
        labels = labels[order]
        split_dir = os.path.join(root, name)
        os.makedirs(split_dir, exist_ok=True)
        rels, names = [], set()
        for i in range(n):
            idx = np.flatnonzero(labels[i])
            fname = f"{idx[0]}_{i:05d}.jpg" if kind == "single" else f"img_{i:05d}.jpg"
            img_rng = np.random.default_rng([int(seed), _KIND_CODE[kind], _SPLIT_CODE[name], int(num_classes),
                                             int(size), i])
            _save_jpeg(_draw_image(idx, kind, num_classes, size, img_rng), os.path.join(split_dir, fname))
            rels.append(f"{name}/{fname}")
            names.add(fname)
        _remove_stale(split_dir, names)
        write_list(os.path.join(list_dir, f"{name}.txt"), rels, labels)
    write_json(stamp_path, {"args": args, "generator": "utils/data/lite_data.py"})
    return _summary(args, root, list_dir, True)
