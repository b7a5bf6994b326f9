"""Recipe rules for the transformer-era backbones (ViT, DINOv2, CLIP ViT, Swin, ConvNeXt), from the
references that train hashing methods on them, in one place. `Recipe.resolve` (base.py) applies the ones
that match a run after the method's own rules (so they replace its AlexNet-era values) and before
`--recipe scratch`, the checkpoint and the flags; `--print-recipe` names each value's source.

- VTS (Dubey et al., "Vision Transformer Hashing for Image Retrieval", ICME 2022), official code
  shivram1987/VisionTransformerHashing: DSH, HashNet, GreedyHash, DPN and CSQ (and IDHN, not here) on an
  ImageNet-21k ViT-B/32 (the default in every `get_config`) or ViT-B/16. Every script: Adam lr 1e-5 on all
  parameters (one lr, torch's Adam without weight decay), no lr schedule, 150 epochs, batch 32;
  VisionTransformerHashing:utils/tools.py image_transform: Resize(256) + flip + RandomCrop(224),
  CenterCrop(224) at test, ImageNet mean/std; CIFAR Resize(224) only (cifar_dataset). Method constants:
  DSH α 0.1, HashNet α 0.1 and continuation step 20, GreedyHash α 0.1, DPN m 1 / p 0.5 (= our recipes),
  CSQ λ 1e-4 (ours 0.05 / 0.001). Applied to every ViT backbone here (VTS_BACKBONES): the only ViT-hashing
  reference that trains these methods; vit_b_16 is its ViT-B/16 architecture, the others are the same family.
- CISiPLab/cisip-FIRe (the OrthoHash authors' toolkit): cisip-FIRe:models/architectures/helper.py builds vit
  (vit_base_patch16_224), vitsmall, swin(tiny), convnext with no backbone-specific setting — a run takes
  the method's template and train.py's defaults whatever the backbone. For OrthoHash that is
  configs/templates/orthocos.yaml (bs 64, lr 1e-4, wd 5e-4, backbone_lr_scale 0.1, m 0.3, s 8, cent_init
  M = the greedy max-Hamming codebook, our O: functions/loss/dpn.py get_centroid) over train.py (Adam,
  100 epochs, step decay ×0.1 at 0.8·epochs): applied to every transformer backbone here
  (FIRE_BACKBONES), since FIRe is the reference that trains OrthoHash on them. kamwoh/orthohash (the
  AlexNet recipe) differs in batch 256, m 0.2 and codebook B. The transforms stay kamwoh/orthohash's
  per-data-set rules (FIRe's configs.py `dataset` is the same code).

Where the two disagree: FIRe also has HashNet/CSQ/DPN/GreedyHash templates (Adam 1e-4, backbone ×0.1,
batch 64, 100 epochs); for the ViT backbones VTS wins (its numbers are ViT numbers; FIRe reports none
for any transformer), and Swin/ConvNeXt get no rule for those methods (VTS does not train them; FIRe's
templates are its AlexNet settings unchanged) — the method's recipe applies, overridable by flags.
Not reproduced (docs/recipes.md): VTS's head (Dropout → Linear over all (n+1)·768 token outputs →
ReLU → Linear to the bits) — the hash layer here is the method's own head on the class token; VTS's and
FIRe's ImageNet mean/std for every backbone — here each backbone's weights' own (models/vit.py). The VTS
paper's text was not available to check against the code.
"""
from models.methods.base import OFFICIAL, Rule

VTS = "shivram1987/VisionTransformerHashing"
FIRE = "CISiPLab/cisip-FIRe"

VIT_BACKBONES = ("vit_b_16", "vit_s_16", "dinov2_vits14", "dinov2_vitb14", "clip_vit_b32", "clip_vit_b32_quickgelu",
                 "clip_vit_b16", "clip_vit_b16_quickgelu")
VTS_BACKBONES = VIT_BACKBONES
FIRE_BACKBONES = VIT_BACKBONES + ("swin_t", "convnext_tiny")
REAL_DATASETS = ("coco", "nuswide", "imagenet")  # the lite presets (64 px) keep their sizes

# lr_gamma 1: no schedule whatever the method's lr_step (a None in a rule cannot replace a method's value)
VTS_TRAIN = dict(optimizer="adam", lr=1e-5, weight_decay=0.0, epochs=150, batch_size=32, lr_gamma=1.0,
                 backbone_lr_mult=1.0, head_lr_mult=1.0, drop_last=False, resize_mode="shorter",
                 train_augment="crop_flip", eval_crop="center")
VTS_SOURCE = f"{OFFICIAL}: {VTS} {{file}} get_config, VisionTransformerHashing:utils/tools.py image_transform"
VTS_METHODS = {"dsh": "DSH.py", "hashnet": "HashNet.py", "greedyhash": "GreedyHash.py", "dpn": "DPN.py",
               "csq": "CSQ.py"}


def _vts_rules():
    rules = []
    for method, file in VTS_METHODS.items():
        rules.append(Rule(dict(method=method, backbone=VTS_BACKBONES), dict(VTS_TRAIN),
                          VTS_SOURCE.format(file=file)))
    rules.append(Rule(dict(method="csq", backbone=VTS_BACKBONES), dict(quant_weight=1e-4),
                      f"{OFFICIAL}: {VTS} CSQ.py get_config (lambda 0.0001)"))
    methods = tuple(VTS_METHODS)
    rules.append(Rule(dict(method=methods, backbone=VTS_BACKBONES, dataset=REAL_DATASETS),
                      dict(resize_size=256, crop_size=224),
                      f"{OFFICIAL}: {VTS} get_config (resize_size 256, crop_size 224)"))
    rules.append(Rule(dict(method=methods, backbone=VTS_BACKBONES, dataset="cifar10"),
                      dict(resize_size=224, crop_size=224, train_augment="none"),
                      f"{OFFICIAL}: {VTS} VisionTransformerHashing:utils/tools.py cifar_dataset (Resize(224) only)"))
    return tuple(rules)


FIRE_RULES = (  # lr_step: the method's None (0.8·epochs), as FIRe's step_size 0.8
    Rule(dict(method="orthohash", backbone=FIRE_BACKBONES),
         dict(optimizer="adam", lr=1e-4, weight_decay=5e-4, epochs=100, batch_size=64, lr_gamma=0.1,
              backbone_lr_mult=0.1, margin=0.3, scale=8.0, codebook="O"),
         f"{OFFICIAL}: {FIRE} configs/templates/orthocos.yaml over train.py's defaults (no per-backbone "
         "settings in cisip-FIRe:models/architectures/helper.py)"),
)

BACKBONE_RULES = _vts_rules() + FIRE_RULES


def backbone_rules(cfg):
    """[(key, value, source)] of the rules above that match the run, in order (later ones win)."""
    return [(k, v, r.source) for r in BACKBONE_RULES if r.matches(cfg) for k, v in r.values.items()]
