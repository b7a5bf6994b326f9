"""Weight layouts of the Swin / ConvNeXt backbones, for `models.weights.layouts_for` (the mapper).

Our module names are torchvision's (models/swin.py, models/convnext.py), so a torchvision state dict
(`swin_t-704ceda3.pth`, `convnext_tiny-983f1562.pth`) maps by identity; what each tensor needs is decided
by models/weights.py by layer type (Linear weights transposed from PyTorch's (out, in); LayerNorm
weight/bias, the relative position bias table and its index, and the layer scale taken as they are).
The ImageNet classifier Linear (`head` for Swin, `classifier.2` for ConvNeXt) is dropped.
"""
from models.weight_layouts import Layout, _identity

_CLASSIFIER = {"swin_t": "head", "convnext_tiny": "classifier.2"}


def layouts(name):
    return [Layout({"torch": "torchvision layout", "paddle": "this project's layout"},
                   _identity(drop=(_CLASSIFIER[name],)))]


NAMES = tuple(_CLASSIFIER)
