"""Frozen-backbone training from cached features (`--freeze-backbone`, `--feature-cache auto`).

With the backbone frozen, every epoch would push the same images through the same weights. Instead the
training list goes once through the backbone — in eval mode (Dropout off, BatchNorm on its running
statistics) and with the *evaluation* transform, so there is no training augmentation — and the hash
head then trains from those features every epoch:

    train list → eval transform → frozen backbone (eval mode) → <output>/train_features.npy (+ .json)
    each epoch: the run's shuffle (same sampler, seed, batch size, drop_last) over the cached rows
                → head → loss(head output, labels, list indices)

The sidecar `train_features.json` holds a fingerprint of what produced the array: the backbone's name and
weights, the evaluation preprocessing, the training list's content and the image root. A cache is used
only when its fingerprint matches and the array matches the sidecar's checksum; otherwise it is rebuilt
and the log says why. Both files are written atomically (utils/fileio), the array first.

Every method whose loss needs only the head's output, the labels and the list indices trains this way —
all the SGD-trained methods here, memory-bank losses included (rows carry their list index). The
unsupervised GreedyHash / BiHalf compare codes with the backbone features of the same single view, which
the cache provides. Closed-form methods (`fit_features`: LSH, ...) do their own single feature pass and
never use the cache. Several processes: every rank checks the cache; if any finds it unusable, all ranks
encode their shard together (all with rank 0's weights), the features are gathered on every rank and rank 0
writes the files.
"""
import logging
import os
import time

import numpy as np
import paddle
from paddle.distributed.parallel import sync_params_buffers

from models import METHODS
from models.checkpoint import weights_fingerprint
from utils.data.datasets import EpochSampler
from utils.cache_file import file_sha256, load_array, save_array

log = logging.getLogger("deephash")
MODES = ("auto", "off")
FORMAT = 1


def disabled_reason(cfg):
    """None when the run trains from cached features, else why not (a log line; '' = nothing to say)."""
    if not cfg.get("freeze_backbone"):
        return ""
    if cfg.get("feature_cache", "off") == "off":
        return "--feature-cache off: the frozen backbone runs on every training batch (with augmentation)"
    if METHODS[cfg["method"]].fit_features:
        return f"feature cache not used: {cfg['method']} is fitted in closed form on a feature pass of its own"
    return None


def make_fingerprint(backbone_name, backbone_state, list_file, data_path, preprocess):
    """What the cached features depend on. `preprocess`: Preprocess.to_dict(); its training augmentation is
    left out (the cache is built with the evaluation transform)."""
    pre = {k: v for k, v in preprocess.items() if k != "train_augment"}
    return {"format": FORMAT, "backbone": backbone_name, "weights": weights_fingerprint(backbone_state),
            "train_list": file_sha256(list_file), "data_path": os.path.abspath(data_path), "preprocess": pre}


def load_features(npy, meta_path, fingerprint):
    """(features float32 (n, d), list indices (n,), None) for a valid matching cache, else (None, None, why)."""
    feats, meta, why = load_array(npy, meta_path, fingerprint)
    if why:
        return None, None, why
    try:
        indices = np.asarray(meta["indices"], dtype=np.int64)
    except (KeyError, TypeError, ValueError) as exc:
        return None, None, f"{meta_path} lists no usable indices ({exc})"
    if feats.ndim != 2 or feats.dtype != np.float32 or len(indices) != len(feats):
        return None, None, f"{npy} has shape {feats.shape} ({feats.dtype}) for {len(indices)} listed images"
    return feats, indices, None


def save_features(npy, meta_path, feats, indices, fingerprint):
    save_array(npy, meta_path, np.asarray(feats, np.float32), fingerprint, indices=[int(i) for i in indices])


class FeatureLoader:
    """The training loader over cached rows: the same EpochSampler as the image loader (over the training
    dataset's positions: same shuffle per (seed, epoch), same sharding, batch size and drop_last), yielding
    (features, labels, list indices, ok) like the image loader yields (image, labels, indices, ok); `ok` is 0
    for an image that had no feature (skipped as unreadable with --skip-bad-images)."""

    def __init__(self, train_set, feats, indices, batch_size, world_size, rank, seed, drop_last):
        keep = train_set.keep
        pos = np.searchsorted(indices, keep)
        pos = np.clip(pos, 0, max(len(indices) - 1, 0))
        self.ok = (indices[pos] == keep).astype(np.int32) if len(indices) else np.zeros(len(keep), np.int32)
        self.table = feats[pos] if len(indices) else np.zeros((len(keep), 1), np.float32)
        self.labels = train_set.list.labels[keep].astype(np.float32)
        self.keep = keep.astype(np.int64)
        self.batch_sampler = EpochSampler(train_set, batch_size, world_size, rank, shuffle=True,
                                          drop_last=drop_last, seed=seed)

    def __len__(self):
        return len(self.batch_sampler)

    def __iter__(self):
        for batch in self.batch_sampler:
            k = np.asarray(batch, dtype=np.int64)
            yield (paddle.to_tensor(self.table[k]), paddle.to_tensor(self.labels[k]), paddle.to_tensor(self.keep[k]),
                   paddle.to_tensor(self.ok[k]))


def prepare(cfg, env, data, model, paths, extract):
    """A FeatureLoader for this run, or None (log line says why) when it trains from images.

    `paths`: (npy, sidecar json); `extract()`: (features, list indices) of the training list with the
    evaluation transform through the backbone in eval mode, gathered from every process (the engine's)."""
    why = disabled_reason(cfg)
    if why is not None:
        if why:
            log.info("%s", why)
        return None
    if env.distributed:  # ranks seed differently: every one encodes (and fingerprints) rank 0's backbone
        sync_params_buffers(model)
    npy, meta_path = paths
    fp = make_fingerprint(cfg["backbone"], model.backbone.state_dict(), data.lists["train"].list_file,
                          cfg["data_path"], data.preprocess.to_dict())
    feats, indices, reason = load_features(npy, meta_path, fp)
    if env.any(reason is not None):  # every rank rebuilds together (each encodes its shard)
        if reason is not None and not reason.startswith("no cache"):
            log.warning("feature cache %s not used: %s; rebuilding it", npy, reason)
        t = time.time()
        feats, indices = extract()
        if env.is_main:
            save_features(npy, meta_path, feats, indices, fp)
        env.barrier()
        how = f"built in {time.time() - t:.1f}s"
    else:
        how = "reused (fingerprint matches)"
    log.info("feature cache %s: %d x %d float32, %.1f MB, %s; the head trains from it with the evaluation "
             "transform (no augmentation) and the backbone in eval mode (--feature-cache off to train from images)",
             npy, feats.shape[0], feats.shape[1], feats.nbytes / 2 ** 20, how)
    return FeatureLoader(data.sets["train"], feats, indices, cfg["batch_size"], env.world_size, env.rank,
                         cfg["seed"], cfg["drop_last"])
