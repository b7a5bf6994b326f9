"""Figures (matplotlib, Agg backend, written atomically as PNG): the report's pictures, the training
curves and predict.py's montage."""
import csv
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from utils.data.images import thumbnail  # noqa: E402
from utils.errors import UserError  # noqa: E402
from utils.fileio import atomic_path  # noqa: E402

INTRA_COLOR, INTER_COLOR = "tab:blue", "tab:red"


def _save(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def _arr(values):
    """JSON list with None → float64 array with NaN."""
    return np.array([np.nan if v is None else v for v in values], np.float64)


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


def plot_radius_curve(radius, precision, precision_zero, recall, share, png, title=None):
    """Hamming-ball retrieval against the radius r = 0..bits → PNG: precision over the queries that
    retrieve something (solid), precision with empty lookups counted 0 (dash-dot), recall (dashed), and
    the share of queries that retrieve anything (dotted); radius 2 marked."""
    radius = np.asarray(radius)
    fig, ax = plt.subplots(figsize=(6.2, 4.6))
    ax.plot(radius, _arr(precision), "-", color="tab:blue", label="precision (queries retrieving something)")
    ax.plot(radius, _arr(precision_zero), "-.", color="tab:purple", label="precision (empty lookup = 0)")
    ax.plot(radius, _arr(recall), "--", color="tab:orange", label="recall")
    ax.plot(radius, _arr(share), ":", color="tab:gray", label="share of queries retrieving anything")
    ax.axvline(2, color="black", lw=0.6, alpha=0.5)
    ax.set_xlabel("Hamming radius r (retrieve distance ≤ r)")
    ax.set_ylabel("mean over queries")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(title or "Hamming-ball retrieval against the radius")
    ax.legend(fontsize=8, loc="best")
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


def save_montage(path, query_path, query_labels, hits, thumb=128):
    """The query and its top-k hits (utils.deploy.searcher.Hit: rank, distance, path, labels) in one row
    (wrapping every 6), each with its Hamming distance. When the query's labels are known, a hit sharing
    a label gets a green border, others red."""
    cols = min(6, len(hits) + 1)
    rows = int(np.ceil((len(hits) + 1) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    tiles = [(query_path, "query" + (f"\nlabels {' '.join(map(str, query_labels))}" if query_labels else ""), None)]
    for hit in hits:
        relevant = None if query_labels is None else bool(set(hit.labels) & set(query_labels))
        tiles.append((hit.path, f"#{hit.rank}  d={hit.distance}\n{os.path.basename(hit.path)}", relevant))
    for ax, (p, title, relevant) in zip(axes.flat, tiles):
        ax.imshow(np.asarray(thumbnail(p, thumb)))
        ax.set_title(title, fontsize=7)
        if relevant is not None:
            ax.axis("on")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_edgecolor("green" if relevant else "red")
                spine.set_linewidth(4)
    return _save(fig, path)
