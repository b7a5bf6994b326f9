"""The contract of a training run's `--output` directory: every file name is spelled here and only here.

    run = RunDir("output/hashnet_64")
    run.best, run.last, run.run_json, run.metrics, run.report, run.database_codes(64)

Training writes it (utils/train), the report adds `report/` (utils/report), and predict.py, the service
and compare_runs.py read it. A leaf module: no imports beyond the standard library.
"""
import os


class RunDir:
    BEST = "best.pdparams"  # weights of the best evaluation, with everything to rebuild the model
    LAST = "last.pdparams"  # the latest state, for --resume
    RUN = "run.json"  # the resolved configuration of the run
    METRICS = "metrics.json"  # last and best mAP, updated after every evaluation
    REPORT = "report"  # the evaluation report folder
    REPORT_METRICS = os.path.join("report", "metrics.json")
    REPORT_MD = os.path.join("report", "report.md")  # the report's readable summary
    TRAIN_LOG = "train.log"
    EVAL_LOG = "eval.log"
    TRAIN_CSV = "train_log.csv"  # loss, lr and mAP per epoch
    PREDICT = "predict"  # predict.py's pictures

    def __init__(self, path):
        self.path = os.fspath(path)

    def __repr__(self):
        return f"RunDir({self.path!r})"

    def file(self, name):
        return os.path.join(self.path, name)

    @property
    def best(self):
        return self.file(self.BEST)

    @property
    def last(self):
        return self.file(self.LAST)

    @property
    def run_json(self):
        return self.file(self.RUN)

    @property
    def metrics(self):
        return self.file(self.METRICS)

    @property
    def report(self):
        return self.file(self.REPORT)

    @property
    def report_metrics(self):
        return self.file(self.REPORT_METRICS)

    @property
    def report_md(self):
        return self.file(self.REPORT_MD)

    @property
    def train_csv(self):
        return self.file(self.TRAIN_CSV)

    def log(self, evaluating=False):
        return self.file(self.EVAL_LOG if evaluating else self.TRAIN_LOG)

    @staticmethod
    def database_codes_stem(bit):
        """`database_code_<bit>`: the cached database codes (.npy) and their fingerprint (.json)."""
        return f"database_code_{int(bit)}"

    def database_codes(self, bit):
        return self.file(self.database_codes_stem(bit) + ".npy")
