"""The run's data: the three lists, their datasets and loaders, the split manifest and the open-set
classes (`Data`), and what a batch's unreadable images do (`BadImages`)."""
import logging
import os

import numpy as np
import paddle

from models import METHODS
from utils.data.datasets import PRESETS, ImageListDataset, load_lists, make_loader
from utils.data.lists import read_list
from utils.data.transforms import Preprocess
from utils.errors import UserError
from utils.report.evaluation import unseen_classes_from_train
from utils.cache_file import file_sha256

log = logging.getLogger("deephash")


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
