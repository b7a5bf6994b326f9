"""Train the grid of a paper's table that we have methods for, with each method's paper recipe, cell by
cell, then print our numbers next to the paper's (`scripts/compare_runs.py --paper` does the printing on
any set of runs).

    bash scripts/reproduce.sh orthohash-table1 coco -- --data-path datasets/COCO2014 \
        --backbone-weights weights/alexnet-owt-7be5be79.pth
    python scripts/reproduce.py hashnet-coco coco --dry-run             # print the cells' commands only
    python scripts/reproduce.py orthohash-table1 lite_multi --column coco --epochs 1 --bits 16   # a try on lite data

Each cell is one training run in OUT/<method>[_<setting>]_<bits>/ (default OUT: output/reproduce/<table>/
<dataset>). A cell whose train.log says "done: best" is kept; one with a last.pdparams continues from it
(--resume); any other is trained from the start. So the same command, run again after an interruption or
a crash, continues where it stopped. Cells run on what the machine has (scripts/_launch.sh: one process on
one GPU or the CPU, every GPU when there are several). The table's rows are in utils/report/paper_tables.py.
"""
import argparse
import os
import shlex
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from utils.errors import UserError, cli_entry  # noqa: E402
from utils.report.paper_tables import PAPER_TABLES  # noqa: E402
from utils.rundir import RunDir  # noqa: E402

DONE = "done: best"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("table", choices=sorted(PAPER_TABLES), help="the paper table")
    p.add_argument("dataset", help="--dataset of the runs (a column of the table, or lite_single / lite_multi / "
                                   "custom with --column)")
    p.add_argument("--column", default=None, help="the table's column whose rows and bits to train (default: "
                                                  "the data set); lets a lite data set try the grid")
    p.add_argument("--out", default=None, help="where the cells go (default output/reproduce/<table>/<dataset>)")
    p.add_argument("--bits", default=None, help="only these code lengths (comma-separated)")
    p.add_argument("--methods", default=None, help="only these methods (comma-separated)")
    p.add_argument("--epochs", type=int, default=None, help="override the recipes' epochs (for a try run)")
    p.add_argument("--launch", choices=("auto", "single", "multi"), default="auto",
                   help="auto: several processes when the machine has several GPUs, else one (default)")
    p.add_argument("--dry-run", action="store_true", help="print each cell's state and command, train nothing")
    p.epilog = "Flags after -- go to every run (--data-path, --list-dir, --backbone-weights, ...)."
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    args = p.parse_args(argv[:cut])
    args.train_flags = argv[cut + 1:]
    return args


def gpu_count():
    try:
        import paddle

        return paddle.device.cuda.device_count() if paddle.device.is_compiled_with_cuda() else 0
    except Exception:  # noqa: BLE001 - no usable Paddle GPU build: the CPU
        return 0


def cells(table, column, bits=None, methods=None):
    try:
        grid = table.grid(column)
    except KeyError:
        raise UserError(f"{column}: not a column of {table.name} (columns: {', '.join(table.metric)}); "
                        "give --column for another data set") from None
    if bits:
        want = {int(b) for b in bits.split(",")}
        unknown = want - set(table.bits)
        if unknown:
            raise UserError(f"--bits {bits}: {table.name} has {', '.join(map(str, table.bits))} bits only")
        grid = [c for c in grid if c.bit in want]
    if methods:
        want = set(methods.split(","))
        unknown = want - {c.method for c in grid}
        if unknown:
            raise UserError(f"--methods {methods}: {', '.join(sorted(unknown))} not in {table.name}'s rows we train "
                            f"({', '.join(sorted({c.method for c in table.grid(column)}))})")
        grid = [c for c in grid if c.method in want]
    return grid


def cell_dir(out, cell):
    setting = "_".join(cell.flags[1::2])
    return os.path.join(out, f"{cell.method}{'_' + setting if setting else ''}_{cell.bit}")


def cell_state(run):
    rd = RunDir(run)
    log = os.path.join(run, "train.log")
    if os.path.exists(log):
        with open(log, encoding="utf-8", errors="replace") as f:
            if DONE in f.read():
                return "done"
    return "resume" if os.path.exists(rd.last) else "new"


def command(args, cell, run, state, launch):
    if state == "resume":
        flags = ["--resume", RunDir(run).last]
    else:
        flags = ["--method", cell.method, "--bit", str(cell.bit), "--dataset", args.dataset, "--recipe", "paper",
                 *cell.flags, "--output", run, *args.train_flags]
        if args.epochs is not None:
            flags += ["--epochs", str(args.epochs)]
    return ["sh", os.path.join(ROOT, "scripts", "_launch.sh"), launch, *flags]


@cli_entry
def main(argv=None):
    args = parse_args(argv)
    table = PAPER_TABLES[args.table]
    column = args.column or args.dataset
    grid = cells(table, column, args.bits, args.methods)
    out = args.out or os.path.join("output", "reproduce", table.name, args.dataset)
    launch = args.launch if args.launch != "auto" else ("multi" if gpu_count() >= 2 else "single")
    print(f"{table.title}, column {column}: {len(grid)} cells in {out} ({launch} process launch)", flush=True)
    runs = []
    for cell in grid:
        run = cell_dir(out, cell)
        runs.append(run)
        state = cell_state(run)
        cmd = command(args, cell, run, state, launch)
        print(f"[{cell.row}, {cell.bit} bits] {state}: {' '.join(shlex.quote(c) for c in cmd)}", flush=True)
        if state == "done" or args.dry_run:
            continue
        os.makedirs(run, exist_ok=True)
        if subprocess.run(cmd, cwd=ROOT).returncode != 0:
            raise UserError(f"[{cell.row}, {cell.bit} bits] training failed (see {run}/train.log); run the same "
                            "command again to continue from the last checkpoint")
    if args.dry_run:
        return 0
    print(flush=True)
    compare = [sys.executable, os.path.join(ROOT, "scripts", "compare_runs.py"), *runs]
    if column == args.dataset:
        compare += ["--paper", table.name]
    return subprocess.run(compare, cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main())
