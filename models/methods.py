"""The method registry: a method is a head plus a loss, its options and its paper defaults.

Adding a method = writing a head (models/heads.py), a loss (utils/losses.py) and one `register(...)`
call here. Everything else — training, evaluation, export, inference, prediction, TIPC — is shared.
"""
from dataclasses import dataclass, field
from typing import Callable

from models.heads import HashNetHead, OrthoHashHead
from utils.codebook import CODEBOOK_METHODS, make_codebook
from utils.losses import HashNetLoss, OrthoHashLoss


@dataclass(frozen=True)
class Option:
    """A method-specific command-line option (`--name`), default taken from the method's defaults."""

    name: str
    type: Callable = float
    help: str = ""
    choices: tuple = None

    @property
    def dest(self):
        return self.name.replace("-", "_")


@dataclass(frozen=True)
class Method:
    name: str
    build_head: Callable  # (in_dim, cfg) -> nn.Layer
    build_loss: Callable  # (cfg, head, num_train) -> HashLoss
    defaults: dict  # training defaults and option defaults, from the paper / reference code
    options: tuple = field(default_factory=tuple)
    summary: str = ""


METHODS = {}


def register(method):
    METHODS[method.name] = method
    return method


def method_options():
    """{option name: (Option, [method names])} over all registered methods."""
    out = {}
    for m in METHODS.values():
        for opt in m.options:
            out.setdefault(opt.name, (opt, []))[1].append(m.name)
    return out


def build_codebook(cfg):
    return make_codebook(cfg["codebook"], cfg["num_labels"], cfg["bit"], seed=cfg["seed"])


register(Method(
    name="hashnet",
    summary="HashNet (ICCV 2017): pairwise weighted likelihood, tanh continuation",
    build_head=lambda in_dim, cfg: HashNetHead(in_dim, cfg["bit"]),
    build_loss=lambda cfg, head, num_train: HashNetLoss(
        num_train, cfg["bit"], cfg["num_labels"], alpha=cfg["alpha"], step_continuation=cfg["step_continuation"]),
    defaults=dict(optimizer="sgd", lr=1e-3, weight_decay=5e-4, epochs=150, batch_size=64, lr_step=50,
                  lr_gamma=0.5, backbone_lr_mult=1.0, head_lr_mult=10.0, alpha=0.1, step_continuation=20),
    options=(
        Option("alpha", float, "HashNet: scale α of the inner product in the pairwise likelihood"),
        Option("step-continuation", int, "HashNet: epochs per continuation step (tanh scale sqrt(k+1))"),
    ),
))

register(Method(
    name="orthohash",
    summary="OrthoHash (NeurIPS 2021): cosine to a fixed orthogonal codebook, one CE loss",
    build_head=lambda in_dim, cfg: OrthoHashHead(in_dim, cfg["bit"], build_codebook(cfg)),
    build_loss=lambda cfg, head, num_train: OrthoHashLoss(
        head.codebook.numpy(), scale=cfg["scale"], margin=cfg["margin"], loss_type=cfg["loss"]),
    defaults=dict(optimizer="adam", lr=1e-4, weight_decay=5e-4, epochs=100, batch_size=256, lr_step=None,
                  lr_gamma=0.1, backbone_lr_mult=0.1, head_lr_mult=1.0, codebook="B", margin=0.2, scale=8.0,
                  loss="cos"),
    options=(
        Option("codebook", str, "OrthoHash: codebook generator (N normal, B Bernoulli, O greedy max-Hamming, "
                                "H Hadamard)", CODEBOOK_METHODS),
        Option("margin", float, "OrthoHash: cosine/angular margin m"),
        Option("scale", float, "OrthoHash: logit scale s"),
        Option("loss", str, "OrthoHash: margin type, cosine 'cos' or angular 'arc'", ("cos", "arc")),
    ),
))
