"""The one training / evaluation engine behind main_single_gpu.py and main_multi_gpu.py.

    cfg → lists → datasets/loaders → model (backbone + head) → loss → train epochs
        → encode query/database → utils.retrieval (mAP) → checkpoints, codes, metrics

Multi-process runs differ only in: sharded samplers, `paddle.DataParallel`, codes gathered from
every rank before ranking, HashNet's memory bank fed with every rank's batch, and writes on rank 0.
"""
import csv
import io
import json
import logging
import math
import os
import sys
import time

import numpy as np
import paddle
from tqdm import tqdm

from models import METHODS, build_model, load_backbone_weights
from utils import retrieval
from models.checkpoint import (TrainState, load_checkpoint, nonfinite_tensors, restore_rng, save_checkpoint,
                               weights_fingerprint)
from utils.cache_file import file_sha256
from utils.code_cache import make_fingerprint, save_codes
from utils.train import feature_cache
from utils.train.amp import Amp
from utils.train.config import ARCH_KEYS, format_recipe, resolve
from utils.train.visualdl import VisualDLLog
from utils.data.datasets import PRESETS, ImageListDataset, load_lists, make_loader
from utils.data.lists import read_list
from utils.train.dist import Env
from utils.train.optim import rmsprop
from utils.errors import UserError
from utils.fileio import check_writable_dir, write_json, write_text
from utils.rundir import RunDir
from utils.stop_signal import StopSignal
from utils.report import write_report
from utils.report.evaluation import (open_set_metrics, query_cost, radius_r_metrics, report_ks,
                                     unseen_classes_from_train)
from utils.data.transforms import Preprocess

log = logging.getLogger("deephash")
MIN_STEPS_PER_EPOCH = 20  # fewer, and training start says so


def topk_name(cfg):
    return "all" if cfg["topk"] == -1 else str(cfg["topk"])


def setup_logging(log_file, is_main):
    log.handlers.clear()
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


# ----------------------------------------------------------------------------------------- data
class Data:
    """The three lists, their datasets, and the evaluation loaders. `num_labels` is the lists' label width
    (checked against cfg["num_labels"] when a checkpoint set it); cfg itself is only read."""

    def __init__(self, cfg, env, need_train):
        preset = PRESETS[cfg["dataset"]]
        self.list_dir = cfg["list_dir"]
        names = ("train", "database", "test") if need_train else ("database", "test")
        unlabelled = () if METHODS[cfg["method"]].supervised else ("train",)  # may list paths alone
        self.lists = load_lists(cfg["list_dir"], preset.num_labels, cfg["allow_absolute_paths"], names, unlabelled)
        self.num_labels = next(iter(self.lists.values())).num_labels
        if cfg.get("num_labels") not in (None, self.num_labels):
            raise UserError(f"{self.lists['test'].list_file}: lists have {self.num_labels} labels but the checkpoint "
                            f"was trained with {cfg['num_labels']}; use the lists it was trained on")
        if not os.path.isdir(cfg["data_path"]):
            raise UserError(f"--data-path {cfg['data_path']}: directory not found; point it at the image root "
                            "the list paths are relative to")
        self.preprocess = Preprocess.from_dict(cfg)
        self._read_manifest(cfg, unlabelled)
        self.sets = {}
        for name, lst in self.lists.items():
            ds = ImageListDataset(lst, cfg["data_path"], self.preprocess, train=(name == "train"), seed=cfg["seed"])
            skipped = ds.check_files(cfg["skip_bad_images"], log)
            if len(ds) == 0:
                raise UserError(f"{lst.list_file}: no usable image left after skipping {skipped}")
            self.sets[name] = ds
        self.loaders = {name: make_loader(self.sets[name], cfg["batch_size"], cfg["num_workers"], env.world_size,
                                          env.rank) for name in ("database", "test")}
        if need_train:
            train = self.sets["train"]
            if cfg["drop_last"] and len(train) < cfg["batch_size"] * env.world_size:
                raise UserError(f"-bs/--batch-size {cfg['batch_size']} × {env.world_size} process(es) is larger than "
                                f"the training list ({len(train)} images) and --drop-last is on: no batch is left; "
                                "use a smaller batch size or --no-drop-last")
            self.train_loader = make_loader(train, cfg["batch_size"], cfg["num_workers"], env.world_size, env.rank,
                                            train=True, seed=cfg["seed"], drop_last=cfg["drop_last"])

    def _read_manifest(self, cfg, unlabelled):
        """The split manifest (sha256 of each list file) and the open-set classes: those no training
        image has but some query or database image does, read from train.txt (read, not loaded as a data
        set, when only evaluating; an unlabelled or missing train.txt gives none)."""
        train_file = os.path.join(cfg["list_dir"], "train.txt")
        self.lists_sha256 = {name: file_sha256(os.path.join(cfg["list_dir"], f"{name}.txt"))
                             for name in ("train", "database", "test")
                             if os.path.isfile(os.path.join(cfg["list_dir"], f"{name}.txt"))}
        train = self.lists.get("train")
        if train is None and os.path.isfile(train_file):
            try:
                train = read_list(train_file, self.num_labels, cfg["allow_absolute_paths"],
                                  unlabelled_ok=bool(unlabelled))
            except UserError as exc:  # evaluation does not need train.txt: say why there is no open-set split
                log.warning("open-set classes not derived (train.txt unreadable as a list: %s)", exc)
        labels = getattr(train, "labels", None)
        if labels is None or len(labels) == 0 or labels.ndim != 2 or labels.shape[1] != self.num_labels:
            self.unseen_classes = []
        else:
            self.unseen_classes = unseen_classes_from_train(labels, self.lists["test"].labels,
                                                            self.lists["database"].labels)
        self.unseen_names = None
        names_file = os.path.join(cfg["list_dir"], "classes.txt")  # written by scripts/build_lists.py
        if self.unseen_classes and os.path.isfile(names_file):
            with open(names_file, encoding="utf-8") as f:
                names = f.read().splitlines()
            if len(names) == self.num_labels:
                self.unseen_names = [names[c] for c in self.unseen_classes]
        if self.unseen_classes:
            log.info("open set: %d class(es) never in %s are unseen (%s); mAP is also reported for seen and unseen "
                     "queries", len(self.unseen_classes), train_file,
                     ", ".join(self.unseen_names or map(str, self.unseen_classes)))

    def check_manifest(self, trained, what):
        """Warn, naming each list, when a list's sha256 differs from the one recorded at training."""
        for name, digest in (trained or {}).items():
            now = self.lists_sha256.get(name)
            if now is not None and now != digest:
                log.warning("%s: the %s list changed since training (sha256 %s… at training, %s… now): %s",
                            os.path.join(self.list_dir, f"{name}.txt"), name, digest[:12], now[:12], what)


class BadImages:
    """Turns a batch's `ok` flags into a one-line error, or drops the bad items with --skip-bad-images."""

    def __init__(self, dataset, skip):
        self.dataset, self.skip, self.count = dataset, skip, 0

    def filter(self, img, label, idx, ok):
        ok = ok.numpy().astype(bool)
        if ok.all():
            return img, label, idx
        bad = idx.numpy()[~ok]
        if not self.skip:
            raise self.dataset.bad_image_error(int(bad[0]))
        self.count += len(bad)
        for i in bad:
            log.warning("skipping unreadable image %s (%s)", self.dataset.path(int(i)), self.dataset.list.where(int(i)))
        keep = paddle.to_tensor(np.flatnonzero(ok))
        return (paddle.gather(img, keep), paddle.gather(label, keep), paddle.gather(idx, keep)) if ok.any() else None


# ----------------------------------------------------------------------------------------- encode / evaluate
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
    return {"map": float(m), "map_tie_aware": float(m_tie), "db_codes": d, "db_indices": di,
            "query_codes": q, "query_indices": qi, "ap": ap, "ap_tie": ap_tie, "stats": stats, "ranked": ranked,
            "open_set": open_set, "cost": cost}


def write_database_codes(cfg, data, model, result, directory):
    fp = make_fingerprint(weights_fingerprint(model.state_dict()), data.lists["database"].list_file,
                          cfg["data_path"], data.preprocess.to_dict())
    return save_codes(directory, cfg["bit"], result["db_codes"], fp, result["db_indices"])


# ----------------------------------------------------------------------------------------- optimisation
def lr_step(cfg):
    """Epochs between lr decays; unset (OrthoHash) means one decay at 80% of training, recomputed from
    the current --epochs so that a resumed run with more epochs decays where a fresh one would."""
    return cfg["lr_step"] or max(1, math.ceil(0.8 * cfg["epochs"]))


def _constant_lr(epoch):
    return 1.0


def build_optimizer(cfg, model):
    for p in model.backbone.parameters():
        p.optimize_attr["learning_rate"] = cfg["backbone_lr_mult"]
    for p in model.head.parameters():
        p.optimize_attr["learning_rate"] = cfg["head_lr_mult"]
    if cfg["lr_gamma"] < 1.0:
        scheduler = paddle.optimizer.lr.StepDecay(cfg["lr"], step_size=lr_step(cfg), gamma=cfg["lr_gamma"])
    else:  # --lr-gamma 1: a constant lr (Paddle's StepDecay refuses gamma 1)
        scheduler = paddle.optimizer.lr.LambdaDecay(cfg["lr"], lr_lambda=_constant_lr)
    params = [p for p in model.parameters() if not p.stop_gradient]
    if cfg["optimizer"] == "sgd":
        opt = paddle.optimizer.Momentum(scheduler, momentum=0.9, parameters=params, weight_decay=cfg["weight_decay"])
    elif cfg["optimizer"] == "rmsprop":
        opt = rmsprop(cfg["rmsprop_form"], scheduler, params, cfg["weight_decay"])
    else:
        opt = paddle.optimizer.Adam(scheduler, parameters=params, weight_decay=cfg["weight_decay"])
    return opt, scheduler


def stop_flag():
    """First Ctrl-C / SIGTERM asks training to stop after the current batch (a resumable checkpoint is
    written); a second one interrupts at once."""
    return StopSignal("stopping after this batch (press Ctrl-C again to abort at once)",
                      f"stopping now without saving; {RunDir.LAST} (if any) is from the last completed epoch")


# ----------------------------------------------------------------------------------------- run
class Run:
    """State of one training run; `fit()` trains, `evaluate_only()` evaluates."""

    def __init__(self, args, distributed):
        self.env = Env(distributed, args.device)
        ckpt_path = args.resume or args.pretrained
        self.ckpt = load_checkpoint(ckpt_path, "--resume" if args.resume else "--pretrained") if ckpt_path else None
        if args.eval and self.ckpt is None:
            raise UserError(f"--eval needs --pretrained CKPT (a {RunDir.BEST} or {RunDir.LAST} from training)")
        cfg = resolve(args, self.ckpt["cfg"] if self.ckpt else None)
        if args.resume and args.output is None:
            cfg["output"] = os.path.dirname(os.path.abspath(args.resume))
        self.cfg = cfg
        self.out = cfg["output"]
        self.run = RunDir(self.out)
        if self.env.is_main:
            check_writable_dir(self.out)
        self.env.barrier()
        setup_logging(self.run.log(evaluating=cfg["eval"]), self.env.is_main)
        paddle.seed(cfg["seed"] + self.env.rank)
        np.random.seed(cfg["seed"])
        self.data = Data(cfg, self.env, need_train=not cfg["eval"])
        cfg["num_labels"] = self.data.num_labels  # an architecture key read from the lists: build_model needs it
        self.model = build_model(cfg, self.ckpt["model"] if self.ckpt is not None else None)
        if self.ckpt is not None:
            log.info("loaded weights from %s (epoch %d)", ckpt_path, self.ckpt["epoch"])
        elif cfg.get("backbone_weights"):
            info = load_backbone_weights(self.model.backbone, cfg["backbone_weights"],
                                         allow_partial=bool(cfg.get("allow_partial_weights")))
            (log.warning if info["missing"] else log.info)("backbone weights: %s", info["summary"])
        if self.ckpt is not None and self.env.is_main:  # the lists the checkpoint was trained on
            trained = self.ckpt["cfg"].get("lists_sha256")
            if cfg["eval"]:
                self.data.check_manifest(trained, "the evaluation is not on the split the model was trained for")
            elif args.resume:
                self.data.check_manifest(trained, "training continues on changed lists")
        cfg["lists_sha256"] = self.data.lists_sha256  # the split manifest, in run.json and every checkpoint
        if not cfg["eval"]:
            self._warn_about_recipe()

    def _warn_about_recipe(self):
        """Say at start what a recipe mismatch will do: the official recipes assume ImageNet weights and
        many steps per epoch."""
        cfg = self.cfg
        if METHODS[cfg["method"]].fit_features:  # no SGD: neither lr nor steps per epoch matter
            return
        if self.ckpt is None and not cfg.get("backbone_weights") and cfg["recipe"] != "scratch":
            log.warning("training %s from random initialisation (no --backbone-weights) with %s's official recipe "
                        "(lr %g, backbone lr x%g), which assumes ImageNet weights: expect it to learn little. Pass "
                        "--backbone-weights FILE (README 'Pretrained weights'), or --recipe scratch for the "
                        "random-init settings", cfg["backbone"], cfg["method"], cfg["lr"], cfg["backbone_lr_mult"])
        steps = len(self.data.train_loader)
        if steps < MIN_STEPS_PER_EPOCH:
            log.warning("only %d training step(s) per epoch (%d images, batch %d x %d process(es)): the lr schedule "
                        "and the loss see few updates per epoch; use a smaller -bs/--batch-size (about %d) or more "
                        "--epochs", steps, len(self.data.sets["train"]), cfg["batch_size"], self.env.world_size,
                        max(2, len(self.data.sets["train"]) // (MIN_STEPS_PER_EPOCH * self.env.world_size)))

    def _metrics(self, epoch, result, best_map, best_epoch):
        cfg = self.cfg
        return {"method": cfg["method"], "bit": cfg["bit"], "topk": cfg["topk"], "dataset": cfg["dataset"],
                "backbone": cfg["backbone"], "epoch": epoch, "map": result["map"],
                "map_tie_aware": result["map_tie_aware"], "best_map": best_map, "best_epoch": best_epoch,
                "num_query": int(len(result["query_codes"])), "num_database": int(len(result["db_codes"])),
                **result["ranked"], "open_set": result["open_set"],
                "cost": dict({"bytes_per_item": (cfg["bit"] + 7) // 8}, **result["cost"]),
                "seed": cfg["seed"], "lists_sha256": self.data.lists_sha256}

    def _write_report(self, result, epoch):
        """<output>/report/: metrics, code diagnostics and plots (utils/report/). Main rank only; a
        failing report is logged and never costs a finished run."""
        cfg, head = self.cfg, self.model.head
        codebook = head.codebook.numpy() if hasattr(head, "codebook") else None
        try:
            write_report(self.out, result["query_codes"], result["db_codes"],
                         self.data.lists["test"].labels[result["query_indices"]],
                         self.data.lists["database"].labels[result["db_indices"]],
                         topk=cfg["topk"], method=cfg["method"], bit=cfg["bit"], codebook=codebook,
                         dataset=cfg["dataset"], map_value=result["map"], map_tie_aware=result["map_tie_aware"],
                         extra={"epoch": epoch, "backbone": cfg["backbone"], "seed": cfg["seed"]}, seed=cfg["seed"],
                         stats=result["stats"], per_query_ap=result["ap"], per_query_ap_tie=result["ap_tie"],
                         unseen_classes=self.data.unseen_classes, unseen_names=self.data.unseen_names,
                         cost=result["cost"],
                         lists_sha256=self.data.lists_sha256)
            log.info("evaluation report: %s", self.run.report_md)
        except Exception:  # noqa: BLE001
            log.exception("evaluation report not written (%s and checkpoints are unaffected)", RunDir.METRICS)

    # ------------------------------------------------------------------ evaluation only
    def evaluate_only(self):
        result = evaluate(self.model, self.data, self.cfg, self.env)
        if self.env.is_main:
            saved = TrainState.from_checkpoint(self.ckpt)
            epoch = saved.epoch
            write_json(self.run.metrics, self._metrics(epoch, result, max(result["map"], saved.best_map), epoch))
            npy = write_database_codes(self.cfg, self.data, self.model, result, self.out)
            self._write_report(result, epoch)
            print(f"mAP@{topk_name(self.cfg)}: {result['map']:.4f}", flush=True)
            print(f"mAP@{topk_name(self.cfg)} (tie-aware): {result['map_tie_aware']:.4f}", flush=True)
            log.info("metrics: %s, database codes: %s", self.run.metrics, npy)
        return result

    # ------------------------------------------------------------------ training
    def _check_output_dir(self):
        run_file = self.run.run_json
        if self.cfg.get("resume") or not os.path.exists(run_file):
            return
        try:
            with open(run_file, encoding="utf-8") as f:
                old = json.load(f)
        except (OSError, ValueError):
            return
        diff = [k for k in ARCH_KEYS if old.get(k) != self.cfg.get(k)]
        if diff:
            raise UserError(f"--output {self.out} holds a {old.get('method')} {old.get('bit')}-bit run "
                            f"(different {', '.join(diff)}); choose another --output or --resume that run")
        log.warning("--output %s already holds a run with the same settings: it will be overwritten", self.out)

    def fit(self):
        cfg, env, model = self.cfg, self.env, self.model
        if env.is_main:
            self._check_output_dir()
            write_json(self.run.run_json, cfg)
        train_set = self.data.sets["train"]
        criterion = METHODS[cfg["method"]].build_loss(cfg, model.head, len(train_set.list))
        optimizer, scheduler = build_optimizer(cfg, model)
        amp = Amp(cfg["amp"], env.device, log)
        vdl = VisualDLLog(cfg.get("visualdl") if env.is_main else None)
        state = TrainState()
        cached = feature_cache.prepare(cfg, env, self.data, model, (self.run.train_features,
                                       self.run.train_features_meta), self._train_features)  # None: images
        if cfg.get("resume"):
            ck = self.ckpt
            if "optimizer" not in ck:
                raise UserError(f"--resume {cfg['resume']}: this checkpoint has no optimizer state (a {RunDir.BEST}?); "
                                f"resume from {RunDir.LAST}, or start a new run from it with --pretrained")
            state = TrainState.from_checkpoint(ck)
            optimizer.set_state_dict(ck["optimizer"])
            # the schedule is a function of completed epochs: recompute it (the step may differ from the
            # checkpoint's when --epochs was raised) instead of restoring the old scheduler state
            scheduler.last_epoch = state.epoch
            scheduler.last_lr = scheduler.get_lr()
            criterion.set_state_dict(ck["criterion"])
            amp.set_state_dict(ck.get("amp"))
            restore_rng(ck)
            log.info("resuming at epoch %d%s, best mAP so far %s", state.epoch + 1,
                     f" step {state.step}" if state.step else "",
                     f"{state.best_map:.4f} (epoch {state.best_epoch})" if state.best_map >= 0
                     else "none (no evaluation yet)")
        start_epoch, skip_steps = state.epoch + 1, state.step
        fit_features = METHODS[cfg["method"]].fit_features
        net = model.head if cached is not None else model  # from cached features: the head alone
        if env.distributed:  # also for a closed-form fit: DataParallel gives every rank rank 0's weights
            net = paddle.DataParallel(net)
            criterion.gather = env.gather_tensor
        log.info("%s %d bits, %s backbone, %s: %d train / %d database / %d query images, %d process(es), %s",
                 cfg["method"], cfg["bit"], cfg["backbone"], cfg["dataset"], len(train_set),
                 len(self.data.sets["database"]), len(self.data.sets["test"]), env.world_size, env.device)
        loader = cached if cached is not None else self.data.train_loader
        bad = BadImages(train_set, cfg["skip_bad_images"])
        last_eval = None  # (epoch, evaluate() result) of the latest evaluation, for the report

        with stop_flag() as stop:
            for epoch in range(start_epoch, cfg["epochs"] + 1):
                model.train()
                if cached is not None:  # the features were computed in eval mode: the backbone stays there
                    model.backbone.eval()
                criterion.set_epoch(epoch)
                train_set.set_epoch(epoch)
                loader.batch_sampler.set_epoch(epoch)
                loader.batch_sampler.skip_batches = skip_steps if epoch == start_epoch else 0
                t0, losses, step = time.time(), [], 0
                if fit_features:  # a shallow method: a closed-form fit on the training features, no SGD
                    losses.append(self._fit_closed_form(fit_features))
                bar = tqdm(() if fit_features else loader, desc=f"epoch {epoch}/{cfg['epochs']}",
                           disable=not env.is_main, leave=False, mininterval=2)
                for step, batch in enumerate(bar, start=loader.batch_sampler.skip_batches + 1):
                    kept = bad.filter(*batch)
                    if kept is not None and len(kept[2]) > 1:
                        img, label, idx = kept
                        with amp.autocast():
                            out = net(img)
                        loss = criterion(amp.float32(out), label, idx)  # every loss in FP32
                        value = float(loss.item())
                        if env.any(not math.isfinite(value)):  # every rank stops, not only the one that saw it
                            self._diverged(f"loss is {value}", epoch, step)
                        amp.step(loss, optimizer)  # backward (scaled with fp16), step, clear_grad
                        losses.append(value)
                        bar.set_postfix(loss=f"{np.mean(losses):.4f}")
                    if env.any(stop.requested):
                        self._check_weights(epoch, step)
                        state.step = step  # state.epoch is still the last completed one
                        if env.is_main:
                            save_checkpoint(self.run.last, model, cfg, state, optimizer, scheduler, criterion, amp)
                        log.warning("stopped by signal at epoch %d step %d; resume with --resume %s", epoch, step,
                                    self.run.last)
                        raise KeyboardInterrupt
                self._check_weights(epoch, step)  # NaN weights can still give a finite loss (relu(nan) = 0)
                lr = optimizer.get_lr()
                scheduler.step()
                state.epoch, state.step = epoch, 0
                row = {"epoch": epoch, "lr": lr, "loss": float(np.mean(losses)) if losses else float("nan"),
                       "seconds": round(time.time() - t0, 2), "map": "", "map_tie_aware": ""}
                log.info("epoch %d/%d  loss %.4f  lr %.2e  %.1fs", epoch, cfg["epochs"], row["loss"], lr,
                         row["seconds"])
                if epoch % cfg["eval_epochs"] == 0 or epoch == cfg["epochs"]:
                    last_eval = (epoch, self._evaluate_epoch(row, state))
                state.history.append(row)
                evaluated = last_eval[1] if last_eval and last_eval[0] == epoch else None
                vdl.epoch(row, evaluated, *(self._eval_labels(evaluated) if evaluated else ()))
                if env.is_main:
                    save_checkpoint(self.run.last, model, cfg, state, optimizer, scheduler, criterion, amp)
                    self._write_train_log(state.history)
                env.barrier()
        vdl.close()
        if env.is_main and last_eval:
            self._write_report(last_eval[1], last_eval[0])
        if bad.count:
            log.warning("skipped %d unreadable training images", bad.count)
        outputs = (RunDir.BEST, RunDir.LAST, RunDir.METRICS, os.path.basename(self.run.database_codes(cfg["bit"])),
                   RunDir.TRAIN_LOG, RunDir.TRAIN_CSV, RunDir.REPORT + "/")
        log.info("done: best mAP@%s %.4f at epoch %d; outputs in %s (%s)", topk_name(cfg), state.best_map,
                 state.best_epoch, os.path.abspath(self.out), ", ".join(outputs))
        return state

    def _eval_labels(self, result):
        """Labels of the query and database rows of an evaluate() result."""
        return (self.data.lists["test"].labels[result["query_indices"]],
                self.data.lists["database"].labels[result["db_indices"]])

    def _train_features(self):
        """Backbone features of the training list (evaluation transform, backbone in eval mode, every
        process's share gathered): (features (n, d) float32, list positions)."""
        cfg, train = self.cfg, self.data.sets["train"]
        plain = ImageListDataset(train.list, cfg["data_path"], self.data.preprocess, train=False, seed=cfg["seed"])
        plain.keep = train.keep
        loader = make_loader(plain, cfg["batch_size"], cfg["num_workers"], self.env.world_size, self.env.rank)
        backbone = self.model.backbone
        return encode(backbone, loader, plain, self.env, cfg["skip_bad_images"], backbone.out_dim, "features")

    def _fit_closed_form(self, fit_features):
        """The method's closed-form fit of the head on the training features; returns the fit's objective
        for the loss column."""
        cfg = self.cfg
        feats, _ = self._train_features()
        log.info("fitting %s on %d training features of dimension %d", cfg["method"], *feats.shape)
        return float(fit_features(feats, cfg, self.model.head))

    def _diverged(self, what, epoch, step):
        """Stop a diverged run: one line on stderr and in train.log, pointing at the last good checkpoint
        (every checkpoint is written only after its weights were checked to be finite)."""
        last = self.run.last
        hint = (f"the last good checkpoint is {last} — lower -lr and --resume it" if os.path.exists(last)
                else "no checkpoint was written yet — lower -lr and start again")
        message = f"training diverged: {what} at epoch {epoch} step {step}; {hint}"
        log.error(message)
        raise UserError(message)

    def _check_weights(self, epoch, step):
        bad = nonfinite_tensors(self.model.state_dict())
        if bad:
            self._diverged(f"{len(bad)} weight tensors hold NaN/inf (first: {bad[0]})", epoch, step)

    def _evaluate_epoch(self, row, state):
        """Evaluate after the completed epoch `state.epoch`: fills the mAP columns of its train_log.csv `row`,
        updates the best mAP, writes best.pdparams when it improved and metrics.json; returns the result."""
        epoch = state.epoch
        result = evaluate(self.model, self.data, self.cfg, self.env)
        row["map"], row["map_tie_aware"] = result["map"], result["map_tie_aware"]
        improved = result["map"] > state.best_map
        if improved:
            state.best_map, state.best_epoch = result["map"], epoch
        log.info("epoch %d  mAP@%s %.4f (tie-aware %.4f)  best %.4f (epoch %d)", epoch, topk_name(self.cfg),
                 result["map"], result["map_tie_aware"], state.best_map, state.best_epoch)
        if self.env.is_main:
            if improved:
                save_checkpoint(self.run.best, self.model, self.cfg, state)
                write_database_codes(self.cfg, self.data, self.model, result, self.out)
            write_json(self.run.metrics, self._metrics(epoch, result, state.best_map, state.best_epoch))
        return result

    def _write_train_log(self, history):
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["epoch", "lr", "loss", "map", "map_tie_aware", "seconds"])
        writer.writeheader()
        writer.writerows(history)
        write_text(self.run.train_csv, buf.getvalue())


def print_recipe(args):
    """--print-recipe: the resolved settings and their sources (from the checkpoint when one is given)."""
    ckpt_path = args.resume or args.pretrained
    ckpt_cfg = load_checkpoint(ckpt_path, "--resume" if args.resume else "--pretrained")["cfg"] if ckpt_path else None
    sources = {}
    print(format_recipe(resolve(args, ckpt_cfg, sources), sources))


def main(argv=None, distributed=False, description=""):
    from utils.train.config import build_parser

    args = build_parser(description).parse_args(argv)
    if args.print_recipe:
        return print_recipe(args)
    run = Run(args, distributed)
    if run.cfg["eval"]:
        run.evaluate_only()
    else:
        try:
            run.fit()
        except KeyboardInterrupt:
            sys.exit(130)
