"""Evaluation: encode the query and database lists (every process's shard gathered) and rank them
(utils.retrieval) into a typed `EvalResult`; it becomes a dict only where it is written (metrics.json,
the report)."""
import logging
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
import paddle
from tqdm import tqdm

from utils import retrieval
from utils.report.evaluation import open_set_metrics, query_cost, radius_r_metrics, report_ks
from utils.train.data import BadImages

log = logging.getLogger("deephash")


@dataclass
class EvalResult:
    """One evaluation of a model on the query (test) and database lists.

    `map` is mAP@topK with ties broken by database index, `map_tie_aware` its expectation over random
    tie orders; `ap` / `ap_tie` their per-query values. Codes are the continuous codes (float32, one row
    per list position in `*_indices`, their labels in `*_labels`). `ranked`: precision / recall within
    Hamming radius 2, MAP@R and R-precision (utils.report.evaluation.radius_r_metrics); `open_set`: seen /
    unseen-class mAP on open-set lists, else None; `stats`: the ranking statistics behind them; `cost`:
    encoding speed and the query cost written to metrics.json. The timings are wall seconds."""

    map: float
    map_tie_aware: float
    query_codes: np.ndarray
    query_indices: np.ndarray
    query_labels: np.ndarray
    db_codes: np.ndarray
    db_indices: np.ndarray
    db_labels: np.ndarray
    ap: np.ndarray
    ap_tie: np.ndarray
    stats: object
    ranked: dict
    open_set: Optional[dict]
    cost: dict
    encode_seconds: float  # the database's encoding
    map_seconds: float  # both mAPs
    rank_seconds: float  # radius 2, MAP@R, R-precision, open set

    @property
    def num_query(self):
        return int(len(self.query_codes))

    @property
    def num_database(self):
        return int(len(self.db_codes))


@paddle.no_grad()
def encode(model, loader, dataset, env, skip_bad, bit, desc):
    """Continuous codes of a whole list, gathered from every process: (codes float32 (n, bit), list positions)."""
    model.eval()
    bad = BadImages(dataset, skip_bad)
    codes, indices = [], []
    for img, label, idx, ok in tqdm(loader, desc=desc, disable=not env.is_main, leave=False, mininterval=2):
        kept = bad.filter(img, label, idx, ok)
        if kept is None:
            continue
        img, _, idx = kept
        codes.append(model(img).numpy())
        indices.append(idx.numpy())
    codes = np.concatenate(codes) if codes else np.zeros((0, bit), np.float32)
    indices = np.concatenate(indices) if indices else np.zeros((0,), np.int64)
    if env.distributed:  # each rank encoded its shard (padded to equal size): merge and de-duplicate
        parts = env.gather_object((codes, indices))
        codes = np.concatenate([p[0] for p in parts])
        indices = np.concatenate([p[1] for p in parts])
    indices, first = np.unique(indices, return_index=True)
    return codes[first], indices


def evaluate(model, data, cfg, env):
    """Encode queries and database; mAP@topK (ties by database index) and tie-aware mAP, the radius and
    R-based metrics (utils.report.evaluation), seen / unseen-class mAP on open-set lists, and the cost."""
    q, qi = encode(model, data.loaders["test"], data.sets["test"], env, cfg["skip_bad_images"], cfg["bit"],
                   "encode query")
    t = time.time()
    d, di = encode(model, data.loaders["database"], data.sets["database"], env, cfg["skip_bad_images"], cfg["bit"],
                   "encode database")
    encode_seconds = time.time() - t
    q_labels, d_labels = data.lists["test"].labels[qi], data.lists["database"].labels[di]
    topk = None if cfg["topk"] == -1 else cfg["topk"]
    t = time.time()
    m, ap = retrieval.mean_average_precision(q, d, q_labels, d_labels, topk=topk, return_per_query=True)
    m_tie, ap_tie = retrieval.mean_average_precision(q, d, q_labels, d_labels, topk=topk, tie_aware=True,
                                                     return_per_query=True)
    t_map = time.time() - t
    t = time.time()
    qb, db = retrieval.binarize(q), retrieval.binarize(d)
    stats = retrieval.rank_stats(qb, db, q_labels, d_labels, report_ks(topk, len(d)))
    ranked = radius_r_metrics(stats)
    open_set = open_set_metrics(q_labels, data.unseen_classes, ap, ap_tie, stats, data.unseen_names) \
        if data.unseen_classes else None
    t_rank = time.time() - t
    cost = {"encode_images_per_second": len(d) / max(encode_seconds, 1e-9),
            "encode_runtime": f"dygraph ({env.device}, {env.world_size} process(es), batch {cfg['batch_size']})",
            **query_cost(qb, db)}
    log.info("ranked %d queries against %d database images in %.2fs (mAP) + %.2fs (radius 2, MAP@R, R-precision)",
             len(q), len(d), t_map, t_rank)
    log.info("precision@r2 %.4f  recall@r2 %.4f  MAP@R %.4f  R-precision %.4f", ranked["precision_at_radius_2"],
             ranked["recall_at_radius_2"], ranked["map_at_r"], ranked["r_precision"])
    if open_set:
        log.info("open set: mAP seen %.4f (%d queries), unseen %.4f (%d queries)", open_set["seen"]["map"],
                 open_set["seen"]["num_query"], open_set["unseen"]["map"], open_set["unseen"]["num_query"])
    return EvalResult(map=float(m), map_tie_aware=float(m_tie), query_codes=q, query_indices=qi, query_labels=q_labels,
                      db_codes=d, db_indices=di, db_labels=d_labels, ap=ap, ap_tie=ap_tie, stats=stats, ranked=ranked,
                      open_set=open_set, cost=cost, encode_seconds=encode_seconds, map_seconds=t_map,
                      rank_seconds=t_rank)
