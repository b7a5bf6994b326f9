"""Compare training runs: a Markdown table of methods × bits (the shape of OrthoHash's Table 1), and
optionally one precision–recall chart with every run.

    python scripts/compare_runs.py output/hashnet_16 output/hashnet_32 output/orthohash_16 output/orthohash_32
    python scripts/compare_runs.py output/* --tie-aware table --plot pr_all.png

Each argument is a training --output directory holding metrics.json (or the metrics.json itself).
Rows are method (dataset), columns bits, cells mAP@topK with the tie-aware mAP in parentheses
(`--tie-aware table`: a second table instead); a "random codes" row per data set gives the chance level
(the mAP of random codes, from each run's report/metrics.json). --plot reads each run's report/pr_curve.json, written by
the evaluation report (utils/report/). When two runs share method, dataset and bits the later
argument wins (a note says so on stderr). A missing or broken metrics.json is a one-line error, exit 2.
"""
import argparse
import json
import math
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from utils.errors import UserError, cli_entry  # noqa: E402
from utils.report.paper_tables import PAPER_TABLES, compare, format_comparison  # noqa: E402
from utils.rundir import RunDir  # noqa: E402

REQUIRED = ("method", "bit", "map")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="OUT", help="training output directories (or their metrics.json)")
    p.add_argument("--tie-aware", choices=("paren", "table", "none"), default="paren",
                   help="tie-aware mAP in parentheses (default), as a second table, or not at all")
    p.add_argument("--plot", metavar="FILE.png", default=None,
                   help="also draw every run's precision–recall curve (from OUT/report/pr_curve.json) into one PNG")
    p.add_argument("--digits", type=int, default=4, help="decimals in the table (default 4)")
    p.add_argument("--paper", choices=sorted(PAPER_TABLES), default=None,
                   help="also print each run that matches a row of this paper table beside the paper's value, "
                        "with the difference (utils/report/paper_tables.py)")
    return p.parse_args(argv)


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def load_run(arg):
    """OUT dir or metrics.json → (run dir, metrics dict); UserError naming the file when unusable."""
    path = arg if os.path.isfile(arg) else RunDir(arg).metrics
    run_dir = os.path.dirname(os.path.abspath(path))
    if not os.path.exists(path):
        raise UserError(f"{path}: not found (pass a training --output directory that holds metrics.json)")
    try:
        with open(path, encoding="utf-8") as f:
            m = json.load(f)
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read ({exc})")
    except ValueError as exc:
        raise UserError(f"{path}: not valid JSON ({exc})")
    if not isinstance(m, dict):
        raise UserError(f"{path}: expected a JSON object with {', '.join(REQUIRED)}")
    missing = [k for k in REQUIRED if k not in m]
    if missing:
        raise UserError(f"{path}: missing {', '.join(missing)} (not a training run's metrics.json?)")
    if not isinstance(m["bit"], int) or isinstance(m["bit"], bool) or m["bit"] <= 0:
        raise UserError(f"{path}: bit must be a positive integer, got {m['bit']!r}")
    if not _is_number(m["map"]):
        raise UserError(f"{path}: map must be a number, got {m['map']!r}")
    if m.get("map_tie_aware") is not None and not _is_number(m["map_tie_aware"]):
        raise UserError(f"{path}: map_tie_aware must be a number, got {m['map_tie_aware']!r}")
    return run_dir, m


def _topk(m):
    t = m.get("topk", -1)
    return "all" if t in (None, -1) else str(t)


def _report_value(run_dir, key):
    """A number from <run>/report/metrics.json (the evaluation report), or None."""
    try:
        with open(RunDir(run_dir).report_metrics, encoding="utf-8") as f:
            value = json.load(f).get(key)
    except (OSError, ValueError, AttributeError):
        return None
    return value if _is_number(value) else None


def build_tables(runs, mode="paren", digits=4):
    """[(run dir, metrics)] → (Markdown text, notes). Rows method (dataset), columns bits."""
    notes = []
    topks = sorted({_topk(m) for _, m in runs})
    mixed_topk = len(topks) > 1
    cells, row_keys, bits = {}, [], set()
    for run_dir, m in runs:
        row = (str(m.get("dataset") or "?"), str(m["method"]), _topk(m) if mixed_topk else "")
        if row not in row_keys:
            row_keys.append(row)
        key = (row, m["bit"])
        if key in cells:
            notes.append(f"note: {run_dir} replaces {cells[key][0]} ({m['method']}, {m['bit']} bits, "
                         f"{m.get('dataset')}): later argument wins")
        cells[key] = (run_dir, m)
        bits.add(m["bit"])
    bits = sorted(bits)
    # chance level per data set and code length, from each run's evaluation report (when present)
    for (row, b), (run_dir, m) in list(cells.items()):
        chance = _report_value(run_dir, "map_random_codes")
        if chance is not None:
            rrow = (row[0], "random codes", row[2])
            cells.setdefault((rrow, b), (run_dir, {"map": chance, "map_tie_aware": None}))  # not computed
            if rrow not in row_keys:
                row_keys.append(rrow)
    row_keys.sort(key=lambda r: (r[0], r[1] == "random codes", r[1], r[2]))  # chance last in its data set

    def label(row):
        dataset, method, topk = row
        inner = dataset + (f", mAP@{topk}" if topk else "")
        return f"{method} ({inner})"

    def fmt(v):
        return f"{v:.{digits}f}" if _is_number(v) else "–"

    def table(cell_text):
        lines = ["| method (dataset) | " + " | ".join(f"{b} bits" for b in bits) + " |",
                 "|---|" + "---:|" * len(bits)]
        for row in row_keys:
            vals = [cell_text(cells[(row, b)][1]) if (row, b) in cells else "–" for b in bits]
            lines.append(f"| {label(row)} | " + " | ".join(vals) + " |")
        return "\n".join(lines)

    what = ("mAP@" + topks[0] if not mixed_topk else "mAP@topK (see each row)") + " at each run's last evaluation"
    parts = []
    if mode == "paren":
        parts.append(f"{what}, tie-aware mAP in parentheses\n")
        parts.append(table(lambda m: f"{fmt(m['map'])} ({fmt(m.get('map_tie_aware'))})"))
    else:
        parts.append(f"{what} (ties broken by database index)\n")
        parts.append(table(lambda m: fmt(m["map"])))
        if mode == "table":
            parts.append(f"\n{what}, tie-aware (expected over random orders of tied items)\n")
            parts.append(table(lambda m: fmt(m.get("map_tie_aware"))))
    return "\n".join(parts) + "\n", notes


def run_config(run_dir):
    """The run's run.json (its resolved configuration), or None when it has none or it is unreadable."""
    try:
        with open(RunDir(run_dir).run_json, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError):
        return None
    return cfg if isinstance(cfg, dict) else None


def plot_runs(runs, png):
    from utils.report import load_pr_curve
    from utils.report.plots import plot_pr_curves

    curves = []
    for run_dir, m in runs:
        path = os.path.join(RunDir(run_dir).report, "pr_curve.json")
        if not os.path.exists(path) and os.path.exists(os.path.join(run_dir, "pr_curve.json")):
            path = os.path.join(run_dir, "pr_curve.json")  # OUT/report/metrics.json was given
        if not os.path.exists(path):
            raise UserError(f"{path}: not found; --plot needs each run's evaluation report "
                            "(utils.report.write_report, written after evaluation)")
        try:
            c = load_pr_curve(path)
        except (OSError, ValueError) as exc:
            raise UserError(f"{path}: not a usable pr_curve.json ({exc})")
        dataset = m.get("dataset")
        c["label"] = f"{m['method']} {m['bit']} bits" + (f" ({dataset})" if dataset else "") + \
                     f", mAP {m['map']:.3f}"
        curves.append(c)
    return plot_pr_curves(curves, png, title="precision–recall over Hamming radius", by_radius=False)


@cli_entry
def main(argv=None):
    args = parse_args(argv)
    runs = [load_run(a) for a in args.runs]
    text, notes = build_tables(runs, args.tie_aware, args.digits)
    for n in notes:
        print(n, file=sys.stderr)
    print(text, end="", flush=True)
    if args.paper:
        table = PAPER_TABLES[args.paper]
        print("\n" + format_comparison(table, compare(table, [(d, m, run_config(d)) for d, m in runs])), end="",
              flush=True)
    if args.plot:
        plot_runs(runs, args.plot)
        print(f"\nprecision–recall chart: {args.plot}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
