"""The evaluation's numbers beyond mAP, shared by the training engine (metrics.json after every
evaluation) and the report (report/metrics.json, report.md): radius and R-based metrics from one
`utils.retrieval.rank_stats` pass, open-set (seen / unseen class) mAP, and cost (bytes per item, query
time). Definitions: `utils.retrieval.metrics`. numpy only.
"""
import time

import numpy as np

from utils import retrieval

REPORT_KS = (1, 10, 100)  # precision@k / recall@k cut-offs, plus the evaluation's topK
RADIUS = 2  # the Hamming radius of precision/recall@radius (HashNet / DHN / DCH tables)
QUERY_K = 10  # the query-time measurement: exact top-10 search of every query


def report_ks(topk, n_db):
    """The k of precision@k / recall@k: 1, 10, 100 and topK (each at most n_db), sorted."""
    k_eff = n_db if topk in (None, -1) else min(int(topk), n_db)
    return sorted({min(k, n_db) for k in REPORT_KS} | {k_eff})


def radius_r_metrics(stats, radius=RADIUS):
    """RankStats → the flat dict stored in metrics.json (names as in README "The evaluation protocol")."""
    n_rel = stats.n_relevant
    return {
        f"precision_at_radius_{radius}": stats.precision_at_radius(radius, "zero"),
        f"precision_at_radius_{radius}_nonempty": stats.precision_at_radius(radius, "exclude"),
        f"queries_retrieving_at_radius_{radius}": stats.share_retrieving(radius),
        f"recall_at_radius_{radius}": stats.recall_at_radius(radius),
        "map_at_r": stats.map_at_r(),
        "r_precision": stats.r_precision(),
        "queries_without_relevant": int((n_rel == 0).sum()),
    }


def unseen_classes_from_train(train_labels, query_labels, db_labels):
    """Classes that label no training image but some query or database image (the open-set protocol of
    scripts/build_lists.py --unseen-classes), as sorted ints; [] for a closed-set split."""
    train = np.asarray(train_labels) > 0
    present = (np.asarray(query_labels) > 0).any(axis=0) | (np.asarray(db_labels) > 0).any(axis=0)
    return [int(c) for c in np.flatnonzero(present & ~train.any(axis=0))]


def open_set_metrics(query_labels, unseen_classes, ap, ap_tie, stats=None, names=None):
    """mAP (plain and tie-aware, from per-query AP) and MAP@R on the queries of seen and of unseen classes.

    A query is unseen when it holds at least one unseen class (`utils.retrieval.query_groups`). names:
    the unseen classes' names (classes.txt of the lists), stored beside their column indices.
    """
    groups = retrieval.query_groups(query_labels, unseen_classes)
    out = {"unseen_classes": [int(c) for c in unseen_classes],
           "unseen_class_names": list(names) if names else None,
           "rule": "unseen query: holds at least one class no training image has; seen: all its classes trained"}
    for name, mask in groups.items():
        part = {"num_query": int(mask.sum()), "map": retrieval.subset_mean(ap, mask),
                "map_tie_aware": retrieval.subset_mean(ap_tie, mask)}
        if stats is not None:
            has = mask & (stats.n_relevant > 0)
            part["map_at_r"] = float(stats.ap_at_r[has].mean()) if has.any() else float("nan")
        out[name] = part
    return out


def query_cost(query_b, db_b, k=QUERY_K, min_seconds=0.2):
    """Exact Hamming top-k search of every query against the database (utils.retrieval.HammingIndex,
    backend auto), after one warm-up query → {"query_ms": per query, "query_k", "query_backend"}.
    Repeats the whole query set until min_seconds have passed so that small sets are measurable."""
    index = retrieval.HammingIndex(db_b)
    index.search(query_b[:1], k)  # compile / load the kernel once, outside the timing
    n, t0 = 0, time.perf_counter()
    while True:
        index.search(query_b, k)
        n += len(query_b)
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds:
            break
    return {"query_ms": 1000.0 * elapsed / max(n, 1), "query_k": int(min(k, len(db_b))),
            "query_backend": index.backend}


def bytes_per_item(bits):
    """Storage of one packed binary code."""
    return (int(bits) + 7) // 8
