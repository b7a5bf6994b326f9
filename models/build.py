"""`build_model(cfg)`: a model rebuilt from the configuration stored in every checkpoint."""
from models.backbones import build_backbone
from models.codebook import build_codebook
from models.heads import HashModel, remove_dropout
from models.methods import METHODS


def build_model(cfg, state_dict=None):
    """HashModel for cfg keys: method, backbone, bit, num_labels, backbone_dropout (+ the method's own
    options). With `state_dict` (a checkpoint's weights) those are loaded, and a codebook method takes
    its codebook from them instead of generating it (or reading its --codebook file) again."""
    backbone = build_backbone(cfg["backbone"])
    if not cfg.get("backbone_dropout", True):
        remove_dropout(backbone)
    if cfg.get("freeze_backbone"):  # not trained (the unsupervised references' frozen VGG-16)
        for p in backbone.parameters():
            p.stop_gradient = True
    method = METHODS[cfg["method"]]
    codebook = None
    if method.uses_codebook:
        codebook = state_dict["head.codebook"] if state_dict and "head.codebook" in state_dict else build_codebook(cfg)
    model = HashModel(backbone, method.build_head(backbone.out_dim, cfg, codebook))
    if state_dict is not None:
        model.set_state_dict(state_dict)
    return model
