"""report/report.md: the metrics dict (as in report/metrics.json) and the pictures' file names → Markdown
with relative links (renders on GitHub). Text only; nothing is computed or written here."""
import math

import numpy as np


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
