"""Evaluation report: retrieval metrics, code diagnostics and their pictures in `<out_dir>/report/`.

    write_report(out_dir, query_codes, db_codes, query_labels, db_labels, topk=1000, method="orthohash",
                 bit=64, codebook=codebook)

writes, atomically:

    report/metrics.json     mAP@topK (ties by index) and tie-aware, precision@k (k = 1, 10, 100, topK),
                            recall@topK, precision / recall within Hamming radius 2, MAP@R, R-precision,
                            seen / unseen-class mAP (open-set lists), cost (bytes per item, encode
                            images/s, query time), the lists' sha256, diagnostics
                            (utils.report.diagnostics), timings
    report/pr_curve.json    precision / recall per Hamming radius (read by scripts/compare_runs.py --plot)
    report/hamming_hist.json  intra / inter-class distance histograms
    report/pr_curve.png     precision–recall over Hamming radius
    report/radius_curve.png precision (both empty-lookup rules), recall and the share of queries that
                            retrieve anything, against the radius r = 0..bits
    report/hamming_hist.png intra / inter-class Hamming distance histograms with the gap (OrthoHash Fig. 3)
    report/bit_balance.png  mean of each bit, and |correlation| between bits
    report/training_curves.png  loss and mAP per epoch, when <out_dir>/train_log.csv exists
    report/report.md        the numbers and the pictures (relative links; renders on GitHub)

`compute_report` computes the numbers (the metrics dict and the curves), `write_report` calls it and
writes the files; the pictures are drawn by `utils.report.plots`. All ranking, metrics and the sign rule
(`retrieval.binarize`) go through `utils.retrieval`; no Paddle here. Query / database codes are the
continuous network outputs (their sign is the binary code; bit 1 where > 0) or already-binary codes
with ``continuous=False`` (then there is no quantisation error).
"""
import contextlib
import logging
import math
import os
import time

import numpy as np

from utils import retrieval
from utils.report import diagnostics
from utils.report.evaluation import (bytes_per_item, open_set_metrics, query_cost, radius_r_metrics,
                                     report_ks)
from utils.errors import UserError
from utils.fileio import write_json, write_text
from utils.rundir import RunDir
from utils.report.plots import (_arr, plot_bit_balance, plot_hamming_hist, plot_pr_curves, plot_radius_curve,
                                plot_training_curves)

log = logging.getLogger("deephash")

__all__ = ["write_report", "compute_report", "plot_training_curves", "plot_pr_curves", "plot_hamming_hist",
           "plot_bit_balance", "load_pr_curve"]



# ------------------------------------------------------------------------------------------ helpers
def _clean(obj):
    """numpy → plain Python for JSON; NaN / inf → None (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_clean(v) for v in obj.tolist()]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    return obj


def _fmt(v, digits=4):
    if v is None:
        return "–"
    if isinstance(v, (bool, np.bool_)):
        return str(v)
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, float) and not math.isfinite(v):
        return "–"
    return f"{v:.{digits}f}"


def _title(method, bit, dataset):
    parts = [p for p in (method, f"{bit} bits" if bit else None, dataset) if p]
    return ", ".join(parts)


def load_pr_curve(path):
    """report/pr_curve.json → dict with float arrays precision, recall, radius (NaN for null)."""
    import json

    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    for k in ("precision", "recall"):
        if not isinstance(data.get(k), list):
            raise ValueError(f"missing list {k!r}")
        data[k] = _arr(data[k])
    data["radius"] = np.asarray(data.get("radius") or np.arange(len(data["precision"])))
    return data


class _Timings(dict):
    """Seconds per step, in the order the steps ran: ``with timings("map"): ...`` records timings["map"]."""

    @contextlib.contextmanager
    def __call__(self, name):
        t0 = time.time()
        yield
        self[name] = round(time.time() - t0, 3)


# ------------------------------------------------------------------------------------------ report
def compute_report(query_codes, db_codes, query_labels, db_labels, topk=None, method="", bit=None,
                   codebook=None, continuous=True, extra=None, *, dataset=None, map_value=None,
                   map_tie_aware=None, max_pairs=diagnostics.DEFAULT_MAX_PAIRS,
                   max_corr_codes=diagnostics.DEFAULT_MAX_CORR_CODES, seed=0, stats=None, per_query_ap=None,
                   per_query_ap_tie=None, unseen_classes=None, cost=None, lists_sha256=None, unseen_names=None):
    """The report's numbers, nothing written → (metrics, curves).

    metrics: the dict of report/metrics.json without "files" (numpy values, not yet JSON-cleaned), its
    "timings_seconds" holding the time of each step. curves: what the data files and pictures need beyond
    it, {"pr": PRCurve, "hamming_hist": the full histograms, "bit_correlation": the bits × bits matrix}.
    Arguments as in `write_report`.
    """
    timings = _Timings()
    q, d = np.asarray(query_codes), np.asarray(db_codes)
    if q.ndim != 2 or d.ndim != 2 or q.shape[1] != d.shape[1]:
        raise ValueError(f"query codes {q.shape} and database codes {d.shape} must be (n, bits) with equal bits")
    bit = int(bit or d.shape[1])
    if bit != d.shape[1]:
        raise ValueError(f"bit={bit} but the codes have {d.shape[1]} bits")
    topk = None if topk is None or int(topk) == -1 else int(topk)
    k_eff = len(d) if topk is None else min(topk, len(d))
    ks = report_ks(topk, len(d))

    qb, db = retrieval.binarize(q), retrieval.binarize(d)
    ql, dl = np.asarray(query_labels), np.asarray(db_labels)

    # --- retrieval metrics (utils.retrieval)
    with timings("map"):
        if map_value is None:
            map_value = retrieval.mean_average_precision(qb, db, ql, dl, topk=topk)
        if map_tie_aware is None:
            map_tie_aware = retrieval.mean_average_precision(qb, db, ql, dl, topk=topk, tie_aware=True)
    with timings("map_random_codes"):
        map_random = diagnostics.random_code_map(ql, dl, bit, topk=topk, seed=seed)
    with timings("rank_stats"):  # one pass: precision/recall@k, radius curve, radius 2, MAP@R, R-precision
        if stats is None:
            stats = retrieval.rank_stats(qb, db, ql, dl, ks)
        elif [int(k) for k in stats.ks] != ks:
            raise ValueError(f"stats were computed for k = {list(stats.ks)}, the report needs {ks} (report_ks)")
        prec, rec = stats.precision_recall_at_k()
        pr, pr_zero = stats.radius_curve()
        ranked = radius_r_metrics(stats)
    open_set = None
    if unseen_classes:
        with timings("open_set"):
            if per_query_ap is None:
                per_query_ap = retrieval.mean_average_precision(qb, db, ql, dl, topk=topk, return_per_query=True)[1]
            if per_query_ap_tie is None:
                per_query_ap_tie = retrieval.mean_average_precision(qb, db, ql, dl, topk=topk, tie_aware=True,
                                                                    return_per_query=True)[1]
            open_set = open_set_metrics(ql, unseen_classes, per_query_ap, per_query_ap_tie, stats, unseen_names)
    cost = dict(cost or {})
    if "query_ms" not in cost:
        with timings("query_time"):
            cost.update(query_cost(qb, db))
    cost = dict({"bytes_per_item": bytes_per_item(bit)}, **cost)

    # --- code diagnostics (utils.report.diagnostics), on the database codes
    with timings("bit_balance"):
        balance = diagnostics.bit_balance(db)
    with timings("bit_correlation"):
        corr = diagnostics.bit_correlation(db, max_codes=max_corr_codes, seed=seed)
    with timings("quantization_error"):
        qerr = diagnostics.quantization_error(d) if continuous else None
    with timings("distinct_codes"):
        n_distinct, distinct_share = diagnostics.distinct_codes(db)
    with timings("hamming_intra_inter"):
        hist = diagnostics.hamming_intra_inter(qb, db, ql, dl, max_pairs=max_pairs, seed=seed)
    with timings("codebook"):
        cb = diagnostics.codebook_stats(codebook, db, dl, max_codes=max_corr_codes, seed=seed) \
            if codebook is not None else None

    labels_per_item = float((dl > 0).sum(axis=1).mean()) if len(dl) else 0.0
    metrics = {
        "method": method, "bit": bit, "dataset": dataset, "topk": -1 if topk is None else topk,
        "num_query": int(len(q)), "num_database": int(len(d)), "num_classes": int(dl.shape[1]),
        "multi_label": bool(((dl > 0).sum(axis=1) > 1).any() or ((ql > 0).sum(axis=1) > 1).any()),
        "map": float(map_value), "map_tie_aware": float(map_tie_aware), "map_random_codes": map_random,
        "precision_at_k": {str(k): float(p) for k, p in zip(ks, prec)},
        "recall_at_k": {str(k): float(r) for k, r in zip(ks, rec)},
        "precision_at_topk": float(prec[ks.index(k_eff)]), "recall_at_topk": float(rec[ks.index(k_eff)]),
        **ranked,
        "open_set": open_set,
        "cost": cost,
        "lists_sha256": lists_sha256,
        "diagnostics": {
            "bit_balance": {"per_bit": balance, "max_abs": float(np.max(np.abs(balance))),
                            "mean_abs": float(np.mean(np.abs(balance)))},
            "bit_correlation": dict({k: v for k, v in corr.items() if k != "matrix"},
                                    max_codes=None if max_corr_codes is None else int(max_corr_codes)),
            "quantization_error": qerr,
            "distinct_codes": {"count": n_distinct, "share": distinct_share},
            "hamming": dict({k: v for k, v in hist.items() if not k.startswith("hist_")}, max_pairs=int(max_pairs)),
            "codebook": cb,
            "labels_per_database_item": labels_per_item,
        },
        "extra": extra or {},
        "timings_seconds": timings,
    }
    return metrics, {"pr": pr, "pr_empty_zero": pr_zero, "hamming_hist": hist, "bit_correlation": corr["matrix"]}


def _write_pictures(rdir, metrics, curves, title, train_log):
    """pr_curve.json, hamming_hist.json and the PNGs into rdir → {picture name: PNG path}."""
    method, dataset, pr, hist = metrics["method"], metrics["dataset"], curves["pr"], curves["hamming_hist"]
    write_json(os.path.join(rdir, "pr_curve.json"), _clean({
        "method": method, "bit": metrics["bit"], "dataset": dataset, "radius": pr.radius,
        "precision": pr.precision, "recall": pr.recall, "n_queries": pr.n_queries,
        "precision_empty_zero": curves["pr_empty_zero"], "num_query": metrics["num_query"]}))
    write_json(os.path.join(rdir, "hamming_hist.json"), _clean(dict(hist, method=method, dataset=dataset)))
    images = {}
    images["pr_curve"] = plot_pr_curves(
        [{"label": title or "run", "precision": pr.precision, "recall": pr.recall, "radius": pr.radius}],
        os.path.join(rdir, "pr_curve.png"), title=title, by_radius=False)
    images["radius_curve"] = plot_radius_curve(pr.radius, pr.precision, curves["pr_empty_zero"], pr.recall,
                                               pr.n_queries / max(1, metrics["num_query"]),
                                               os.path.join(rdir, "radius_curve.png"), title=title)
    images["hamming_hist"] = plot_hamming_hist(hist, os.path.join(rdir, "hamming_hist.png"), title=title)
    images["bit_balance"] = plot_bit_balance(metrics["diagnostics"]["bit_balance"]["per_bit"],
                                             curves["bit_correlation"], os.path.join(rdir, "bit_balance.png"),
                                             title=title)
    if os.path.isfile(train_log):
        try:
            images["training_curves"] = plot_training_curves(train_log, os.path.join(rdir, "training_curves.png"))
        except UserError as exc:  # a report without the training curves beats no report
            log.warning("report: training curves skipped: %s", exc)
    return images


def write_report(out_dir, query_codes, db_codes, query_labels, db_labels, topk=None, method="", bit=None,
                 codebook=None, continuous=True, extra=None, *, dataset=None, map_value=None,
                 map_tie_aware=None, train_log=None, max_pairs=diagnostics.DEFAULT_MAX_PAIRS,
                 max_corr_codes=diagnostics.DEFAULT_MAX_CORR_CODES, seed=0, stats=None, per_query_ap=None,
                 per_query_ap_tie=None, unseen_classes=None, cost=None, lists_sha256=None, unseen_names=None):
    """Write `<out_dir>/report/` (see the module docstring); return the metrics dict (as in metrics.json).

    query_codes (nq, bits), db_codes (n_db, bits): continuous outputs (sign → binary code), or binary
    codes with continuous=False. query_labels / db_labels: 0/1 (n, C). topk: mAP / precision / recall cut
    (None or -1: the whole database). codebook: (C, bits) ±1 targets of codebook methods (OrthoHash).
    map_value / map_tie_aware: pass the engine's values to skip recomputing them (the two mAP passes are
    most of the cost on a large database). train_log: path of a train_log.csv to plot (default
    <out_dir>/train_log.csv when it exists). extra: JSON-able dict stored under "extra" and listed in
    report.md (epoch, backbone, checkpoint, ...). max_pairs / max_corr_codes / seed: sampling of the
    distance histograms and the bit correlation (see utils.report.diagnostics).
    stats: a `utils.retrieval.rank_stats` result for ks = `report_ks(topk, n_db)` (the engine's, to skip
    the pass). unseen_classes: class indices no training image has (open-set lists; the engine derives
    them from train.txt) → seen / unseen-class mAP, from per_query_ap / per_query_ap_tie when given
    (unseen_names: their names, for report.md). cost:
    {"encode_images_per_second", "encode_runtime", "query_ms", ...} measured by the caller (query time is
    measured here when absent). lists_sha256: {list name: sha256}, stored as given.
    """
    t_start = time.time()
    metrics, curves = compute_report(query_codes, db_codes, query_labels, db_labels, topk, method, bit, codebook,
                                     continuous, extra, dataset=dataset, map_value=map_value,
                                     map_tie_aware=map_tie_aware, max_pairs=max_pairs,
                                     max_corr_codes=max_corr_codes, seed=seed, stats=stats,
                                     per_query_ap=per_query_ap, per_query_ap_tie=per_query_ap_tie,
                                     unseen_classes=unseen_classes, cost=cost, lists_sha256=lists_sha256,
                                     unseen_names=unseen_names)
    run = RunDir(out_dir)
    rdir = run.report
    os.makedirs(rdir, exist_ok=True)
    timings = metrics["timings_seconds"]
    with timings("plots"):
        images = _write_pictures(rdir, metrics, curves, _title(method, metrics["bit"], dataset),
                                 train_log or run.train_csv)
    timings["total"] = round(time.time() - t_start, 3)
    metrics["files"] = sorted(os.path.basename(p) for p in images.values()) + [
        "hamming_hist.json", "pr_curve.json", "report.md"]
    metrics = _clean(metrics)
    write_json(run.report_metrics, metrics)
    write_text(os.path.join(rdir, "report.md"), render_markdown(metrics, {k: os.path.basename(v)
                                                                          for k, v in images.items()}))
    log.info("report: %s (%.1fs: %s)", rdir, timings["total"],
             ", ".join(f"{k} {v:.2f}s" for k, v in timings.items() if k != "total"))
    return metrics


def render_markdown(m, images):
    """metrics dict (as in report/metrics.json) + {name: png file name} → report.md text."""
    dg = m["diagnostics"]
    topk = "all" if m["topk"] == -1 else m["topk"]
    title = _title(m["method"], m["bit"], m["dataset"]) or "run"
    relevance = "multi-label: relevant = shares at least one label" if m["multi_label"] else \
        "single-label: relevant = same class"
    out = [f"# Evaluation report: {title}", "",
           f"{m['num_query']:,} queries against {m['num_database']:,} database items, {m['num_classes']} classes "
           f"({relevance}). "
           "Binary code = sign of the network output (bit 1 where > 0).", "",
           "## Retrieval", "", "| metric | value |", "|---|---|",
           f"| mAP@{topk} (ties by database index) | {_fmt(m['map'])} |",
           f"| mAP@{topk} (tie-aware, expected over tie orders) | {_fmt(m['map_tie_aware'])} |"]
    if m.get("map_random_codes") is not None:
        out.append(f"| mAP@{topk} of random codes (chance level) | {_fmt(m['map_random_codes'])} |")
    for k, p in m["precision_at_k"].items():
        out.append(f"| precision@{k} | {_fmt(p)} |")
    out.append(f"| recall@{topk} | {_fmt(m['recall_at_topk'])} |")
    if "map_at_r" in m:
        out += [f"| precision within Hamming radius 2 (empty lookup = 0) | {_fmt(m['precision_at_radius_2'])} |",
                f"| precision within Hamming radius 2 (queries that retrieve something) | "
                f"{_fmt(m['precision_at_radius_2_nonempty'])} |",
                f"| share of queries retrieving anything within radius 2 | "
                f"{_fmt(m['queries_retrieving_at_radius_2'])} |",
                f"| recall within Hamming radius 2 | {_fmt(m['recall_at_radius_2'])} |",
                f"| MAP@R | {_fmt(m['map_at_r'])} |",
                f"| R-precision | {_fmt(m['r_precision'])} |"]
    os_ = m.get("open_set")
    if os_:
        names = os_.get("unseen_class_names") or [None] * len(os_["unseen_classes"])
        unseen_label = [f"{n} (column {c})" if n else str(c) for c, n in zip(os_["unseen_classes"], names)]
        out += ["", "## Open set: seen and unseen classes", "",
                f"Unseen classes (no training image has them, read from train.txt): "
                f"{', '.join(unseen_label)}. A query is unseen when it holds at least one of them.", "",
                f"| queries | n | mAP@{topk} | mAP@{topk} (tie-aware) | MAP@R |", "|---|---:|---:|---:|---:|"]
        for name in ("seen", "unseen"):
            g = os_[name]
            out.append(f"| {name} | {_fmt(g['num_query'])} | {_fmt(g['map'])} | {_fmt(g['map_tie_aware'])} | "
                       f"{_fmt(g.get('map_at_r'))} |")
    c = m.get("cost")
    if c:
        out += ["", "## Cost", "", "| cost | value |", "|---|---|",
                f"| bytes per database item (packed code) | {_fmt(c['bytes_per_item'])} |"]
        if c.get("encode_images_per_second") is not None:
            out.append(f"| encode images/s ({c.get('encode_runtime', 'runtime')}) | "
                       f"{_fmt(c['encode_images_per_second'], 1)} |")
        if c.get("query_ms") is not None:
            out.append(f"| query time, exact top-{c.get('query_k')} over {m['num_database']:,} items "
                       f"({c.get('query_backend')}) | {_fmt(c['query_ms'], 3)} ms/query |")
    bal, cor, ham = dg["bit_balance"], dg["bit_correlation"], dg["hamming"]
    q, dc, cb = dg["quantization_error"], dg["distinct_codes"], dg["codebook"]
    rows = [
        ("intra-class mean Hamming distance E[D_intra]", _fmt(ham["mean_intra"], 2), "low"),
        ("inter-class mean Hamming distance E[D_inter]", _fmt(ham["mean_inter"], 2), f"high (≤ {m['bit']})"),
        ("**gap** E[D_inter] − E[D_intra]", f"**{_fmt(ham['gap'], 2)}**", "large: the larger, the better the mAP"),
        ("bit balance: max \\|mean of a bit\\|", _fmt(bal["max_abs"], 3), "0 (each bit ±1 equally often)"),
        ("bit balance: mean \\|mean of a bit\\|", _fmt(bal["mean_abs"], 3), "0"),
        ("bit correlation: mean \\|corr\\| (off-diagonal)", _fmt(cor["mean_abs_offdiag"], 3), "0 (independent bits)"),
        ("bit correlation: max \\|corr\\|", _fmt(cor["max_abs_offdiag"], 3), "small; 1 = a duplicated bit"),
        ("constant bits (left out of the correlation)", str(len(cor["constant_bits"])), "0"),
        ("orthogonality: mean \\|(1/N)BᵀB\\| off-diagonal", _fmt(cor["orthogonality_mean_abs"], 3), "0"),
        ("distinct codes / database items", f"{_fmt(dc['count'])} ({_fmt(dc['share'], 3)})",
         "high (low = many items share a code: ties)"),
    ]
    if q is not None:
        rows += [("quantisation error, scale-free (codes rescaled to RMS 1)", _fmt(q["normalized"], 3), "0"),
                 ("quantisation error, raw output (scale depends on the method)", _fmt(q["raw"], 3), "0"),
                 ("quantisation error on tanh(output)", _fmt(q["tanh"], 3), "0")]
    if cb is not None:
        rows += [("codebook: min / mean pairwise Hamming distance",
                  f"{_fmt(cb['min_pairwise'])} / {_fmt(cb['mean_pairwise'], 2)}", f"≈ {m['bit'] // 2} (orthogonal)"),
                 ("database codes whose nearest codebook row is their class", _fmt(cb["nearest_is_own_class"], 3),
                  "1")]
    out += ["", "## Code diagnostics (database codes)", "", "| diagnostic | value | ideal |", "|---|---|---|"]
    out += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    pairs = "all" if ham["exact"] else "sampled"
    out += ["", "## Pictures", "",
            "### Intra- vs inter-class Hamming distances", "",
            f"Distances between query and database codes over {pairs} pairs ({ham['n_intra_pairs']:,} intra, "
            f"{ham['n_inter_pairs']:,} inter); each histogram sums to 1. Good codes put the blue mass (relevant "
            "pairs) far left of the red (irrelevant pairs); overlap is what ranking cannot separate.", "",
            f"![Hamming distance histograms]({images['hamming_hist']})", "",
            "### Precision–recall over Hamming radius", "",
            "Retrieving every database item within Hamming distance r of the query, for r = 0..bits. In the "
            "precision–recall chart (left), precision at a radius averages the queries that retrieve at least one "
            "item; the radius chart (right) also shows precision with an empty lookup counted 0 and the share of "
            "queries that retrieve anything.", "",
            "| precision–recall | against the radius |", "|---|---|",
            f"| ![Precision-recall curve]({images['pr_curve']}) | ![Radius curve]({images['radius_curve']}) |", "",
            "### Bit balance and bit correlation", "",
            f"![Bit balance and correlation]({images['bit_balance']})", ""]
    if "training_curves" in images:
        out += ["### Training curves", "", f"![Training curves]({images['training_curves']})", ""]
    if m.get("lists_sha256"):
        out += ["## Lists", "", "| list | sha256 |", "|---|---|"]
        out += [f"| {k} | `{v}` |" for k, v in m["lists_sha256"].items()]
        out.append("")
    if m.get("extra"):
        out += ["## Run", "", "| key | value |", "|---|---|"]
        out += [f"| {k} | {v} |" for k, v in m["extra"].items()]
        out.append("")
    out += ["## Definitions", "",
            "- **mAP@k**: ranking by Hamming distance, ties broken by database index; the tie-aware value is "
            "the expected AP over random orders of tied items (utils/retrieval/).",
            "- **precision / recall within Hamming radius 2**: over the database items at distance ≤ 2 of the "
            "query. A query that retrieves nothing counts precision 0 (thulab/DeepHash's evaluation); the "
            "\"retrieve something\" row averages only the others. Recall averages the queries with at least one "
            "relevant database item.",
            "- **MAP@R** and **R-precision** (Musgrave et al. 2020): R = the number of database items relevant to "
            "the query; AP@R = (1/R) Σ_{i≤R} P@i·rel(i), R-precision = relevant in the top R / R, ties by database "
            "index, averaged over the queries with R > 0 (utils/retrieval/metrics.py).",
            "- **Bit balance**: mean of each ±1 bit over the database codes.",
            f"- **Bit correlation**: Pearson correlation between bits over {cor['n_codes']:,} database codes "
            f"(sampled above {_fmt(cor.get('max_codes'))}); a constant bit has no correlation and is excluded "
            "(counted as constant). "
            "Orthogonality is the uncentred (1/N)BᵀB of the slides, which unbalanced bits also raise.",
            "- **Quantisation error**: mean \\|u − sign(u)\\| per entry. The scale-free value first rescales each "
            "code to RMS 1 (u·√bits/‖u‖), so methods with differently scaled outputs (HashNet: raw linear "
            "output; "
            "OrthoHash: batch-normalised) compare; the raw value does not.",
            "- **Intra / inter-class distances**: relevant pairs share at least one label (single-label: same "
            f"class). Above {_fmt(ham.get('max_pairs'))} query–database pairs they are sampled (seeded): inter "
            "pairs uniformly, intra pairs "
            "per query through one of its labels, reweighted to the distribution over all relevant pairs.",
            ""]
    return "\n".join(out)
