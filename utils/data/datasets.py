"""Data: dataset presets, the image-list dataset, and loaders (single- or multi-process).

Items are `(image CHW float32, labels float32, index int64, ok int32)`. A worker never raises on a bad
image: it returns `ok = 0` and the main process decides (stop with a one-line error naming the list
line, or skip it with `--skip-bad-images`). Training augmentation draws from a numpy Generator seeded
by (seed, epoch, index), and the sampler's shuffle by (seed, epoch), so an epoch is reproducible —
which is what makes `--resume` exact.
"""
import os
from dataclasses import dataclass

import numpy as np
import paddle

from utils.errors import UserError
from utils.data.lists import read_list
from utils.data.images import ImageError, open_image


@dataclass(frozen=True)
class Preset:
    num_labels: int  # None: read from the list
    topk: int  # -1: the whole database
    resize_size: int = 256  # default preprocessing of the data set's images
    crop_size: int = 224


PRESETS = {
    "coco": Preset(80, 5000),
    "nuswide": Preset(21, 5000),
    "imagenet": Preset(100, 1000),
    "cifar10": Preset(10, -1),
    # generated 64×64 images (scripts/make_lite_data.py)
    "lite_single": Preset(None, -1, 72, 64),
    "lite_multi": Preset(None, -1, 72, 64),
    "custom": Preset(None, -1),
}


def load_lists(list_dir, num_labels=None, allow_absolute=False, names=("train", "database", "test"),
               unlabelled=()):
    """Read `<list_dir>/<name>.txt` for each name; all must have the same label width. The lists in
    `unlabelled` (an unsupervised method's training list) may give paths without labels; they are read
    after the others, which set the width."""
    lists = {}
    for name in sorted(names, key=lambda n: n in unlabelled):
        lst = read_list(os.path.join(list_dir, f"{name}.txt"), num_labels, allow_absolute,
                        unlabelled_ok=name in unlabelled)
        num_labels = lst.num_labels
        lists[name] = lst
    return {name: lists[name] for name in names}


class ImageListDataset(paddle.io.Dataset):
    def __init__(self, image_list, root, preprocess, train=False, seed=0):
        super().__init__()
        self.list = image_list
        self.root = root
        self.preprocess = preprocess
        self.train = train
        self.seed = seed
        self.epoch = 0
        self.keep = np.arange(len(image_list))  # positions in the list still in use

    def __len__(self):
        return len(self.keep)

    def set_epoch(self, epoch):
        self.epoch = epoch

    def path(self, i):
        return os.path.join(self.root, self.list.paths[i])

    def check_files(self, skip_bad, log=None):
        """Missing files: a UserError naming the first (and the count), or dropped with skip_bad."""
        exists = np.array([os.path.isfile(self.path(i)) for i in self.keep], dtype=bool)
        if exists.all():
            return 0
        missing = self.keep[~exists]
        first = int(missing[0])
        if not skip_bad:
            raise UserError(f"{self.list.where(first)}: image '{self.path(first)}' not found "
                            f"({len(missing)} missing in this list); check --data-path, or pass --skip-bad-images")
        if log:
            log.warning("%s: skipping %d missing images (first: %s, line %d)", self.list.list_file, len(missing),
                        self.path(first), self.list.lines[first])
        self.keep = self.keep[exists]
        return len(missing)

    def __getitem__(self, k):
        i = int(self.keep[k])
        label = self.list.labels[i].astype(np.float32)
        rng = np.random.default_rng([self.seed, self.epoch, i]) if self.train else None
        c = self.preprocess.crop_size
        try:
            img = self.preprocess(open_image(self.path(i)), rng)
            ok = 1
        except ImageError:
            img, ok = np.zeros((3, c, c), np.float32), 0
        return img, label, np.int64(i), np.int32(ok)

    def bad_image_error(self, i):
        try:
            open_image(self.path(i))
            why = "could not be preprocessed"
        except ImageError as exc:
            why = str(exc)
        return UserError(f"{self.list.where(i)}: image '{self.path(i)}': {why}; fix or remove the line, "
                         "or pass --skip-bad-images")


class EpochSampler(paddle.io.DistributedBatchSampler):
    """DistributedBatchSampler whose shuffle depends on (seed, epoch), for one or many processes."""

    def __init__(self, dataset, batch_size, world_size, rank, shuffle, drop_last, seed=0):
        super().__init__(dataset, batch_size, num_replicas=world_size, rank=rank, shuffle=shuffle,
                         drop_last=drop_last)
        self.seed = seed
        self.skip_batches = 0

    def set_epoch(self, epoch):
        # DistributedBatchSampler shuffles with np.random.RandomState(self.epoch)
        super().set_epoch((self.seed * 100003 + epoch) % (2 ** 32))

    def __iter__(self):
        for n, batch in enumerate(super().__iter__()):
            if n >= self.skip_batches:
                yield batch


def make_loader(dataset, batch_size, num_workers, world_size=1, rank=0, train=False, seed=0, drop_last=False):
    """A loader over `dataset`; `train` shuffles by (seed, epoch); `drop_last` drops the last partial batch."""
    sampler = EpochSampler(dataset, batch_size, world_size, rank, shuffle=train, drop_last=drop_last, seed=seed)
    return paddle.io.DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, return_list=True,
                                use_shared_memory=False)
