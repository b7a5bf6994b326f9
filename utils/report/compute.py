"""The report's numbers, nothing written: `compute_report` → (the metrics dict of report/metrics.json,
the curves the data files and pictures need). Retrieval metrics and the sign rule come from
`utils.retrieval`, radius / R-based / open-set metrics and cost from `utils.report.evaluation`, code
diagnostics from `utils.report.diagnostics`. numpy only."""
import contextlib
import time

import numpy as np

from utils import retrieval
import utils.report.diagnostics as diagnostics  # not `from utils.report import`: that is the facade
from utils.report.evaluation import (bytes_per_item, open_set_metrics, query_cost, radius_r_metrics,
                                     report_ks)


class _Timings(dict):
    """Seconds per step, in the order the steps ran: ``with timings("map"): ...`` records timings["map"]."""

    @contextlib.contextmanager
    def __call__(self, name):
        t0 = time.time()
        yield
        self[name] = round(time.time() - t0, 3)


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
