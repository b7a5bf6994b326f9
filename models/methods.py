"""The method registry: a method is a head plus a loss, its options and its paper defaults.

Adding a method = writing a head (models/heads.py), a loss (models/losses.py) and one `register(...)`
call here. Everything else — training, evaluation, export, inference, prediction, TIPC — is shared.
"""
import sys
from dataclasses import dataclass, field
from typing import Callable

from models.heads import BatchNormHead, LinearHead
from models.codebook import CODEBOOK_METHODS, make_codebook
from utils.errors import UserError, cli_entry
from utils.registry import Registry
from models.losses import CSQLoss, DPSHLoss, HashNetLoss, OrthoHashLoss, RelaHashLoss


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
    # flags for training from a random backbone on the generated lite data (the paper's lr assumes
    # ImageNet weights); used by the tests, scripts/quickstart.sh and scripts/benchmark_methods.sh
    lite_flags: tuple = ()


METHODS = Registry("method")
register = METHODS.add


def method_options():
    """{option name: (Option, [method names])} over all registered methods."""
    out = {}
    for m in METHODS.values():
        for opt in m.options:
            out.setdefault(opt.name, (opt, []))[1].append(m.name)
    return out


CODEBOOK_OPTION = Option("codebook", str, "target codes, one per class: N normal, B Bernoulli, O greedy "
                                          "max-Hamming, H Hadamard", CODEBOOK_METHODS)
MARGIN_OPTION = Option("margin", float, "margin m on the true classes' similarity")
SCALE_OPTION = Option("scale", float, "logit scale (OrthoHash s, RelaHash beta)")
QUANT_OPTION = Option("quant-weight", float, "weight of the quantization term (DPSH eta, CSQ lambda)")


def build_codebook(cfg):
    return make_codebook(cfg["codebook"], cfg["num_labels"], cfg["bit"], seed=cfg["seed"])


register(Method(
    name="hashnet",
    summary="HashNet (ICCV 2017): pairwise weighted likelihood, tanh continuation",
    build_head=lambda in_dim, cfg: LinearHead(in_dim, cfg["bit"]),
    build_loss=lambda cfg, head, num_train: HashNetLoss(
        num_train, cfg["bit"], cfg["num_labels"], alpha=cfg["alpha"], step_continuation=cfg["step_continuation"]),
    defaults=dict(optimizer="sgd", lr=1e-3, weight_decay=5e-4, epochs=150, batch_size=64, lr_step=50,
                  lr_gamma=0.5, backbone_lr_mult=1.0, head_lr_mult=10.0, alpha=0.1, step_continuation=20),
    options=(
        Option("alpha", float, "HashNet: scale α of the inner product in the pairwise likelihood"),
        Option("step-continuation", int, "HashNet: epochs per continuation step (tanh scale sqrt(k+1))"),
    ),
    lite_flags=("-lr", "3e-4", "--head-lr-mult", "1"),
))

register(Method(
    name="orthohash",
    summary="OrthoHash (NeurIPS 2021): cosine to a fixed orthogonal codebook, one CE loss",
    build_head=lambda in_dim, cfg: BatchNormHead(in_dim, cfg["bit"], build_codebook(cfg)),
    build_loss=lambda cfg, head, num_train: OrthoHashLoss(
        head.codebook.numpy(), scale=cfg["scale"], margin=cfg["margin"], loss_type=cfg["loss"]),
    defaults=dict(optimizer="adam", lr=1e-4, weight_decay=5e-4, epochs=100, batch_size=256, lr_step=None,
                  lr_gamma=0.1, backbone_lr_mult=0.1, head_lr_mult=1.0, codebook="B", margin=0.2, scale=8.0,
                  loss="cos"),
    options=(CODEBOOK_OPTION, MARGIN_OPTION, SCALE_OPTION,
             Option("loss", str, "margin type, cosine 'cos' or angular 'arc'", ("cos", "arc"))),
    lite_flags=("-lr", "1e-3"),
))

register(Method(
    name="relahash",
    summary="RelaHash (IEEE Access 2023): relative position of the batch to normalised centroids, one CE loss",
    build_head=lambda in_dim, cfg: BatchNormHead(in_dim, cfg["bit"], build_codebook(cfg)),
    build_loss=lambda cfg, head, num_train: RelaHashLoss(head.codebook.numpy(), scale=cfg["scale"],
                                                         margin=cfg["margin"]),
    # official code: Adam 1e-4 (backbone x0.1), weight decay 5e-4, batch 16, 100 epochs, x0.1 at 80%,
    # MaxHD centroids (our "O"), beta 8, m 0.5
    defaults=dict(optimizer="adam", lr=1e-4, weight_decay=5e-4, epochs=100, batch_size=16, lr_step=None,
                  lr_gamma=0.1, backbone_lr_mult=0.1, head_lr_mult=1.0, codebook="O", margin=0.5, scale=8.0),
    options=(CODEBOOK_OPTION, MARGIN_OPTION, SCALE_OPTION),
    lite_flags=("-lr", "1e-3"),
))

register(Method(
    name="dpsh",
    summary="DPSH (IJCAI 2016): pairwise likelihood of sigmoid(u_i.u_j / 2) plus quantization penalty",
    build_head=lambda in_dim, cfg: LinearHead(in_dim, cfg["bit"]),
    build_loss=lambda cfg, head, num_train: DPSHLoss(num_train, cfg["bit"], cfg["num_labels"],
                                                     quant_weight=cfg["quant_weight"]),
    # DeepHash-pytorch's DPSH: RMSprop 1e-5, weight decay 1e-5, batch 64, 150 epochs, constant lr, eta 0.1
    defaults=dict(optimizer="rmsprop", lr=1e-5, weight_decay=1e-5, epochs=150, batch_size=64, lr_step=None,
                  lr_gamma=1.0, backbone_lr_mult=1.0, head_lr_mult=1.0, quant_weight=0.1),
    options=(QUANT_OPTION,),
    lite_flags=("-lr", "3e-5"),
))

register(Method(
    name="csq",
    summary="CSQ (CVPR 2020): BCE to Hadamard hash centres plus quantization",
    build_head=lambda in_dim, cfg: LinearHead(in_dim, cfg["bit"], codebook=build_codebook(cfg)),
    build_loss=lambda cfg, head, num_train: CSQLoss(head.codebook.numpy(), quant_weight=cfg["quant_weight"],
                                                    seed=cfg["seed"]),
    # official code (Hadamard-Matrix-for-hashing): Adam 1e-3 (backbone x0.01), no weight decay, batch 64,
    # 90 epochs, lr x0.7 every 10 epochs, lambda (quantization) 0.05
    defaults=dict(optimizer="adam", lr=1e-3, weight_decay=0.0, epochs=90, batch_size=64, lr_step=10,
                  lr_gamma=0.7, backbone_lr_mult=0.01, head_lr_mult=1.0, codebook="H", quant_weight=0.05),
    options=(CODEBOOK_OPTION, QUANT_OPTION),
    lite_flags=("-lr", "1e-3", "--backbone-lr-mult", "0.1"),
))



@cli_entry
def print_lite_flags(argv=None):
    """For the shell scripts: `python -c 'from models.methods import print_lite_flags; print_lite_flags()'
    METHOD` prints the method's lite flags (a one-line error for an unknown method)."""
    name = (sys.argv[1:] if argv is None else argv)[0]
    if name not in METHODS:
        raise UserError(f"unknown method {name!r}; registered: {', '.join(METHODS)}")
    print(" ".join(METHODS[name].lite_flags))
