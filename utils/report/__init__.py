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

`compute_report` (utils.report.compute) computes the numbers (the metrics dict and the curves),
`write_report` (utils.report.write) calls it and writes the files: curve files and pictures
(utils.report.curves, drawn by utils.report.plots), report.md (utils.report.markdown). All ranking,
metrics and the sign rule (`retrieval.binarize`) go through `utils.retrieval`; no Paddle here. Query /
database codes are the continuous network outputs (their sign is the binary code; bit 1 where > 0) or
already-binary codes with ``continuous=False`` (then there is no quantisation error).
"""
from utils.report.compute import compute_report
from utils.report.curves import load_pr_curve
from utils.report.jsonable import _clean  # noqa: F401 - numpy → JSON values (tests)
from utils.report.markdown import render_markdown  # noqa: F401 - report.md text from a metrics dict
from utils.report.plots import plot_bit_balance, plot_hamming_hist, plot_pr_curves, plot_training_curves
from utils.report.write import write_report

__all__ = ["write_report", "compute_report", "plot_training_curves", "plot_pr_curves", "plot_hamming_hist",
           "plot_bit_balance", "load_pr_curve"]
