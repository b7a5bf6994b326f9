"""The report's curve files and pictures: report/pr_curve.json (read back by `load_pr_curve`, e.g. by
scripts/compare_runs.py --plot), report/hamming_hist.json and the PNGs drawn by `utils.report.plots`."""
import logging
import os

import numpy as np

from utils.errors import UserError
from utils.fileio import write_json
from utils.report.jsonable import _clean
from utils.report.plots import (_arr, plot_bit_balance, plot_hamming_hist, plot_pr_curves, plot_radius_curve,
                                plot_training_curves)

log = logging.getLogger("deephash")


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
