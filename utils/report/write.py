"""`write_report`: compute the report's numbers (utils.report.compute), then write `<out_dir>/report/`:
the curve files and pictures (utils.report.curves), report/metrics.json and report/report.md
(utils.report.markdown), each atomically."""
import logging
import os
import time

from utils.fileio import write_json, write_text
import utils.report.diagnostics as diagnostics  # not `from utils.report import`: that is the facade
from utils.report.compute import compute_report
from utils.report.curves import _write_pictures
from utils.report.jsonable import _clean
from utils.report.markdown import _title, render_markdown
from utils.rundir import RunDir

log = logging.getLogger("deephash")


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
