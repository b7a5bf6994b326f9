"""One run's setup, shared by training and evaluation: the process group, the checkpoint (--resume /
--pretrained), the resolved configuration, the output folder and its log, the random state, the data,
the model and its weights; then `fit()` hands it to the Trainer and `evaluate_only()` to the evaluator."""
import logging
import os

import numpy as np
import paddle

from models import METHODS, build_model, load_backbone_weights
from models.checkpoint import TrainState, load_checkpoint
from utils.errors import UserError
from utils.fileio import check_writable_dir
from utils.rundir import RunDir
from utils.train.checkpointer import Checkpointer
from utils.train.config import resolve
from utils.train.data import Data
from utils.train.dist import Env
from utils.train.evaluator import evaluate
from utils.train.reporter import Reporter, setup_logging
from utils.train.trainer import Trainer

log = logging.getLogger("deephash")
MIN_STEPS_PER_EPOCH = 20  # fewer, and training start says so


class Run:
    """State of one training run; `fit()` trains, `evaluate_only()` evaluates.

    Random state: Paddle's generator is seeded with seed + rank (dropout, initialisation); `rng`, the
    run's np.random.RandomState(seed), is what checkpoints save as the numpy state and --resume restores
    (numpy's global stream is left alone: the data augmentation draws from per-image generators, the
    codebooks and loss centres from their own seeded generators)."""

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
        self.rng = np.random.RandomState(cfg["seed"])
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
        self.checkpointer = Checkpointer(cfg, self.env, self.run, self.model, self.rng)
        self.reporter = Reporter(cfg, self.env, self.run, self.data)
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

    def fit(self):
        """Train (utils/train/trainer.py); returns the final TrainState."""
        return Trainer(self.cfg, self.env, self.model, self.data, self.run, self.ckpt, self.checkpointer,
                       self.reporter).fit()

    def evaluate_only(self):
        """Evaluate the checkpoint's model: metrics.json, database codes, the report and the printed mAPs."""
        result = evaluate(self.model, self.data, self.cfg, self.env)
        if self.env.is_main:
            saved = TrainState.from_checkpoint(self.ckpt)
            epoch = saved.epoch
            self.reporter.write_metrics(epoch, result, max(result.map, saved.best_map), epoch)
            npy = self.reporter.write_database_codes(self.model, result, self.out)
            self.reporter.write_report(self.model, result, epoch)
            self.reporter.print_maps(result)
            log.info("metrics: %s, database codes: %s", self.run.metrics, npy)
        return result
