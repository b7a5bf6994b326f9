"""Models: backbones, hash heads, and the method registry. `build_model(cfg)` rebuilds a model from
the configuration stored in every checkpoint."""
from models.backbones import BACKBONES, build_backbone
from models.build import build_model
from models.heads import HashModel
from models.methods import METHODS, register
from models.weights import load_backbone_weights

__all__ = ["BACKBONES", "METHODS", "HashModel", "build_model", "build_backbone", "load_backbone_weights",
           "register"]
