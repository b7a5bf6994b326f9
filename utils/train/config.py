"""Command line of the two training entry points, and the resolved configuration (`cfg`, a plain
dict) stored in every checkpoint. Flags keep paddle_hashnet's names (underscore spellings are
accepted too). Flags left unset take the method's recipe (models/methods/: its official code's
settings, per data set where they differ) over the data-set preset (utils/data/datasets.py); with
`--resume`/`--pretrained` they take the checkpoint's values, and a flag that contradicts the
checkpoint's architecture is an error, never silently ignored. `--print-recipe` prints the resolved
configuration with the source of every value.
"""
import argparse
import os

from models.backbones import BACKBONES, backbone_preprocess
from models.methods import METHODS, method_options
from models.methods.backbone_rules import backbone_rules
from models.methods.base import PROJECT
from utils.cli import add_flag as _flag
from utils.data.datasets import PRESETS
from utils.data.transforms import EVAL_CROPS, RESIZE_MODES, TRAIN_AUGMENTS
from utils.errors import UserError
from utils.train.amp import CHOICES as AMP_CHOICES
from utils.train.feature_cache import MODES as FEATURE_CACHE_MODES
from utils.train.optim import RMSPROP_FORMS

# Keys that define the network and its codes: a checkpoint and the command line must agree on them.
ARCH_KEYS = ("method", "bit", "backbone", "num_labels", "codebook", "head")
# Keys about this run only, never taken from a checkpoint.
RUN_KEYS = ("eval", "pretrained", "resume", "device", "output", "num_workers", "skip_bad_images",
            "allow_absolute_paths", "allow_partial_weights", "recipe", "print_recipe", "visualdl")


def build_parser(description):
    p = argparse.ArgumentParser(description=description,
                                formatter_class=DefaultsHelpFormatter)
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
    _flag(g, "--resize-mode", choices=RESIZE_MODES, default=None,
          help="'shorter' side to --resize-size (aspect kept) or a 'square' of it (default: the recipe's)")
    _flag(g, "--train-augment", choices=TRAIN_AUGMENTS, default=None,
          help="training augmentation (utils/data/transforms.py; default: the recipe's)")
    _flag(g, "--eval-crop", choices=EVAL_CROPS, default=None,
          help="evaluation crop: 'center', or thuml's 'place' at (resize - crop - 1) / 2 (default: the recipe's)")
    _flag(g, "--num-workers", type=int, default=None, help="data loader worker processes (default 4)")
    _flag(g, "--skip-bad-images", action="store_true",
          help="log and skip missing/unreadable images instead of stopping")
    _flag(g, "--allow-absolute-paths", action="store_true", help="allow absolute image paths in lists")
    g = p.add_argument_group("training")
    _flag(g, "--recipe", choices=("paper", "scratch"), default="paper",
          help="'paper': the method's official settings (for ImageNet-initialised backbones); 'scratch': its "
               "settings for a random backbone (larger lr, a batch that leaves more steps per epoch)")
    _flag(g, "--print-recipe", action="store_true",
          help="print the resolved settings and where each value comes from, then exit")
    _flag(g, "--epochs", type=int, default=None, help="training epochs (default: method's)")
    _flag(g, "-bs", "--batch-size", type=int, default=None, help="batch size per process (default: method's)")
    _flag(g, "-lr", "--lr", "--learning-rate", dest="lr", type=float, default=None,
          help="base learning rate (default: method's)")
    _flag(g, "--optimizer", choices=("sgd", "adam", "rmsprop"), default=None, help="optimizer (default: method's)")
    _flag(g, "--rmsprop-form", choices=RMSPROP_FORMS, default=None,
          help="RMSProp update: 'pytorch' g/(sqrt(v)+eps) as the reference code, or Paddle's built-in g/sqrt(v+eps)")
    _flag(g, "--drop-last", action=argparse.BooleanOptionalAction, default=None,
          help="drop the last partial training batch of an epoch (default: the recipe's)")
    _flag(g, "--backbone-dropout", action=argparse.BooleanOptionalAction, default=None,
          help="the backbone's Dropout layers active in training (default: the recipe's; RelaHash: off)")
    _flag(g, "--freeze-backbone", action=argparse.BooleanOptionalAction, default=None,
          help="keep the backbone's weights fixed, train only the hash layer (default: the recipe's; the "
               "unsupervised GreedyHash and BiHalf references freeze their VGG-16)")
    _flag(g, "--feature-cache", choices=FEATURE_CACHE_MODES, default=None,
          help="with --freeze-backbone, 'auto' passes the training list once through the backbone (eval mode: "
               "Dropout off, BatchNorm on running statistics) with the EVALUATION transform, caches the features "
               "in <output>/train_features.npy (fingerprinted: rebuilt when the backbone, its weights, the "
               "preprocessing or the list change) and trains the head from them every epoch - much faster, but "
               "no training augmentation; every SGD method works this way (closed-form ones do one feature "
               "pass anyway). 'off' runs the frozen backbone on every augmented batch (default auto)")
    _flag(g, "--bn-variance", choices=("unbiased", "biased"), default=None,
          help="BatchNorm heads' running variance update: PyTorch's 'unbiased' or Paddle's 'biased'")
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


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" to a flag's help, except where the default is None: those flags take
    their value from the recipe, the preset or the checkpoint, which their help names itself."""

    def _get_help_string(self, action):
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


GENERAL_DEFAULTS = dict(method="hashnet", bit=64, backbone="alexnet", dataset="coco", num_workers=4, seed=2000,
                        eval_epochs=10, output="./output", drop_last=True, backbone_dropout=True, freeze_backbone=False,
                        rmsprop_form="pytorch", bn_variance="unbiased", resize_mode="shorter", eval_crop="center",
                        train_augment="crop_flip", recipe="paper", amp="off", feature_cache="auto")


def resolve(args, checkpoint_cfg=None, sources=None):
    """Return the full configuration: explicit flags > checkpoint > the method's recipe for this run >
    the data-set preset > general defaults. `sources`, a dict if given, receives key → where it came from.

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
    sources = {} if sources is None else sources
    layers = [(GENERAL_DEFAULTS, f"{PROJECT} (general default)")]
    cfg = {**GENERAL_DEFAULTS, **base, **given}
    method = METHODS[cfg["method"]]
    for name, (opt, owners) in method_options().items():
        if cfg["method"] not in owners and opt.dest in given:
            raise UserError(f"--{name} applies to {', '.join(owners)}, not to --method {cfg['method']}")
    preset = PRESETS[cfg["dataset"]]
    layers.append(({"topk": preset.topk, "resize_size": preset.resize_size, "crop_size": preset.crop_size,
                    "data_path": os.path.join("datasets", cfg["dataset"]),
                    "list_dir": os.path.join("data", cfg["dataset"])}, f"data-set preset '{cfg['dataset']}'"))
    layers.append((backbone_preprocess(cfg["backbone"]), f"backbone {cfg['backbone']} preprocessing"))
    for key, value, source in method.recipe.resolve(cfg, scratch=cfg["recipe"] == "scratch", extra=backbone_rules(cfg)):
        layers.append(({key: value}, f"{method.name} recipe: {source}"))
    layers += [(base, "checkpoint"), (given, "command line")]
    cfg = {}
    for values, source in layers:
        for key, value in values.items():
            if value is not None or key not in cfg:
                cfg[key] = value
                sources[key] = source
    for opt in method_options():
        cfg.setdefault(opt.replace("-", "_"), None)
    _check_ranges(cfg)
    return cfg


def format_recipe(cfg, sources):
    """The --print-recipe table: every training-relevant key, its value and where it came from."""
    skip = set(RUN_KEYS) | {"data_path", "list_dir", "backbone_weights", "lists_sha256"}
    owned = {opt.replace("-", "_"): owners for opt, (_, owners) in method_options().items()}
    keys = [k for k in cfg if k not in skip and (k not in owned or cfg["method"] in owned[k])]
    width = max(len(k) for k in keys)
    lines = [f"recipe for --method {cfg['method']} --dataset {cfg['dataset']} --backbone {cfg['backbone']} "
             f"--bit {cfg['bit']} (--recipe {cfg['recipe']})"]
    lines += [f"  {k:<{width}}  {cfg[k]!s:<12}  {sources.get(k, '')}" for k in keys]
    return "\n".join(lines)


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
