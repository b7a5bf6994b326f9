"""Models: backbones, hash heads, and the method registry. `build_model(cfg)` rebuilds a model from
the configuration stored in every checkpoint."""
from models.backbones import BACKBONES, build_backbone
from models.heads import HashModel
from models.methods import METHODS, register
from models.weights import load_backbone_weights


def build_model(cfg):
    """HashModel for cfg keys: method, backbone, bit, num_labels (+ the method's own options)."""
    backbone = build_backbone(cfg["backbone"])
    head = METHODS[cfg["method"]].build_head(backbone.out_dim, cfg)
    return HashModel(backbone, head)


__all__ = ["BACKBONES", "METHODS", "HashModel", "build_model", "build_backbone", "load_backbone_weights",
           "register"]
