"""The training loop: optimizer and lr schedule, epochs of batches (or one closed-form fit for the
shallow methods), the divergence and stop-signal checks, and an evaluation every --eval-epochs.
Checkpoints are the Checkpointer's, outputs the Reporter's; the loop only decides when."""
import json
import logging
import math
import os
import time

import numpy as np
import paddle
from tqdm import tqdm

from models import METHODS
from models.checkpoint import TrainState
from utils.data.datasets import ImageListDataset, make_loader
from utils.errors import UserError
from utils.fileio import write_json
from utils.rundir import RunDir
from utils.stop_signal import StopSignal
from utils.train import feature_cache
from utils.train.amp import Amp
from utils.train.config import ARCH_KEYS
from utils.train.data import BadImages
from utils.train.evaluator import encode, evaluate
from utils.train.optim import rmsprop
from utils.train.reporter import topk_name

log = logging.getLogger("deephash")


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


class Trainer:
    """Trains `model` on `data` for the run `cfg` (env: the processes; run_dir: the RunDir; ckpt: the
    --resume / --pretrained checkpoint or None), saving through `checkpointer` and writing through
    `reporter`."""

    def __init__(self, cfg, env, model, data, run_dir, ckpt, checkpointer, reporter):
        self.cfg, self.env, self.model, self.data, self.run, self.ckpt = cfg, env, model, data, run_dir, ckpt
        self.checkpointer, self.reporter = checkpointer, reporter

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
            raise UserError(f"--output {self.run.path} holds a {old.get('method')} {old.get('bit')}-bit run "
                            f"(different {', '.join(diff)}); choose another --output or --resume that run")
        log.warning("--output %s already holds a run with the same settings: it will be overwritten", self.run.path)

    def fit(self):
        """Train from the start or from --resume to --epochs; returns the final TrainState."""
        cfg, env, model = self.cfg, self.env, self.model
        if env.is_main:
            self._check_output_dir()
            write_json(self.run.run_json, cfg)
        train_set = self.data.sets["train"]
        # the memory-bank losses see every process's batch through env's gather (the identity on one process)
        criterion = METHODS[cfg["method"]].build_loss(cfg, model.head, len(train_set.list), gather=env.gather_tensor)
        optimizer, scheduler = build_optimizer(cfg, model)
        amp = Amp(cfg["amp"], env.device, log)
        with self.reporter.visualdl() as vdl:
            state = TrainState()
            cached = feature_cache.prepare(cfg, env, self.data, model, (self.run.train_features,
                                           self.run.train_features_meta), self._train_features)  # None: images
            if cfg.get("resume"):
                state = self.checkpointer.resume(self.ckpt, optimizer, scheduler, criterion, amp)
            net = model.head if cached is not None else model  # from cached features: the head alone
            if env.distributed:  # also for a closed-form fit: DataParallel gives every rank rank 0's weights
                net = paddle.DataParallel(net)
            log.info("%s %d bits, %s backbone, %s: %d train / %d database / %d query images, %d process(es), %s",
                     cfg["method"], cfg["bit"], cfg["backbone"], cfg["dataset"], len(train_set),
                     len(self.data.sets["database"]), len(self.data.sets["test"]), env.world_size, env.device)
            loader = cached if cached is not None else self.data.train_loader
            bad = BadImages(train_set, cfg["skip_bad_images"])
            last_eval = self._epochs(state, net, loader, cached is not None, criterion, optimizer, scheduler, amp,
                                     bad, vdl)
        if env.is_main and last_eval:
            self.reporter.write_report(model, last_eval[1], last_eval[0])
        if bad.count:
            log.warning("skipped %d unreadable training images", bad.count)
        outputs = (RunDir.BEST, RunDir.LAST, RunDir.METRICS, os.path.basename(self.run.database_codes(cfg["bit"])),
                   RunDir.TRAIN_LOG, RunDir.TRAIN_CSV, RunDir.REPORT + "/")
        log.info("done: best mAP@%s %.4f at epoch %d; outputs in %s (%s)", topk_name(cfg), state.best_map,
                 state.best_epoch, os.path.abspath(self.run.path), ", ".join(outputs))
        return state

    def _epochs(self, state, net, loader, from_features, criterion, optimizer, scheduler, amp, bad, vdl):
        """The epochs after `state.epoch` (from step `state.step` of the first); returns (epoch, EvalResult)
        of the latest evaluation, or None."""
        cfg, env, model, train_set = self.cfg, self.env, self.model, self.data.sets["train"]
        start_epoch, skip_steps = state.epoch + 1, state.step
        fit_features = METHODS[cfg["method"]].fit_features
        last_eval = None
        with stop_flag() as stop:
            for epoch in range(start_epoch, cfg["epochs"] + 1):
                model.train()
                if from_features:  # the features were computed in eval mode: the backbone stays there
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
                            self.checkpointer.diverged(f"loss is {value}", epoch, step)
                        amp.step(loss, optimizer)  # backward (scaled with fp16), step, clear_grad
                        losses.append(value)
                        bar.set_postfix(loss=f"{np.mean(losses):.4f}")
                    if env.any(stop.requested):
                        self.checkpointer.check_weights(epoch, step)
                        state.step = step  # state.epoch is still the last completed one
                        self.checkpointer.save_last(state, optimizer, scheduler, criterion, amp)
                        log.warning("stopped by signal at epoch %d step %d; resume with --resume %s", epoch, step,
                                    self.run.last)
                        raise KeyboardInterrupt
                self.checkpointer.check_weights(epoch, step)  # NaN weights can still give a finite loss
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
                vdl.epoch(row, last_eval[1] if last_eval and last_eval[0] == epoch else None)
                if env.is_main:
                    self.checkpointer.save_last(state, optimizer, scheduler, criterion, amp)
                    self.reporter.write_train_log(state.history)
                env.barrier()
        return last_eval

    def _evaluate_epoch(self, row, state):
        """Evaluate after the completed epoch `state.epoch`: fills the mAP columns of its train_log.csv `row`,
        updates the best mAP, writes best.pdparams when it improved and metrics.json; returns the EvalResult."""
        epoch = state.epoch
        result = evaluate(self.model, self.data, self.cfg, self.env)
        row["map"], row["map_tie_aware"] = result.map, result.map_tie_aware
        improved = self.checkpointer.record(state, epoch, result.map)
        log.info("epoch %d  mAP@%s %.4f (tie-aware %.4f)  best %.4f (epoch %d)", epoch, topk_name(self.cfg),
                 result.map, result.map_tie_aware, state.best_map, state.best_epoch)
        if self.env.is_main:
            if improved:
                self.checkpointer.save_best(state)
                self.reporter.write_database_codes(self.model, result)
            self.reporter.write_metrics(epoch, result, state.best_map, state.best_epoch)
        return result

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
