"""The vocabulary of weight layouts: how a source file's module paths become our parameter names. Shared by
`models/weights.py` (AlexNet, VGG, ResNet) and the layout modules of the newer backbones
(`models/vit_weights.py`, `models/swin_convnext_weights.py`), which `models.weights.layouts_for` asks; they
import this module, never models/weights.py, so no two modules import each other."""
from dataclasses import dataclass, field

DROP = "drop"  # a module path the mapping drops on purpose (the ImageNet classifier)


@dataclass
class Layout:
    """How a source's module paths become ours: `rename(path)` → our path, DROP, or None (unknown).
    `scale` maps our module path → factor for its weight (paddle.vision AlexNet's dropout)."""

    name: object  # str, or {convention: str} where the same names come from two libraries
    rename: object
    scale: dict = field(default_factory=dict)
    refuse: object = None  # optional check(keys) → message when this layout is recognised but unsupported
    # whole-key renaming (source name → our parameter name, DROP or None) instead of `rename`'s module paths
    rename_key: object = None
    convert: object = None  # optional (our name, array, our shape) → array of an equivalent shape
    notes: object = None  # optional (weights, backbone, flag, prefix) → extra summary parts (may raise UserError)
    drop_label: str = "ImageNet classifier"  # what the dropped tensors are, for the summary

    def label(self, convention):
        return self.name[convention] if isinstance(self.name, dict) else self.name


def _table(table, drop=()):
    def rename(path):
        if path in table:
            return table[path]
        if any(path == d or path.startswith(d + ".") for d in drop):
            return DROP
        return None
    return rename


def _identity(prefix="", drop=()):
    def rename(path):
        if any(path == d or path.startswith(d + ".") for d in drop):
            return DROP
        return prefix + path
    return rename
