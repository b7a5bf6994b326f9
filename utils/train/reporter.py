"""What a run tells and writes about itself: the log (`setup_logging`), and `Reporter`: metrics.json,
train_log.csv, the database codes, the evaluation report (utils/report/), the printed mAPs and the
VisualDL log. An `EvalResult` becomes a dict here, at the file boundary, and nowhere else."""
import csv
import io
import logging
import sys
from contextlib import contextmanager

from models.checkpoint import weights_fingerprint
from utils.fileio import write_json, write_text
from utils.report import write_report
from utils.code_cache import make_fingerprint, save_codes
from utils.rundir import RunDir
from utils.train.visualdl import VisualDLLog

log = logging.getLogger("deephash")
TRAIN_LOG_FIELDS = ["epoch", "lr", "loss", "map", "map_tie_aware", "seconds"]


def topk_name(cfg):
    return "all" if cfg["topk"] == -1 else str(cfg["topk"])


def setup_logging(log_file, is_main):
    """The "deephash" logger: stdout, and `log_file` on the main process. Handlers of an earlier setup
    (an earlier run in this process) are closed, not only dropped, so their files are released."""
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    log.setLevel(logging.INFO if is_main else logging.WARNING)
    log.propagate = False
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    stream = logging.StreamHandler(sys.stdout)
    stream.setFormatter(fmt)
    log.addHandler(stream)
    if is_main:
        handler = logging.FileHandler(log_file, encoding="utf-8")
        handler.setFormatter(fmt)
        log.addHandler(handler)


class Reporter:
    """Writes a run's outputs under `run_dir` (a RunDir). Only the main process calls the write methods."""

    def __init__(self, cfg, env, run_dir, data):
        self.cfg, self.env, self.run, self.data = cfg, env, run_dir, data

    def metrics(self, epoch, result, best_map, best_epoch):
        """The metrics.json dict of an EvalResult."""
        cfg = self.cfg
        return {"method": cfg["method"], "bit": cfg["bit"], "topk": cfg["topk"], "dataset": cfg["dataset"],
                "backbone": cfg["backbone"], "epoch": epoch, "map": result.map,
                "map_tie_aware": result.map_tie_aware, "best_map": best_map, "best_epoch": best_epoch,
                "num_query": result.num_query, "num_database": result.num_database,
                **result.ranked, "open_set": result.open_set,
                "cost": dict({"bytes_per_item": (cfg["bit"] + 7) // 8}, **result.cost),
                "seed": cfg["seed"], "lists_sha256": self.data.lists_sha256}

    def write_metrics(self, epoch, result, best_map, best_epoch):
        write_json(self.run.metrics, self.metrics(epoch, result, best_map, best_epoch))

    def write_database_codes(self, model, result, directory=None):
        """The database codes of `result` next to the checkpoint, fingerprinted with `model`'s weights."""
        cfg, data = self.cfg, self.data
        fp = make_fingerprint(weights_fingerprint(model.state_dict()), data.lists["database"].list_file,
                              cfg["data_path"], data.preprocess.to_dict())
        return save_codes(directory or self.run.path, cfg["bit"], result.db_codes, fp, result.db_indices)

    def write_report(self, model, result, epoch):
        """<output>/report/: metrics, code diagnostics and plots (utils/report/). A failing report is
        logged and never costs a finished run."""
        cfg, head = self.cfg, model.head
        codebook = head.codebook.numpy() if hasattr(head, "codebook") else None
        try:
            write_report(self.run.path, result.query_codes, result.db_codes, result.query_labels, result.db_labels,
                         topk=cfg["topk"], method=cfg["method"], bit=cfg["bit"], codebook=codebook,
                         dataset=cfg["dataset"], map_value=result.map, map_tie_aware=result.map_tie_aware,
                         extra={"epoch": epoch, "backbone": cfg["backbone"], "seed": cfg["seed"]}, seed=cfg["seed"],
                         stats=result.stats, per_query_ap=result.ap, per_query_ap_tie=result.ap_tie,
                         unseen_classes=self.data.unseen_classes, unseen_names=self.data.unseen_names,
                         cost=result.cost,
                         lists_sha256=self.data.lists_sha256)
            log.info("evaluation report: %s", self.run.report_md)
        except Exception:  # noqa: BLE001
            log.exception("evaluation report not written (%s and checkpoints are unaffected)", RunDir.METRICS)

    def print_maps(self, result):
        """The two lines --eval prints (scripts and TIPC read them)."""
        print(f"mAP@{topk_name(self.cfg)}: {result.map:.4f}", flush=True)
        print(f"mAP@{topk_name(self.cfg)} (tie-aware): {result.map_tie_aware:.4f}", flush=True)

    def write_train_log(self, history):
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=TRAIN_LOG_FIELDS)
        writer.writeheader()
        writer.writerows(history)
        write_text(self.run.train_csv, buf.getvalue())

    @contextmanager
    def visualdl(self):
        """The run's VisualDL log (a no-op one without --visualdl or off the main process), closed
        however training ends."""
        vdl = VisualDLLog(self.cfg.get("visualdl") if self.env.is_main else None)
        try:
            yield vdl
        finally:
            vdl.close()
