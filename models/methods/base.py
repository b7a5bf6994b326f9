"""What a method is: a head, a loss, its own options, and its recipe — the training settings of its
official code, per data set where the references differ, each value with where it comes from.

A recipe is resolved for a run (utils/train/config.py) in this order, later entries winning:

    general defaults → the data-set preset → the method's base recipe → its rules that match the run
    (data set / backbone / bit) → the transformer backbones' rules (backbone_rules.py) → `--recipe scratch`
    (random-init settings) → the checkpoint → flags

`python main_single_gpu.py --method M --dataset D --print-recipe` prints the result with the source
of every value.
"""
from dataclasses import dataclass, field, replace
from typing import Callable

from models.codebook import CODEBOOK_METHODS
from utils.registry import Registry

PAPER, OFFICIAL, PROJECT = "paper", "official code", "this project"


@dataclass(frozen=True)
class Option:
    """A method-specific command-line option (`--name`), its default taken from the method's recipe."""

    name: str
    type: Callable = float
    help: str = ""
    choices: tuple = None

    @property
    def dest(self):
        return self.name.replace("-", "_")


@dataclass(frozen=True)
class Rule:
    """Recipe values for the runs whose cfg matches `when` (key → value, or a tuple of allowed values)."""

    when: dict
    values: dict
    source: str

    def matches(self, cfg):
        return all(cfg.get(k) in (v if isinstance(v, tuple) else (v,)) for k, v in self.when.items())


def always(values, source):
    """A rule that applies to every run."""
    return Rule({}, values, source)


@dataclass(frozen=True)
class Recipe:
    """`rules` in order (later ones win where they match); `scratch`: what `--recipe scratch` applies on
    top, for training from a random backbone (the official lr assumes ImageNet weights)."""

    rules: tuple
    scratch: dict = field(default_factory=dict)

    def resolve(self, cfg, scratch=False, extra=()):
        """[(key, value, source)] for a run described by cfg (method, dataset, backbone, bit), in order;
        `extra` (the backbone rules, backbone_rules.py) comes after the method's own rules, before scratch."""
        out = [(k, v, r.source) for r in self.rules if r.matches(cfg) for k, v in r.values.items()]
        out += list(extra)
        if scratch:
            out += [(k, v, f"{PROJECT}: --recipe scratch") for k, v in self.scratch.items()]
        return out


# transforms shared by several recipes (utils/data/transforms.py); sizes come from the data-set preset
# unless given
SHORTER_CROP = dict(resize_mode="shorter", train_augment="crop_flip", eval_crop="center")
DEEPHASH_CIFAR = dict(resize_size=224, crop_size=224, resize_mode="shorter", train_augment="none",
                      eval_crop="center")
# --recipe scratch of the methods DeepHash-pytorch trains with RMSprop (PyTorch's update) at lr 1e-5: that
# lr, which also did best from random init (64 bits, lite_single, 8 epochs, batch 16, mAP@all):
# DPSH 0.2757 at 1e-5, 0.2320 at 3e-5, 0.2024 at 1e-4; DCH 0.6054 at 1e-5, 0.1122 (chance) at 1e-4;
# DHN 0.2647 at 1e-5, 0.1606 at 1e-4; DSH 0.3601 at 1e-5, 0.2178 at 1e-4 (DFH, DPN, LCDSH: not swept)
RMSPROP_SCRATCH = dict(lr=1e-5, batch_size=32)
DEEPHASH_CIFAR_SOURCE = f"{OFFICIAL}: DeepHash-pytorch:utils/tools.py cifar_dataset (Resize(224) only)"


@dataclass(frozen=True)
class Method:
    name: str
    build_head: Callable  # (in_dim, cfg, codebook or None) -> nn.Layer
    # (cfg, head, num_train, gather=None) -> HashLoss; `gather` (a batch tensor -> its concatenation over
    # every process) is passed to the losses that keep a memory bank over the training set
    build_loss: Callable
    recipe: Recipe
    options: tuple = field(default_factory=tuple)
    summary: str = ""
    uses_codebook: bool = False  # one ±1 target code per class, a buffer of the head (head.codebook)
    legacy: dict = field(default_factory=dict)  # values of recipe keys in checkpoints written before them
    # False: trained without labels (the training list may carry none; database/test labels still
    # score the evaluation)
    supervised: bool = True
    # shallow methods: (features (n, d) float32 of the training list, cfg, head) -> a number for the
    # loss column; the engine then runs one feature pass + this closed-form fit instead of SGD epochs
    fit_features: Callable = None


METHODS = Registry("method")
register = METHODS.add

# What a checkpoint written before a recipe key existed was trained with (a method's own: Method.legacy).
LEGACY = dict(drop_last=True, backbone_dropout=True, resize_mode="shorter", eval_crop="center",
              train_augment="crop_flip", rmsprop_form="paddle", bn_variance="biased", label_mode="smooth",
              feature_cache="off")


def fill_legacy(cfg):
    """cfg of a checkpoint, with the recipe keys it predates set to what it was trained with."""
    method = METHODS.get(cfg.get("method"))
    return {**LEGACY, **(method.legacy if method else {}), **cfg}


def method_options():
    """{option name: (Option, [method names])} over all registered methods. Methods may share an option
    name (a paper symbol such as α) with different meanings: their help texts are joined; the type and
    choices must agree."""
    out = {}
    for m in METHODS.values():
        for opt in m.options:
            if opt.name not in out:
                out[opt.name] = (opt, [m.name])
                continue
            first, owners = out[opt.name]
            if (first.type, first.choices) != (opt.type, opt.choices):
                raise TypeError(f"option --{opt.name} of {m.name} differs in type/choices from {owners[0]}'s")
            if opt.help not in first.help.split("; "):
                first = replace(first, help=f"{first.help}; {opt.help}")
            out[opt.name] = (first, owners + [m.name])
    return out


CODEBOOK_OPTION = Option("codebook", str, "target codes, one per class: N normal, B Bernoulli, O greedy "
                                          "max-Hamming, H Hadamard, or a file of ±1 rows (.npy, or a CSQ "
                                          f"hash-centre .pkl) — one of {', '.join(CODEBOOK_METHODS)} or FILE")
MARGIN_OPTION = Option("margin", float, "margin m on the true classes' similarity")
SCALE_OPTION = Option("scale", float, "logit scale (OrthoHash s, RelaHash beta)")
QUANT_OPTION = Option("quant-weight", float, "weight of the quantization term (DPSH eta, CSQ lambda)")
LABEL_MODE_OPTION = Option(
    "label-mode", str, "multi-label data: 'smooth' = label-smoothing CE over all labels (the paper), 'first' = "
                       "CE on the first label only (OrthoHash's released code for COCO)", ("smooth", "first"))


def deephash_rules(file, **values):
    """The recipe rules of a DeepHash-pytorch method: `values` (its get_config: optimizer, lr, ...) with
    one lr for every parameter, the last partial batch kept, DeepHash-pytorch:utils/tools.py's transforms (Resize(256) +
    RandomCrop(224) + flip, CenterCrop(224) at test; CIFAR: Resize(224) only)."""
    base = dict(lr_step=None, lr_gamma=1.0, backbone_lr_mult=1.0, head_lr_mult=1.0, drop_last=False)
    return (always({**base, **values}, f"{OFFICIAL}: DeepHash-pytorch {file} get_config"),
            always(dict(SHORTER_CROP), "DeepHash-pytorch:utils/tools.py image_transform"),
            Rule(dict(dataset="cifar10"), DEEPHASH_CIFAR, DEEPHASH_CIFAR_SOURCE))
