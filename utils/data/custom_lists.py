"""Hashing lists for your own images, end to end: collect (utils/data/sources.py), split
(utils/data/split.py), check (utils/data/split_check.py) and write (train.txt, database.txt, test.txt and
classes.txt, atomically). scripts/build_lists.py is its command line; its --help text describes every rule.

    summary = build("data/mydata", images="path/to/photos", say=print)
    summary = build("data/mydata", csv_file="labels.csv", query_per_class=1, train_fraction=0.5, seed=3)

The same inputs and seed give byte-identical files; re-running with an identical result changes nothing
('unchanged'); an --out that holds different lists is a UserError unless `force`.
"""
import os

import numpy as np

from utils.data.lists import LIST_NAMES, format_list, write_list
from utils.data.sources import SHOW, drop_small, find_images, read_csv, screen_images
from utils.data.split import Plan, choose_unseen, hold_out, plural, split
from utils.data.split_check import check_split
from utils.errors import UserError
from utils.fileio import check_writable_dir, write_text

DEFAULT_QUERY_FRACTION = 0.1
DEFAULT_TRAIN_FRACTION = 0.5
CLASSES_FILE = "classes.txt"


def list_texts(classes, paths, labels, splits):
    """{file name: exact text} of the three lists and classes.txt."""
    texts = {f"{name}.txt": format_list([paths[i] for i in splits[name]], labels[splits[name]])
             for name in LIST_NAMES}
    texts[CLASSES_FILE] = "".join(c + "\n" for c in classes)
    return texts


def write_outputs(out, classes, paths, labels, splits, force=False):
    """Write the lists and classes.txt atomically; 'unchanged', 'wrote' or 'overwrote'. Different existing
    lists are a UserError unless force."""
    texts = list_texts(classes, paths, labels, splits)
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"--out {out}: exists and is not a directory; choose another --out")
    state = {}
    for name, text in texts.items():
        path = os.path.join(out, name)
        if not os.path.exists(path):
            state[name] = "missing"
            continue
        try:
            with open(path, "rb") as f:
                state[name] = "same" if f.read() == text.encode("utf-8") else "different"
        except OSError:
            state[name] = "different"
    different = [name for name, s in state.items() if s == "different"]
    if different and not force:
        raise UserError(f"--out {out} already holds different lists ({', '.join(different)} differ); pass --force "
                        "to overwrite them, or choose another --out")
    if all(s == "same" for s in state.values()):
        return "unchanged"
    check_writable_dir(out, "--out")
    for name in LIST_NAMES:
        if state[f"{name}.txt"] != "same":
            idx = splits[name]
            write_list(os.path.join(out, f"{name}.txt"), [paths[i] for i in idx], labels[idx])
    if state[CLASSES_FILE] != "same":
        write_text(os.path.join(out, CLASSES_FILE), texts[CLASSES_FILE])
    return "overwrote" if different else "wrote"


def format_table(classes, labels, splits):
    """Per-class counts per split, then the number of images per split."""
    rows = [("class", "train", "database", "query", "total")]
    per = {name: labels[splits[name]].sum(0) for name in LIST_NAMES}
    total = labels.sum(0)
    for j, name in enumerate(classes):
        rows.append((name, per["train"][j], per["database"][j], per["test"][j], total[j]))
    rows.append(("total (images)", len(splits["train"]), len(splits["database"]), len(splits["test"]), len(labels)))
    rows = [tuple(str(v) for v in row) for row in rows]
    widths = [max(len(row[k]) for row in rows) for k in range(5)]
    lines = ["  ".join([row[0].ljust(widths[0])] + [v.rjust(w) for v, w in zip(row[1:], widths[1:])]) for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    return "\n".join(lines)


def build(out, images=None, csv_file=None, root=None, delimiter=",", path_column="path", label_column="labels",
          label_separator="|", query_per_class=None, query_fraction=None, train_per_class=None, train_fraction=None,
          database_excludes_train=False, seed=0, skip_bad_images=False, drop_small_classes=False, force=False,
          say=None, unseen_classes=None):
    """Collect, check, split and write; return a summary dict. `say(text)` receives progress lines."""
    say = say or (lambda text: None)
    if (images is None) == (csv_file is None):
        raise UserError("pass exactly one of --images DIR (class folders) and --csv FILE" +
                        (" (not both)" if images is not None else ""))
    for a, va, b, vb in (("query-per-class", query_per_class, "query-fraction", query_fraction),
                         ("train-per-class", train_per_class, "train-fraction", train_fraction)):
        if va is not None and vb is not None:
            raise UserError(f"--{a} and --{b} are mutually exclusive; give one")
    defaults = []
    if query_per_class is None and query_fraction is None:
        query_fraction = DEFAULT_QUERY_FRACTION
        defaults.append("query-fraction")
    if train_per_class is None and train_fraction is None:
        train_fraction = DEFAULT_TRAIN_FRACTION
        defaults.append("train-fraction")
    for name, value in (("query-per-class", query_per_class), ("train-per-class", train_per_class)):
        if value is not None and value < 1:
            raise UserError(f"--{name} must be at least 1, got {value}")
    if query_fraction is not None and not 0 < query_fraction < 1:
        raise UserError(f"--query-fraction must be between 0 and 1 (exclusive), got {query_fraction}")
    if train_fraction is not None and not (0 < train_fraction < 1 if database_excludes_train else
                                           0 < train_fraction <= 1):
        bound = "below 1 with --database-excludes-train (the database needs images)" if database_excludes_train \
            else "at most 1"
        raise UserError(f"--train-fraction must be above 0 and {bound}, got {train_fraction}")
    if seed < 0:
        raise UserError(f"--seed must be ≥ 0, got {seed}")
    plan = Plan(query_per_class, query_fraction, train_per_class, train_fraction, bool(database_excludes_train))
    csv_mode = csv_file is not None
    kind = "tag" if csv_mode else "class"

    summary = {"ignored": {"non_image": 0, "outside": 0, "hidden": 0, "non_image_examples": []}}
    if csv_mode:
        root, items = read_csv(csv_file, root, delimiter, path_column, label_column, label_separator)
        say(f"read {plural(len(items), 'row')} from {csv_file}; paths relative to {root}")
        classes = None
    else:
        root = images
        classes, items, summary["ignored"] = find_images(images, skip_dirs=[out])
        ign = summary["ignored"]
        notes = [plural(ign["non_image"], "non-image file")]
        if ign["non_image_examples"]:
            notes[0] += f" (e.g. {', '.join(ign['non_image_examples'][:3])})"
        if ign["outside"]:
            notes.append(f"{plural(ign['outside'], 'file')} directly in {images} (not in a class folder)")
        if ign["hidden"]:
            notes.append(plural(ign["hidden"], "hidden entry", "hidden entries"))
        say(f"found {plural(len(items), 'image')} in {plural(len(classes), 'class folder')} under {images}; "
            f"ignored {', '.join(notes)}")
    items, bad = screen_images(items, root, skip_bad_images, csv_mode, say=say)
    summary["bad"] = [(it.where, message) for it, _, message in bad]
    if bad:
        shown = ", ".join((f"{it.where} '{it.path}'" if csv_mode else it.path) + f" ({short})"
                          for it, short, _ in bad[:SHOW])
        say(f"skipped {plural(len(bad), 'bad image')} (--skip-bad-images): {shown}"
            + (" ..." if len(bad) > SHOW else ""))
    if not items:
        raise UserError(f"no usable image left after skipping {plural(len(bad), 'bad image')}")
    if classes is None:
        classes = sorted({t for it in items for t in it.tags})
    summary["dropped"], summary["orphans"] = [], 0
    if drop_small_classes:
        classes, items, summary["dropped"], summary["orphans"] = drop_small(classes, items, plan, csv_mode)
        if summary["dropped"]:
            names = ", ".join(f"{c} ({n})" for c, n in summary["dropped"][:10])
            extra = f"; {plural(summary['orphans'], 'image')} left without a tag left out" if csv_mode else ""
            say(f"left out {plural(len(summary['dropped']), kind)} with fewer than {plan.min_images()} images "
                f"(--drop-small-classes): {names}{' ...' if len(summary['dropped']) > 10 else ''}{extra}")
    column = {c: j for j, c in enumerate(classes)}
    paths = [it.path for it in items]
    labels = np.zeros((len(items), len(classes)), np.uint8)
    for i, it in enumerate(items):
        labels[i, [column[t] for t in it.tags]] = 1
    multi = bool((labels.sum(1) > 1).any())
    say(f"split (seed {seed}): {plan.describe(defaults)}; training images "
        + ("are not in the database" if plan.excludes_train else "are drawn from the database")
        + ("; multi-label: greedy per-label quotas, rarest label first" if multi else ""))
    test, train, database = split(labels, plan, seed, classes, kind, defaults)
    unseen = choose_unseen(unseen_classes, classes, seed, kind)
    train, database, n_held = hold_out(labels, train, database, unseen, plan.excludes_train, classes, kind)
    if unseen:
        say(f"open set: {plural(len(unseen), kind)} kept out of train.txt ({', '.join(classes[j] for j in unseen)}): "
            f"{plural(n_held, 'training image')} carrying them removed"
            + (" and given to the database" if plan.excludes_train else "")
            + "; database.txt and test.txt keep them")
    summary["checked"] = check_split([paths[i] for i in train], [paths[i] for i in database],
                                     [paths[i] for i in test], train_in_database=not plan.excludes_train)
    say(summary["checked"])
    summary["unseen_classes"] = [classes[j] for j in unseen]
    splits = {"train": train, "database": database, "test": test}
    summary["table"] = format_table(classes, labels, splits)
    summary["status"] = write_outputs(out, classes, paths, labels, splits, force)
    summary.update(classes=classes, paths=paths, labels=labels, splits=splits, multi_label=multi, root=root,
                   out=out, plan=plan, counts={name: len(idx) for name, idx in splits.items()})
    return summary
