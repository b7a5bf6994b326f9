"""HashNet-format image lists: one image per line, `relative/path l1 l2 ... lC` with 0/1 labels
(one-hot for single-label data sets, multi-hot for multi-label ones).

Reading validates every line and raises `UserError` naming the list file and line number; writing
is atomic. No Paddle import here.
"""
import os
from dataclasses import dataclass, field

import numpy as np

from utils.errors import UserError
from utils.fileio import write_text

LIST_NAMES = ("train", "database", "test")
NO_LABELS_HINT = " (paths alone serve only as the training list of an unsupervised --method)"


@dataclass
class ImageList:
    """A parsed list: `paths[i]` (as written in the list), `labels[i]` (uint8 0/1 row), `lines[i]`
    (1-based line number in `list_file`, for error messages)."""

    list_file: str
    paths: list
    labels: np.ndarray
    lines: list = field(default_factory=list)

    def __len__(self):
        return len(self.paths)

    @property
    def num_labels(self):
        return self.labels.shape[1]

    def where(self, i):
        """`file:line` of item i, for messages."""
        return f"{self.list_file}:{self.lines[i]}"


def _check_path(path, list_file, lineno, allow_absolute):
    if os.path.isabs(path):
        if not allow_absolute:
            raise UserError(f"{list_file}:{lineno}: absolute path '{path}' is not allowed; "
                            "make it relative to --data-path or pass --allow-absolute-paths")
        return
    norm = os.path.normpath(path)
    if norm == ".." or norm.startswith(".." + os.sep):
        raise UserError(f"{list_file}:{lineno}: path '{path}' escapes --data-path; "
                        "use a path inside the image root (or an absolute path with --allow-absolute-paths)")


def read_list(list_file, num_labels=None, allow_absolute=False, unlabelled_ok=False):
    """Parse and validate a list file. `num_labels=None` takes the width from the first line.
    `unlabelled_ok` (the training list of an unsupervised method; needs `num_labels`): a line may be a
    path alone, read as an all-zero label row — such rows are never used."""
    if unlabelled_ok and num_labels is None:
        raise ValueError("unlabelled_ok needs num_labels")
    if not os.path.isfile(list_file):
        raise UserError(f"{list_file}: list file not found; build it with scripts/build_lists.py (your images), "
                        "scripts/make_lite_data.py, scripts/build_coco_lists.py or scripts/build_cifar10_lists.py, "
                        "or fix --list-dir")
    try:
        with open(list_file, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{list_file}: cannot read list file ({exc})")
    paths, rows, lines, seen = [], [], [], {}
    for lineno, line in enumerate(text.splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        path, values = tokens[0], tokens[1:]
        if unlabelled_ok and not values:
            values = ["0"] * num_labels
        if num_labels is None:
            if not values:
                raise UserError(f"{list_file}:{lineno}: no labels after the path; expected "
                                f"'relative/path l1 ... lC' with 0/1 labels{NO_LABELS_HINT}")
            num_labels = len(values)
        if len(values) != num_labels:
            raise UserError(f"{list_file}:{lineno}: expected {num_labels} labels after the path, found "
                            f"{len(values)}; every line must be 'relative/path l1 ... l{num_labels}'"
                            + (" or the path alone" if unlabelled_ok else NO_LABELS_HINT if not values else ""))
        try:
            row = [int(v) for v in values]
        except ValueError:
            bad = next(v for v in values if not v.lstrip("-").isdigit())
            raise UserError(f"{list_file}:{lineno}: label '{bad}' is not a number; labels must be 0 or 1")
        if any(v not in (0, 1) for v in row):
            bad = next(v for v in row if v not in (0, 1))
            raise UserError(f"{list_file}:{lineno}: label {bad} is not 0 or 1; labels are one-hot or multi-hot")
        _check_path(path, list_file, lineno, allow_absolute)
        if path in seen:
            raise UserError(f"{list_file}:{lineno}: duplicate path '{path}' (first on line {seen[path]}); "
                            "each image may appear once per list")
        seen[path] = lineno
        paths.append(path)
        rows.append(row)
        lines.append(lineno)
    if not paths:
        raise UserError(f"{list_file}: list is empty; expected lines 'relative/path l1 ... lC'")
    labels = np.asarray(rows, dtype=np.uint8)
    return ImageList(list_file=list_file, paths=paths, labels=labels, lines=lines)


def format_list(paths, labels):
    labels = np.asarray(labels)
    if len(paths) != len(labels):
        raise ValueError(f"{len(paths)} paths but {len(labels)} label rows")
    out = []
    for path, row in zip(paths, labels):
        if any(c.isspace() for c in path):
            raise ValueError(f"path '{path}' contains whitespace, which the list format cannot hold")
        out.append(path + " " + " ".join(str(int(v)) for v in row))
    return "\n".join(out) + "\n"


def write_list(list_file, paths, labels):
    """Write a list atomically."""
    write_text(list_file, format_list(paths, labels))
