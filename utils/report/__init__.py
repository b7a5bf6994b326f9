"""Evaluation report: retrieval metrics, code diagnostics and their pictures in `<out_dir>/report/`.

    write_report(out_dir, query_codes, db_codes, query_labels, db_labels, topk=1000, method="orthohash",
                 bit=64, codebook=codebook)

writes, atomically:

    report/metrics.json     mAP@topK (ties by index) and tie-aware, precision@k (k = 1, 10, 100, topK),
                            recall@topK, diagnostics (utils.report.diagnostics), timings
    report/pr_curve.json    precision / recall per Hamming radius (read by scripts/compare_runs.py --plot)
    report/hamming_hist.json  intra / inter-class distance histograms
    report/pr_curve.png     precision–recall over Hamming radius, and both against the radius
    report/hamming_hist.png intra / inter-class Hamming distance histograms with the gap (OrthoHash Fig. 3)
    report/bit_balance.png  mean of each bit, and |correlation| between bits
    report/training_curves.png  loss and mAP per epoch, when <out_dir>/train_log.csv exists
    report/report.md        the numbers and the pictures (relative links; renders on GitHub)

All ranking and metrics go through `utils.retrieval`; no Paddle here. Query / database codes are the
continuous network outputs (their sign is the binary code; bit 1 where > 0) or already-binary codes
with ``continuous=False`` (then there is no quantisation error).
"""
import csv
import logging
import math
import os
import time

import numpy as np

from utils import retrieval
from utils.report import diagnostics
from utils.errors import UserError
from utils.fileio import write_json, write_text
from utils.report.plots import _save, plt

log = logging.getLogger("deephash")

__all__ = ["write_report", "plot_training_curves", "plot_pr_curves", "plot_hamming_hist", "plot_bit_balance",
           "load_pr_curve", "REPORT_DIR"]

REPORT_DIR = "report"
PRECISION_KS = (1, 10, 100)
INTRA_COLOR, INTER_COLOR = "tab:blue", "tab:red"


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


def _arr(values):
    """JSON list with None → float64 array with NaN."""
    return np.array([np.nan if v is None else v for v in values], np.float64)


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


# ------------------------------------------------------------------------------------------- plots
def plot_pr_curves(curves, png, title=None, by_radius=True):
    """Precision–recall over Hamming radius for one or more runs → PNG.

    curves: list of dicts with "label", "precision", "recall" (per radius 0..bits; NaN where no query
    retrieves anything) and optionally "radius". With by_radius a second panel shows precision (solid)
    and recall (dashed) against the radius.
    """
    ncols = 2 if by_radius else 1
    many = len(curves) > 6  # legend beside the axes, not over the curves
    fig, axes = plt.subplots(1, ncols, figsize=(6.2 * ncols + (3.6 if many else 0), 4.6), squeeze=False)
    ax = axes[0, 0]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    if len(curves) > len(colors):  # one distinct colour per run
        colors = [plt.get_cmap("tab20")(i % 20) for i in range(len(curves))]
    for i, c in enumerate(curves):
        color = colors[i % len(colors)]
        p, r = _arr(c["precision"]), _arr(c["recall"])
        radius = np.arange(len(p)) if c.get("radius") is None else np.asarray(c["radius"])
        ok = np.isfinite(p) & np.isfinite(r)
        ax.plot(r[ok], p[ok], "-o", ms=3, color=color, label=c["label"])
        if len(curves) == 1:  # label the radii whose points are not crowded together
            last = None
            for j in np.nonzero(ok)[0]:
                if last is None or np.hypot(r[j] - r[last], p[j] - p[last]) > 0.09:
                    ax.annotate(f"r={radius[j]}", (r[j], p[j]), textcoords="offset points", xytext=(4, 4),
                                fontsize=7)
                    last = j
        if by_radius:
            axes[0, 1].plot(radius, p, "-", color=color, label=f"precision {c['label']}" if len(curves) > 1 else
                            "precision")
            axes[0, 1].plot(radius, r, "--", color=color, label=f"recall {c['label']}" if len(curves) > 1 else
                            "recall")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title("precision–recall (Hamming ball of radius r)" if by_radius or not title else title)
    if many and not by_radius:
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    else:
        ax.legend(fontsize=8, loc="best")
    if by_radius:
        ax2 = axes[0, 1]
        ax2.set_xlabel("Hamming radius r (retrieve distance ≤ r)")
        ax2.set_ylabel("mean over queries")
        ax2.set_ylim(-0.02, 1.02)
        ax2.grid(alpha=0.3)
        ax2.set_title("precision and recall against the radius")
        ax2.legend(fontsize=8, loc="best")
    if title and by_radius:
        fig.suptitle(title)
    return _save(fig, png)


def plot_hamming_hist(hist, png, title=None):
    """Normalised intra- and inter-class Hamming distance histograms with the gap between their means
    annotated (OrthoHash, Fig. 3). `hist` is the dict from `diagnostics.hamming_intra_inter` (or the
    report's hamming_hist.json)."""
    p_in, p_out = _arr(hist["hist_intra"]), _arr(hist["hist_inter"])
    m_in, m_out = hist.get("mean_intra"), hist.get("mean_inter")
    x = np.arange(len(p_in))
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    for p, m, color, name, n in ((p_in, m_in, INTRA_COLOR, "intra-class (relevant)", hist["n_intra_pairs"]),
                                 (p_out, m_out, INTER_COLOR, "inter-class (irrelevant)", hist["n_inter_pairs"])):
        if np.isfinite(p).any():
            ax.bar(x, np.nan_to_num(p), width=1.0, alpha=0.55, color=color,
                   label=f"{name}: {n:,} pairs, mean {m:.2f} (dashed)")
            ax.axvline(m, color=color, ls="--", lw=1.2)
    top = max(np.nanmax(np.r_[p_in, p_out, 0.0]), 1e-6)
    if m_in is not None and m_out is not None:
        y = top * 1.1
        ax.annotate("", xy=(m_out, y), xytext=(m_in, y), arrowprops=dict(arrowstyle="<->", color="black", lw=1.5))
        ax.text(max(m_in, m_out) + 0.012 * len(x) + 0.3, y, f"gap = E[D_inter] − E[D_intra] = {m_out - m_in:.2f}",
                ha="left", va="center", fontsize=10, fontweight="bold")
    ax.set_ylim(0, top * 1.32)
    ax.set_xlim(-0.5, len(x) - 0.5)
    ax.set_xlabel("Hamming distance between query and database code")
    ax.set_ylabel("share of pairs (each histogram sums to 1)")
    sampled = "all pairs" if hist.get("exact") else "sampled pairs"
    ax.set_title((title + "\n" if title else "") + f"intra- vs inter-class Hamming distances ({sampled})",
                 fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=1, frameon=False)
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, png)


def plot_bit_balance(balance, corr=None, png=None, title=None):
    """Mean of each ±1 bit over the database (0 = balanced), and the |Pearson correlation| between bits
    (grey: a constant bit, no correlation defined)."""
    balance = _arr(balance)
    bits = len(balance)
    ncols = 2 if corr is not None else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6.5 * ncols, 4.4), squeeze=False,
                             gridspec_kw={"width_ratios": [1.4, 1]} if ncols == 2 else None)
    ax = axes[0, 0]
    colors = np.where(np.abs(balance) > 0.5, "tab:red", np.where(np.abs(balance) > 0.2, "tab:orange", "tab:green"))
    ax.bar(np.arange(bits), balance, width=0.85, color=colors)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_ylim(-1.05, 1.05)
    ax.set_xlim(-0.7, bits - 0.3)
    ax.set_xlabel("bit")
    ax.set_ylabel("mean of the ±1 bit over the database")
    mx = np.nanmax(np.abs(balance)) if bits else float("nan")
    ax.set_title(f"bit balance: max |mean| {mx:.3f}, mean |mean| {np.nanmean(np.abs(balance)):.3f}", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    if corr is not None:
        c = np.abs(np.asarray(corr, np.float64))
        c[np.eye(len(c), dtype=bool)] = np.nan  # the diagonal (1) would only hide the scale
        cmap = plt.get_cmap("viridis").with_extremes(bad="lightgrey")
        im = axes[0, 1].imshow(np.ma.masked_invalid(c), vmin=0, vmax=1, cmap=cmap, interpolation="nearest")
        axes[0, 1].set_title("|correlation| between bits (database; grey: diagonal, constant bits)", fontsize=9)
        axes[0, 1].set_xlabel("bit")
        axes[0, 1].set_ylabel("bit")
        fig.colorbar(im, ax=axes[0, 1], fraction=0.046, pad=0.04)
    if title:
        fig.suptitle(title)
    return _save(fig, png)


def _read_train_log(path):
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise UserError(f"{path}: cannot read the training log ({exc.strerror})")
    if not rows or "epoch" not in rows[0] or "loss" not in rows[0]:
        raise UserError(f"{path}: not a train_log.csv (need a header with epoch, loss, map and at least one row)")

    def num(v):
        try:
            return float(v)
        except (TypeError, ValueError):
            return float("nan")

    cols = {k: np.array([num(r.get(k)) for r in rows]) for k in ("epoch", "lr", "loss", "map", "map_tie_aware")}
    return cols


def plot_training_curves(train_log_csv, png):
    """train_log.csv (epoch, lr, loss, map, map_tie_aware, seconds; map empty on epochs without
    evaluation) → loss per epoch and mAP per evaluated epoch, side by side. Returns the PNG path."""
    c = _read_train_log(train_log_csv)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    ok = np.isfinite(c["loss"])
    a1.plot(c["epoch"][ok], c["loss"][ok], "-o", ms=3, color="tab:purple")
    a1.set_xlabel("epoch")
    a1.set_ylabel("training loss (epoch mean)")
    a1.set_title("loss")
    a1.grid(alpha=0.3)
    ev = np.isfinite(c["map"])
    if ev.any():
        a2.plot(c["epoch"][ev], c["map"][ev], "-o", ms=4, label="mAP (ties by index)")
        tie = ev & np.isfinite(c["map_tie_aware"])
        if tie.any():
            a2.plot(c["epoch"][tie], c["map_tie_aware"][tie], "--s", ms=3, label="mAP (tie-aware)")
        best = int(np.nanargmax(np.where(ev, c["map"], np.nan)))
        a2.annotate(f"best {c['map'][best]:.4f}\n(epoch {int(c['epoch'][best])})", (c["epoch"][best], c["map"][best]),
                    textcoords="offset points", xytext=(0, -28), ha="center", fontsize=8)
        a2.legend(fontsize=8)
    else:
        a2.text(0.5, 0.5, "no evaluated epoch yet", ha="center", va="center", transform=a2.transAxes)
    a2.set_xlabel("epoch")
    a2.set_ylabel("mAP")
    a2.set_title("mAP on evaluated epochs")
    a2.grid(alpha=0.3)
    from matplotlib.ticker import MaxNLocator

    if len(c["epoch"]):
        for a in (a1, a2):
            a.xaxis.set_major_locator(MaxNLocator(integer=True))
            a.set_xlim(np.nanmin(c["epoch"]) - 0.5, np.nanmax(c["epoch"]) + 0.5)
    return _save(fig, png)


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


# ------------------------------------------------------------------------------------------ report
def write_report(out_dir, query_codes, db_codes, query_labels, db_labels, topk=None, method="", bit=None,
                 codebook=None, continuous=True, extra=None, *, dataset=None, map_value=None,
                 map_tie_aware=None, train_log=None, max_pairs=diagnostics.DEFAULT_MAX_PAIRS,
                 max_corr_codes=diagnostics.DEFAULT_MAX_CORR_CODES, seed=0):
    """Write `<out_dir>/report/` (see the module docstring); return the metrics dict (as in metrics.json).

    query_codes (nq, bits), db_codes (n_db, bits): continuous outputs (sign → binary code), or binary
    codes with continuous=False. query_labels / db_labels: 0/1 (n, C). topk: mAP / precision / recall cut
    (None or -1: the whole database). codebook: (C, bits) ±1 targets of codebook methods (OrthoHash).
    map_value / map_tie_aware: pass the engine's values to skip recomputing them (the two mAP passes are
    most of the cost on a large database). train_log: path of a train_log.csv to plot (default
    <out_dir>/train_log.csv when it exists). extra: JSON-able dict stored under "extra" and listed in
    report.md (epoch, backbone, checkpoint, ...). max_pairs / max_corr_codes / seed: sampling of the
    distance histograms and the bit correlation (see utils.report.diagnostics).
    """
    t_start = time.time()
    timings = {}

    def lap(name, t0):
        timings[name] = round(time.time() - t0, 3)

    q, d = np.asarray(query_codes), np.asarray(db_codes)
    if q.ndim != 2 or d.ndim != 2 or q.shape[1] != d.shape[1]:
        raise ValueError(f"query codes {q.shape} and database codes {d.shape} must be (n, bits) with equal bits")
    bit = int(bit or d.shape[1])
    if bit != d.shape[1]:
        raise ValueError(f"bit={bit} but the codes have {d.shape[1]} bits")
    topk = None if topk is None or int(topk) == -1 else int(topk)
    k_eff = len(d) if topk is None else min(topk, len(d))
    rdir = os.path.join(out_dir, REPORT_DIR)
    os.makedirs(rdir, exist_ok=True)
    title = _title(method, bit, dataset)

    qb, db = retrieval.binarize(q), retrieval.binarize(d)
    ql, dl = np.asarray(query_labels), np.asarray(db_labels)

    # --- retrieval metrics (utils.retrieval)
    t0 = time.time()
    if map_value is None:
        map_value = retrieval.mean_average_precision(qb, db, ql, dl, topk=topk)
    if map_tie_aware is None:
        map_tie_aware = retrieval.mean_average_precision(qb, db, ql, dl, topk=topk, tie_aware=True)
    lap("map", t0)
    t0 = time.time()
    map_random = diagnostics.random_code_map(ql, dl, bit, topk=topk, seed=seed)
    lap("map_random_codes", t0)
    t0 = time.time()
    ks = sorted({min(k, len(d)) for k in PRECISION_KS} | {k_eff})
    prec, rec = retrieval.precision_recall_at_k(qb, db, ql, dl, ks)
    lap("precision_recall_at_k", t0)
    t0 = time.time()
    pr = retrieval.pr_curve_hamming_radius(qb, db, ql, dl)
    lap("pr_curve", t0)

    # --- code diagnostics (utils.report.diagnostics), on the database codes
    t0 = time.time()
    balance = diagnostics.bit_balance(db)
    lap("bit_balance", t0)
    t0 = time.time()
    corr = diagnostics.bit_correlation(db, max_codes=max_corr_codes, seed=seed)
    lap("bit_correlation", t0)
    t0 = time.time()
    qerr = diagnostics.quantization_error(d) if continuous else None
    lap("quantization_error", t0)
    t0 = time.time()
    n_distinct, distinct_share = diagnostics.distinct_codes(db)
    lap("distinct_codes", t0)
    t0 = time.time()
    hist = diagnostics.hamming_intra_inter(qb, db, ql, dl, max_pairs=max_pairs, seed=seed)
    lap("hamming_intra_inter", t0)
    t0 = time.time()
    cb = diagnostics.codebook_stats(codebook, db, dl, max_codes=max_corr_codes, seed=seed) \
        if codebook is not None else None
    lap("codebook", t0)

    labels_per_item = float((dl > 0).sum(axis=1).mean()) if len(dl) else 0.0
    metrics = {
        "method": method, "bit": bit, "dataset": dataset, "topk": -1 if topk is None else topk,
        "num_query": int(len(q)), "num_database": int(len(d)), "num_classes": int(dl.shape[1]),
        "multi_label": bool(((dl > 0).sum(axis=1) > 1).any() or ((ql > 0).sum(axis=1) > 1).any()),
        "map": float(map_value), "map_tie_aware": float(map_tie_aware), "map_random_codes": map_random,
        "precision_at_k": {str(k): float(p) for k, p in zip(ks, prec)},
        "recall_at_k": {str(k): float(r) for k, r in zip(ks, rec)},
        "precision_at_topk": float(prec[ks.index(k_eff)]), "recall_at_topk": float(rec[ks.index(k_eff)]),
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
    }

    # --- data files and pictures
    t0 = time.time()
    write_json(os.path.join(rdir, "pr_curve.json"), _clean({
        "method": method, "bit": bit, "dataset": dataset, "radius": pr.radius, "precision": pr.precision,
        "recall": pr.recall, "n_queries": pr.n_queries, "num_query": int(len(q))}))
    write_json(os.path.join(rdir, "hamming_hist.json"), _clean(dict(hist, method=method, dataset=dataset)))
    images = {}
    images["pr_curve"] = plot_pr_curves(
        [{"label": title or "run", "precision": pr.precision, "recall": pr.recall, "radius": pr.radius}],
        os.path.join(rdir, "pr_curve.png"), title=title)
    images["hamming_hist"] = plot_hamming_hist(hist, os.path.join(rdir, "hamming_hist.png"), title=title)
    images["bit_balance"] = plot_bit_balance(balance, corr["matrix"], os.path.join(rdir, "bit_balance.png"),
                                             title=title)
    train_log = train_log or os.path.join(out_dir, "train_log.csv")
    if os.path.isfile(train_log):
        try:
            images["training_curves"] = plot_training_curves(train_log, os.path.join(rdir, "training_curves.png"))
        except UserError as exc:  # a report without the training curves beats no report
            log.warning("report: training curves skipped: %s", exc)
    lap("plots", t0)
    timings["total"] = round(time.time() - t_start, 3)
    metrics["timings_seconds"] = timings
    metrics["files"] = sorted(os.path.basename(p) for p in images.values()) + [
        "hamming_hist.json", "pr_curve.json", "report.md"]
    metrics = _clean(metrics)
    write_json(os.path.join(rdir, "metrics.json"), metrics)
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
            "Retrieving every database item within Hamming distance r of the query, for r = 0..bits. Precision "
            "at a radius averages the queries that retrieve at least one item.", "",
            f"![Precision-recall curve]({images['pr_curve']})", "",
            "### Bit balance and bit correlation", "",
            f"![Bit balance and correlation]({images['bit_balance']})", ""]
    if "training_curves" in images:
        out += ["### Training curves", "", f"![Training curves]({images['training_curves']})", ""]
    if m.get("extra"):
        out += ["## Run", "", "| key | value |", "|---|---|"]
        out += [f"| {k} | {v} |" for k, v in m["extra"].items()]
        out.append("")
    out += ["## Definitions", "",
            "- **mAP@k**: ranking by Hamming distance, ties broken by database index; the tie-aware value is "
            "the expected AP over random orders of tied items (utils/retrieval/).",
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
