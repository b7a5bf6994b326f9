"""Compare training runs: a Markdown table of methods × bits (the shape of OrthoHash's Table 1), and
optionally one precision–recall chart with every run.

    python scripts/compare_runs.py output/hashnet_16 output/hashnet_32 output/orthohash_16 output/orthohash_32
    python scripts/compare_runs.py output/* --tie-aware table --plot pr_all.png

Each argument is a training --output directory holding metrics.json (or the metrics.json itself).
Rows are method (dataset), columns bits, cells mAP@topK with the tie-aware mAP in parentheses
(`--tie-aware table`: a second table instead); a "random codes" row per data set gives the chance level
(the mAP of random codes, from each run's report/metrics.json). --plot reads each run's report/pr_curve.json, written by
the evaluation report (utils/report/). A missing or broken metrics.json is a one-line error, exit 2.

Seeds: runs whose run.json (the resolved configuration training wrote) differ only in --seed (and in
where they ran: output folder, device, workers) are one *group*, whatever their folder names; the
lists' sha256 (run.json "lists_sha256") is part of what defines a run, so different splits never pool. A group
of several seeds is shown as "mean ± std (n)" (sample standard deviation over the seeds), followed by a
per-seed table and, for every two groups of one data set and code length run on at least two common
seeds, the paired difference A − B per seed as "mean ± std (n)". Runs without run.json are grouped by
the method, bits, data set, topK and backbone of their metrics.json. Two runs of one group with the same
seed: the later argument wins (a note says so on stderr).

    python scripts/compare_runs.py output/seeds/lite_single/*_s*
    python scripts/compare_runs.py RUNS... --metrics map_at_r,r_precision --cost

--metrics adds a table of other metrics from each run's metrics.json (precision_at_radius_2,
recall_at_radius_2, map_at_r, r_precision, ...); --cost adds bytes per item, encode images/s and query
ms. Runs evaluated on open-set lists (scripts/build_lists.py --unseen-classes) also get a table of mAP
on seen-class and unseen-class queries.
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
# run.json keys that do not change what a run is: where and how it ran, and the seed (grouped over)
NOT_DEFINING = {"seed", "output", "device", "num_workers", "eval", "pretrained", "resume", "visualdl",
                "print_recipe", "skip_bad_images", "allow_absolute_paths", "data_path"}
FALLBACK_DEFINING = ("method", "bit", "dataset", "topk", "backbone")
COST_METRICS = ("bytes_per_item", "encode_images_per_second", "query_ms")
OPEN_SET_METRICS = ("map_seen", "map_unseen")


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
    p.add_argument("--metrics", default=None, metavar="A,B",
                   help="also a table of these metrics.json values, e.g. map_at_r,r_precision,precision_at_radius_2")
    p.add_argument("--cost", action="store_true",
                   help="add the cost columns (bytes per item, encode images/s, query ms) to that table")
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


def metric_value(m, name):
    """A number of a run's metrics.json by name (open-set and cost values flattened), or None."""
    if name in OPEN_SET_METRICS:
        group = (m.get("open_set") or {}).get(name.split("_", 1)[1]) or {}
        v = group.get("map")
    elif name in COST_METRICS:
        v = (m.get("cost") or {}).get(name)
    else:
        v = m.get(name)
    return v if _is_number(v) else None


def run_config(run_dir):
    """The run's run.json (its resolved configuration) as a dict, or None when it has none; UserError when
    it is not valid JSON."""
    path = RunDir(run_dir).run_json
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc})")
    return cfg if isinstance(cfg, dict) else None


def run_definition(run_dir, m):
    """(definition key, seed): run.json without the keys that do not define the run; without run.json
    the metrics' method, bits, data set, topK and backbone."""
    cfg = run_config(run_dir)
    if cfg is not None:
        key = json.dumps({k: v for k, v in cfg.items() if k not in NOT_DEFINING}, sort_keys=True, default=str)
        return key, cfg.get("seed", m.get("seed"))
    return json.dumps({k: m.get(k) for k in FALLBACK_DEFINING}, sort_keys=True), m.get("seed")


def group_runs(runs):
    """[(run dir, metrics)] → (groups, notes): groups in argument order, each {"key", "runs": {seed:
    (run dir, metrics)}}; a repeated (definition, seed) keeps the later argument."""
    groups, notes = {}, []
    for run_dir, m in runs:
        key, seed = run_definition(run_dir, m)
        g = groups.setdefault(key, {"key": key, "runs": {}})
        if seed in g["runs"]:
            notes.append(f"note: {run_dir} replaces {g['runs'][seed][0]} ({m['method']}, {m['bit']} bits, "
                         f"{m.get('dataset')}, seed {seed}): later argument wins")
        g["runs"][seed] = (run_dir, m)
    return list(groups.values()), notes


def mean_std(values):
    """(mean, sample std or None for one value, n) of finite numbers; None when there is none."""
    v = [float(x) for x in values if _is_number(x)]
    if not v:
        return None
    mean = sum(v) / len(v)
    std = math.sqrt(sum((x - mean) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else None
    return mean, std, len(v)


def fmt_mean_std(stat, digits):
    if stat is None:
        return "–"
    mean, std, n = stat
    return f"{mean:.{digits}f}" if n == 1 else f"{mean:.{digits}f} ± {std:.{digits}f} ({n})"


def _group_label(g, runs_differ):
    """method (dataset) of a group, plus what sets it apart from the groups with that label."""
    m = next(iter(g["runs"].values()))[1]
    label = f"{m['method']} ({m.get('dataset') or '?'})"
    return label + (f" [{runs_differ}]" if runs_differ else "")


def _distinguish(groups):
    """For groups that share method, data set and bits, the run.json keys in which they differ."""
    out = {}
    by_label = {}
    for i, g in enumerate(groups):
        m = next(iter(g["runs"].values()))[1]
        by_label.setdefault((m["method"], m.get("dataset"), m["bit"]), []).append(i)
    for idxs in by_label.values():
        if len(idxs) < 2:
            continue
        cfgs = [json.loads(groups[i]["key"]) for i in idxs]
        keys = sorted({k for c in cfgs for k in c if any(c.get(k) != o.get(k) for o in cfgs)})
        for i, c in zip(idxs, cfgs):
            out[i] = ", ".join(f"{k}={c.get(k)}" for k in keys if k != "lists_sha256") or "other lists"
    return out


def build_seed_tables(groups, digits=4):
    """Markdown: methods × bits of mean ± std (n) over seeds, the per-seed values, paired differences."""
    differ = _distinguish(groups)
    labels = [_group_label(g, differ.get(i)) for i, g in enumerate(groups)]
    bits = sorted({next(iter(g["runs"].values()))[1]["bit"] for g in groups})
    rows, cells = [], {}
    for label, g in zip(labels, groups):
        b = next(iter(g["runs"].values()))[1]["bit"]
        if label not in rows:
            rows.append(label)
        cells[(label, b)] = g
    topks = sorted({_topk(m) for g in groups for _, m in g["runs"].values()})
    what = "mAP@" + topks[0] if len(topks) == 1 else "mAP@topK"
    out = [f"{what} at each run's last evaluation, mean ± sample std (number of seeds)\n",
           "| method (dataset) | " + " | ".join(f"{b} bits" for b in bits) + " |", "|---|" + "---:|" * len(bits)]
    for label in rows:
        vals = [fmt_mean_std(mean_std(m["map"] for _, m in cells[(label, b)]["runs"].values()), digits)
                if (label, b) in cells else "–" for b in bits]
        out.append(f"| {label} | " + " | ".join(vals) + " |")
    seeds = sorted({s for g in groups for s in g["runs"]}, key=lambda s: (s is None, s if s is not None else 0))
    out += ["", f"{what} per seed\n", "| method (dataset), bits | " + " | ".join(f"seed {s}" for s in seeds) + " |",
            "|---|" + "---:|" * len(seeds)]
    for label, g in zip(labels, groups):
        b = next(iter(g["runs"].values()))[1]["bit"]
        vals = [f"{g['runs'][s][1]['map']:.{digits}f}" if s in g["runs"] else "–" for s in seeds]
        out.append(f"| {label}, {b} | " + " | ".join(vals) + " |")
    pairs = []
    for i in range(len(groups)):
        for j in range(i + 1, len(groups)):
            a, b = groups[i], groups[j]
            ma, mb = next(iter(a["runs"].values()))[1], next(iter(b["runs"].values()))[1]
            if (ma["bit"], ma.get("dataset"), _topk(ma)) != (mb["bit"], mb.get("dataset"), _topk(mb)):
                continue
            common = [s for s in a["runs"] if s in b["runs"]]
            if len(common) < 2:
                continue
            diffs = [a["runs"][s][1]["map"] - b["runs"][s][1]["map"] for s in common]
            pairs.append(f"| {labels[i]} − {labels[j]} | {ma['bit']} | {fmt_mean_std(mean_std(diffs), digits)} | "
                         + ", ".join(f"{d:+.{digits}f}" for d in diffs) + " |")
    if pairs:
        out += ["", f"paired difference of {what} on common seeds (A − B per seed: mean ± sample std (n))\n",
                "| A − B | bits | difference | per seed |", "|---|---:|---:|---|"] + pairs
    return "\n".join(out) + "\n"


def build_metric_table(groups, names, digits=4):
    """Markdown: one row per group (method, data set, bits), one column per metric, mean ± std (n)."""
    differ = _distinguish(groups)
    out = ["| method (dataset), bits | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for i, g in enumerate(groups):
        m0 = next(iter(g["runs"].values()))[1]
        vals = []
        for name in names:
            d = 1 if name in ("encode_images_per_second",) else (0 if name == "bytes_per_item" else
                                                                  3 if name == "query_ms" else digits)
            vals.append(fmt_mean_std(mean_std(metric_value(m, name) for _, m in g["runs"].values()), d))
        out.append(f"| {_group_label(g, differ.get(i))}, {m0['bit']} | " + " | ".join(vals) + " |")
    return "\n".join(out) + "\n"


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
    groups, notes = group_runs(runs)
    if any(len(g["runs"]) > 1 for g in groups):
        text = build_seed_tables(groups, args.digits)
    else:  # one run per configuration: the methods × bits table (its own note on repeated cells)
        text, notes = build_tables(runs, args.tie_aware, args.digits)
    for n in notes:
        print(n, file=sys.stderr)
    print(text, end="", flush=True)
    names = [n.strip() for n in (args.metrics or "").split(",") if n.strip()]
    if any(metric_value(m, "map_unseen") is not None for _, m in runs):
        print("\nmAP on queries of seen and of unseen classes (open-set lists; unseen = a class train.txt "
              "never has)\n")
        print(build_metric_table(groups, ["map", "map_seen", "map_unseen"], args.digits), end="")
    if args.cost:
        names += [n for n in COST_METRICS if n not in names]
    if names:
        print()
        print(build_metric_table(groups, names, args.digits), end="", flush=True)
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
