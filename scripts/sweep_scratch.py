"""The sweep that chooses each method's `--recipe scratch` settings (random-init backbone, lite data).

    python scripts/sweep_scratch.py                          # every trained method, both lite sets
    python scripts/sweep_scratch.py --methods csq hashnet --dry-run
    python scripts/sweep_scratch.py --table                  # the results so far, as docs/recipes.md shows them

One factor at a time around the method's current scratch recipe, with everything else as
`scripts/benchmark_methods.sh` trains (64 bits, 8 epochs, batch 16, evaluation every 2 epochs, seed 0):

    base        the current scratch recipe
    lr/3, lr*3  its learning rate divided / multiplied by 3
    bs32        batch 32 instead of 16
    crop_flip   Resize + RandomCrop + flip, for methods whose recipe crops otherwise (CSQ: RandomResizedCrop)
    linear      a one-fc hash layer, for methods with a deeper official head (CSQ's --head)

Runs are scored on VALIDATION copies of the lite sets: the same generator with another seed
(`make_lite_data.py --seed 1`: other images of the same classes) in datasets/lite_<kind>_val, so the
settings are not chosen on the query set the README's tables report. A method's choice is the variant
with the best mean mAP over both sets. Each finished run appends one row to --results (a CSV kept in the
repository, written atomically), and a later call skips what is there: the sweep is resumable across
machines. Run folders are deleted after their metrics are read (checkpoints are big).
"""
import argparse
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from utils.errors import UserError, cli_entry  # noqa: E402
from utils.fileio import atomic_path  # noqa: E402

METHODS = ("hashnet", "orthohash", "relahash", "dpsh", "csq", "dsh", "dhn", "dch", "dfh", "dpn", "greedyhash",
           "dshsd", "lcdsh", "greedyhash_unsup", "bihalf")
DATASETS = ("lite_single", "lite_multi")
FIELDS = ("method", "dataset", "variant", "seed", "bit", "epochs", "batch_size", "lr", "train_augment", "head",
          "map", "best_epoch", "seconds")
BATCH = 16


def scratch_recipe(method, dataset):
    """The resolved cfg of `--method M --dataset D --recipe scratch` (what the benchmark trains)."""
    from utils.train.config import build_parser, resolve

    args = build_parser("sweep").parse_args(["--method", method, "--dataset", dataset, "--recipe", "scratch"])
    return resolve(args)


def variants(method, dataset):
    """[(name, {flag: value})] of the one-factor-at-a-time sweep around the method's scratch recipe."""
    cfg = scratch_recipe(method, dataset)
    lr = cfg["lr"]
    out = [("base", {}), ("lr/3", {"--lr": f"{lr / 3:.3g}"}), ("lr*3", {"--lr": f"{lr * 3:.3g}"}),
           ("bs32", {"-bs": "32"})]
    if cfg["train_augment"] != "crop_flip":
        out.append(("crop_flip", {"--train-augment": "crop_flip"}))
    if cfg.get("head") not in (None, "linear"):
        out.append(("linear", {"--head": "linear"}))
    return out, cfg


def read_results(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if rows and set(rows[0]) != set(FIELDS):
        raise UserError(f"--results {path}: columns {sorted(rows[0])} are not this sweep's {list(FIELDS)}")
    return rows


def write_results(path, rows):
    buf = io.StringIO()
    w = csv.DictWriter(buf, FIELDS, lineterminator="\n")
    w.writeheader()
    w.writerows(sorted(rows, key=lambda r: (METHODS.index(r["method"]) if r["method"] in METHODS else 99,
                                            r["dataset"], r["variant"], int(r["seed"]))))
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(buf.getvalue())


def validation_set(kind, seed):
    """Generate (once) the validation copy of lite_<kind>; → (data_path, list_dir)."""
    data_path, list_dir = f"datasets/lite_{kind}_val", f"data/lite_{kind}_val"
    subprocess.run([sys.executable, "scripts/make_lite_data.py", "--kind", kind, "--seed", str(seed),
                    "--data-path", data_path, "--list-dir", list_dir], cwd=ROOT, check=True)
    return data_path, list_dir


def train(method, dataset, flags, args, out):
    data_path, list_dir = validation_set(dataset.split("_", 1)[1], args.val_seed)
    cmd = [sys.executable, "main_single_gpu.py", "--method", method, "--bit", str(args.bit), "--dataset", dataset,
           "--data-path", data_path, "--list-dir", list_dir, "--epochs", str(args.epochs), "-bs", str(BATCH),
           "--recipe", "scratch", "--num-workers", "2", "-ee", "2", "--seed", str(args.seed), "--output", out]
    for flag, value in flags.items():
        if flag == "-bs":
            cmd[cmd.index("-bs") + 1] = value
        else:
            cmd += [flag, value]
    t0 = time.time()
    log = out + ".log"
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(log, "w") as f:
        rc = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                            env={**os.environ, "FLAGS_use_mkldnn": "0", "PYTHONUNBUFFERED": "1"}).returncode
    if rc != 0:
        tail = open(log, encoding="utf-8", errors="replace").read().splitlines()[-5:]
        raise UserError(f"{' '.join(cmd)} failed (exit {rc}); last lines of {log}:\n" + "\n".join(tail))
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    seconds = time.time() - t0
    shutil.rmtree(out, ignore_errors=True)
    os.remove(log)
    return metrics, seconds


def table(rows):
    """Markdown: per method, each variant's mAP on both sets and their mean; the best mean in bold."""
    by = {}
    for r in rows:
        by.setdefault(r["method"], {}).setdefault(r["variant"], {})[r["dataset"]] = float(r["map"])
    lines = ["| method | variant | lite_single | lite_multi | mean |", "|---|---|---:|---:|---:|"]
    chosen = {}
    for method in sorted(by, key=lambda m: METHODS.index(m) if m in METHODS else 99):
        cells = by[method]
        full = {v: c for v, c in cells.items() if all(d in c for d in DATASETS)}
        # a choice only once every variant ran on both sets (a partial sweep chooses nothing)
        best = max(full, key=lambda v: sum(full[v].values())) if full and len(full) == len(cells) else None
        chosen[method] = best
        for v, c in cells.items():
            mean = f"{sum(c.values()) / len(c):.4f}" if v in full else "—"
            if v == best:
                mean = f"**{mean}**"
            lines.append(f"| {method} | {v} | " + " | ".join(f"{c[d]:.4f}" if d in c else "—" for d in DATASETS)
                         + f" | {mean} |")
    return "\n".join(lines), chosen


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS, metavar="METHOD")
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    p.add_argument("--bit", type=int, default=64)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--seed", type=int, default=0, help="training seed (default %(default)s)")
    p.add_argument("--val-seed", type=int, default=1, help="make_lite_data.py seed of the validation copies")
    p.add_argument("--results", default="docs/scratch_sweep.csv", help="the CSV of finished runs (default %(default)s)")
    p.add_argument("--out", default="output/sweep_scratch", help="run folders while they train")
    p.add_argument("--dry-run", action="store_true", help="print the runs still to do and stop")
    p.add_argument("--table", action="store_true", help="print the results table and each method's choice")
    return p.parse_args(argv)


@cli_entry
def main(argv=None):
    args = parse_args(argv)
    results = os.path.join(ROOT, args.results) if not os.path.isabs(args.results) else args.results
    rows = read_results(results)
    if args.table:
        text, chosen = table(rows)
        print(text)
        done = [f"{m} {v}" for m, v in chosen.items() if v]
        print("\nchosen (methods whose sweep is complete): " + (", ".join(done) or "none yet"))
        return 0
    done = {(r["method"], r["dataset"], r["variant"], r["seed"], r["bit"], r["epochs"]) for r in rows}
    todo = []
    for method in args.methods:
        for dataset in args.datasets:
            vs, cfg = variants(method, dataset)
            for name, flags in vs:
                key = (method, dataset, name, str(args.seed), str(args.bit), str(args.epochs))
                if key not in done:
                    todo.append((method, dataset, name, flags, cfg))
    print(f"sweep: {len(todo)} run(s) to do, {len(rows)} in {args.results}")
    for i, (method, dataset, name, flags, cfg) in enumerate(todo, 1):
        line = f"[{i}/{len(todo)}] {method} {dataset} {name} {' '.join(f'{k} {v}' for k, v in flags.items())}"
        if args.dry_run:
            print(line)
            continue
        out = os.path.join(args.out, f"{method}_{dataset}_{name.replace('/', '_').replace('*', 'x')}")
        metrics, seconds = train(method, dataset, flags, args, out)
        row = dict(method=method, dataset=dataset, variant=name, seed=args.seed, bit=args.bit, epochs=args.epochs,
                   batch_size=flags.get("-bs", BATCH), lr=flags.get("--lr", f"{cfg['lr']:.3g}"),
                   train_augment=flags.get("--train-augment", cfg["train_augment"]),
                   head=flags.get("--head", cfg.get("head") or ""), map=f"{metrics['best_map']:.4f}",
                   best_epoch=metrics["best_epoch"], seconds=f"{seconds:.0f}")
        rows = read_results(results) + [{k: str(v) for k, v in row.items()}]
        write_results(results, rows)
        print(f"{line}: mAP {row['map']} (epoch {row['best_epoch']}, {row['seconds']} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
