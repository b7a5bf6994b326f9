"""Command line of the two training entry points, and the resolved configuration (`cfg`, a plain
dict) stored in every checkpoint. Flags keep paddle_hashnet's names (underscore spellings are
accepted too). Flags left unset take the method's paper defaults (models/methods.py) and the data
set preset (utils/data/datasets.py); with `--resume`/`--pretrained` they take the checkpoint's values, and
a flag that contradicts the checkpoint's architecture is an error, never silently ignored.
"""
import argparse
import os

from models.backbones import BACKBONES
from models.methods import METHODS, method_options
from utils.data.datasets import PRESETS
from utils.errors import UserError
from utils.train.amp import CHOICES as AMP_CHOICES

# Keys that define the network and its codes: a checkpoint and the command line must agree on them.
ARCH_KEYS = ("method", "bit", "backbone", "num_labels", "codebook")
# Keys about this run only, never taken from a checkpoint.
RUN_KEYS = ("eval", "pretrained", "resume", "device", "output", "num_workers", "skip_bad_images",
            "allow_absolute_paths", "allow_partial_weights", "visualdl")


def _flag(parser, *names, **kw):
    """Add an option under its dashed name and its paddle_hashnet underscore spelling."""
    spellings = list(names)
    for n in names:
        if n.startswith("--") and "-" in n[2:]:
            spellings.append("--" + n[2:].replace("-", "_"))
    parser.add_argument(*dict.fromkeys(spellings), **kw)


def build_parser(description):
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("model")
    _flag(g, "--method", choices=sorted(METHODS), default=None,
          help="hashing method (default hashnet): "
               + "; ".join(f"{n}: {m.summary}" for n, m in sorted(METHODS.items())))
    _flag(g, "--bit", type=int, default=None, help="code length in bits (default 64)")
    _flag(g, "--backbone", choices=sorted(BACKBONES), default=None, help="backbone network (default alexnet)")
    _flag(g, "--backbone-weights", default=None,
          help="local ImageNet weights for the backbone: torchvision .pth/.pt, Paddle/PaddleClas .pdparams or "
               ".safetensors (README 'Pretrained weights'); nothing is downloaded")
    _flag(g, "--allow-partial-weights", action="store_true",
          help="load --backbone-weights even when some backbone parameters are not in the file (they stay random)")
    g = p.add_argument_group("data")
    _flag(g, "--dataset", choices=sorted(PRESETS), default=None,
          help="data set preset: label width and default topK (default coco)")
    _flag(g, "--data-path", default=None, help="image root the list paths are relative to (default datasets/<dataset>)")
    _flag(g, "--list-dir", default=None, help="folder with train.txt, database.txt, test.txt (default data/<dataset>)")
    _flag(g, "--topk", type=int, default=None, help="mAP@topK; -1 = whole database (default from the preset)")
    _flag(g, "--resize-size", type=int, default=None,
          help="resize the shorter side to this (default from the preset: 256, lite 72)")
    _flag(g, "--crop-size", type=int, default=None,
          help="crop size fed to the network (default from the preset: 224, lite 64)")
    _flag(g, "--num-workers", type=int, default=None, help="data loader worker processes (default 4)")
    _flag(g, "--skip-bad-images", action="store_true",
          help="log and skip missing/unreadable images instead of stopping")
    _flag(g, "--allow-absolute-paths", action="store_true", help="allow absolute image paths in lists")
    g = p.add_argument_group("training")
    _flag(g, "--epochs", type=int, default=None, help="training epochs (default: method's)")
    _flag(g, "-bs", "--batch-size", type=int, default=None, help="batch size per process (default: method's)")
    _flag(g, "-lr", "--learning-rate", dest="lr", type=float, default=None,
          help="base learning rate (default: method's)")
    _flag(g, "--optimizer", choices=("sgd", "adam", "rmsprop"), default=None, help="optimizer (default: method's)")
    _flag(g, "--weight-decay", type=float, default=None, help="L2 weight decay (default: method's)")
    _flag(g, "--lr-step", type=int, default=None,
          help="multiply the lr by --lr-gamma every this many epochs (default: method's; OrthoHash: 0.8·epochs)")
    _flag(g, "--lr-gamma", type=float, default=None, help="lr decay factor (default: method's)")
    _flag(g, "--backbone-lr-mult", type=float, default=None, help="backbone lr multiplier (default: method's)")
    _flag(g, "--head-lr-mult", type=float, default=None, help="hash layer lr multiplier (default: method's)")
    _flag(g, "--seed", type=int, default=None, help="random seed (default 2000)")
    _flag(g, "-ee", "--eval-epochs", type=int, default=None,
          help="evaluate every N epochs (and after the last); default 10")
    _flag(g, "--device", choices=("auto", "cpu", "gpu"), default="auto", help="where to run")
    _flag(g, "--amp", choices=AMP_CHOICES, default=None,
          help="mixed precision (default off): auto_cast of the forward pass, a dynamic loss scaler for fp16, "
               "losses in FP32 (utils/train/amp.py); GPU/XPU only, no effect on CPU")
    g = p.add_argument_group("checkpoints and output")
    _flag(g, "--output", default=None, help="output directory (default ./output)")
    _flag(g, "--eval", action="store_true", help="only evaluate --pretrained (or --resume) and print mAP")
    _flag(g, "--pretrained", default=None, help="checkpoint to evaluate or to start training from")
    _flag(g, "--resume", default=None, help="checkpoint to continue training from (exact: epoch, optimizer, best mAP)")
    _flag(g, "--visualdl", metavar="DIR", default=None,
          help="also write a VisualDL log there: loss, lr, mAP, code histograms, PR curve (utils/train/visualdl.py; "
               "needs pip install visualdl)")
    g = p.add_argument_group("method options (defaults from the paper)")
    for name, (opt, owners) in sorted(method_options().items()):
        kw = dict(type=opt.type, default=None, help=f"{opt.help} [{', '.join(owners)}]")
        if opt.choices:
            kw["choices"] = opt.choices
        _flag(g, "--" + name, **kw)
    return p


GENERAL_DEFAULTS = dict(method="hashnet", bit=64, backbone="alexnet", dataset="coco", num_workers=4, seed=2000,
                        eval_epochs=10, output="./output", amp="off")


def resolve(args, checkpoint_cfg=None):
    """Return the full configuration: explicit flags > checkpoint > method defaults > general defaults.

    `args` is the argparse Namespace. Raises UserError for flags that do not apply to the method and
    for architecture flags that contradict `checkpoint_cfg`.
    """
    given = {k: v for k, v in vars(args).items() if v is not None}
    base = {k: v for k, v in (checkpoint_cfg or {}).items() if k not in RUN_KEYS}
    if checkpoint_cfg:
        for key in ARCH_KEYS:
            if key in given and key in base and given[key] != base[key]:
                raise UserError(f"--{key.replace('_', '-')} {given[key]} contradicts the checkpoint "
                                f"({key} = {base[key]}); drop the flag or use a matching checkpoint")
    cfg = dict(GENERAL_DEFAULTS)
    cfg.update(base)
    cfg.update(given)
    method = METHODS[cfg["method"]]
    for name, (opt, owners) in method_options().items():
        if cfg["method"] not in owners and opt.dest in given:
            raise UserError(f"--{name} applies to {', '.join(owners)}, not to --method {cfg['method']}")
    for key, value in method.defaults.items():
        if cfg.get(key) is None:
            cfg[key] = value
    for opt in method_options():
        cfg.setdefault(opt.replace("-", "_"), None)
    preset = PRESETS[cfg["dataset"]]
    cfg.setdefault("data_path", os.path.join("datasets", cfg["dataset"]))
    cfg.setdefault("list_dir", os.path.join("data", cfg["dataset"]))
    if cfg.get("topk") is None:
        cfg["topk"] = preset.topk
    for key in ("resize_size", "crop_size"):
        if cfg.get(key) is None:
            cfg[key] = getattr(preset, key)
    _check_ranges(cfg)
    return cfg


def _check_ranges(cfg):
    positive = ("bit", "epochs", "batch_size", "resize_size", "crop_size", "eval_epochs", "lr_step")
    for key in positive:
        if cfg[key] is not None and cfg[key] <= 0:
            raise UserError(f"--{key.replace('_', '-')} must be positive, got {cfg[key]}")
    if cfg["crop_size"] > cfg["resize_size"]:
        raise UserError(f"--crop-size {cfg['crop_size']} is larger than --resize-size {cfg['resize_size']}")
    if not 0 < cfg["lr_gamma"] <= 1:
        raise UserError(f"--lr-gamma must be in (0, 1] (1 = constant lr), got {cfg['lr_gamma']}")
    if cfg["num_workers"] < 0:
        raise UserError("--num-workers must be ≥ 0")
    if cfg["topk"] == 0 or cfg["topk"] < -1:
        raise UserError(f"--topk must be a positive number or -1 (whole database), got {cfg['topk']}")
