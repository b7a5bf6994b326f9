"""The contract of a training run's `--output` directory: every file name is spelled here and only here.

    run = RunDir("output/hashnet_64")
    run.best, run.last, run.run_json, run.metrics, run.report, run.database_codes(64)

Training writes it (utils/train), the report adds `report/` (utils/report), and predict.py, the service
and compare_runs.py read it. A leaf module: no imports beyond the standard library.
"""
import os


def _in_run(attr):
    """A read-only attribute: the path of the file named by class attribute `attr` inside the run."""
    return property(lambda self: self.file(getattr(self, attr)))


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
    TRAIN_FEATURES = "train_features.npy"  # --feature-cache: frozen-backbone features of the training list
    TRAIN_FEATURES_META = "train_features.json"  # ... and their fingerprint

    def __init__(self, path):
        self.path = os.fspath(path)

    def __repr__(self):
        return f"RunDir({self.path!r})"

    def file(self, name):
        return os.path.join(self.path, name)

    best = _in_run("BEST")
    last = _in_run("LAST")
    run_json = _in_run("RUN")
    metrics = _in_run("METRICS")
    report = _in_run("REPORT")
    report_metrics = _in_run("REPORT_METRICS")
    report_md = _in_run("REPORT_MD")
    train_csv = _in_run("TRAIN_CSV")
    train_features = _in_run("TRAIN_FEATURES")
    train_features_meta = _in_run("TRAIN_FEATURES_META")

    def log(self, evaluating=False):
        return self.file(self.EVAL_LOG if evaluating else self.TRAIN_LOG)

    @staticmethod
    def database_codes_stem(bit):
        """`database_code_<bit>`: the cached database codes (.npy) and their fingerprint (.json)."""
        return f"database_code_{int(bit)}"

    def database_codes(self, bit):
        return self.file(self.database_codes_stem(bit) + ".npy")
