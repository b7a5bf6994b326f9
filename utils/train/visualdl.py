"""`--visualdl DIR`: a VisualDL log of the training run (view it with `visualdl --logdir DIR`).

Per epoch: `train/loss`, `train/lr`; at each evaluation: `eval/mAP`, `eval/mAP_tie_aware`, the
histograms `codes/continuous` (the database's continuous codes) and `codes/bit_mean` (the mean of each
bit's ±1 value over the database: 0 is a balanced bit), and the PR curve `eval/pr_hamming` over
query-database pairs by Hamming distance (a pair is retrieved at threshold t when its distance is <= t,
relevant when the two share a label; every pair, one point per distance). visualdl is an optional
dependency (requirements-test.txt).
"""
import time

import numpy as np

from utils.errors import UserError

BLOCK = 4_000_000  # query x database pairs per block when counting the PR curve


def hamming_pr_counts(query_codes, db_codes, query_labels, db_labels):
    """(tp, fp, tn, fn) arrays over thresholds in VisualDL's order (index i: distance <= bit - i), counted
    over every query-database pair."""
    bq = np.where(np.asarray(query_codes) > 0, 1.0, -1.0).astype(np.float32)
    bd = np.where(np.asarray(db_codes) > 0, 1.0, -1.0).astype(np.float32)
    ql, dl = np.asarray(query_labels, np.float32), np.asarray(db_labels, np.float32)
    bit = bd.shape[1]
    rel, irr = np.zeros(bit + 1, np.int64), np.zeros(bit + 1, np.int64)
    step = max(1, BLOCK // max(1, len(bd)))
    for start in range(0, len(bq), step):
        dist = np.rint((bit - bq[start:start + step] @ bd.T) / 2).astype(np.int64)
        relevant = (ql[start:start + step] @ dl.T) > 0
        rel += np.bincount(dist[relevant], minlength=bit + 1)
        irr += np.bincount(dist[~relevant], minlength=bit + 1)
    tp, fp = np.cumsum(rel)[::-1], np.cumsum(irr)[::-1]
    return tp, fp, irr.sum() - fp, rel.sum() - tp


class VisualDLLog:
    """Does nothing when `logdir` is None (no flag, or not the main process)."""

    def __init__(self, logdir):
        self.writer = None
        if not logdir:
            return
        try:
            from visualdl import LogWriter
        except ImportError:
            raise UserError(f"--visualdl {logdir}: the visualdl package is not installed; "
                            "pip install visualdl==2.5.3 (or drop --visualdl)")
        self.writer = LogWriter(logdir=logdir)

    def epoch(self, row, result=None):
        """One train_log.csv `row`; with the epoch's evaluation `result` (utils.train.evaluator.EvalResult),
        also mAP, code histograms and the PR curve."""
        if self.writer is None:
            return
        w, step = self.writer, int(row["epoch"])
        w.add_scalar("train/loss", float(row["loss"]), step)
        w.add_scalar("train/lr", float(row["lr"]), step)
        if result is None:
            return
        w.add_scalar("eval/mAP", float(result.map), step)
        w.add_scalar("eval/mAP_tie_aware", float(result.map_tie_aware), step)
        db = np.asarray(result.db_codes, np.float32)
        w.add_histogram("codes/continuous", db.ravel(), step, buckets=50)
        w.add_histogram("codes/bit_mean", np.where(db > 0, 1.0, -1.0).mean(axis=0), step, buckets=20)
        tp, fp, tn, fn = hamming_pr_counts(result.query_codes, db, result.query_labels, result.db_labels)
        precision, recall = tp / np.maximum(tp + fp, 1e-7), tp / np.maximum(tp + fn, 1e-7)
        # visualdl 2.5.3's add_pr_curve uses np.float (gone in numpy 2): write the curve's record directly
        from visualdl.component.base_component import pr_curve_raw

        w._get_file_writer().add_record(pr_curve_raw(
            "eval/pr_hamming", tp.tolist(), fp.tolist(), tn.tolist(), fn.tolist(), precision.tolist(),
            recall.tolist(), step, round(time.time() * 1000)))
        w.flush()

    def close(self):
        if self.writer is not None:
            self.writer.close()
