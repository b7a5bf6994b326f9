"""Image preprocessing in numpy + Pillow, shared by training, evaluation, export, infer.py, predict.py
and the service, so that every path feeds the network the same bytes (no Paddle import here).

One `Preprocess` describes both the evaluation transform and the training augmentation of a method ×
data-set recipe (models/methods/); it is stored in every checkpoint's cfg and in `inference.yml`.

    evaluation: resize → crop → [0, 1] → normalise (mean/std) → CHW
    training:   resize → augmentation (below) → [0, 1] → normalise → CHW

resize_mode
    "shorter"  the shorter side to `resize_size`, aspect kept, bilinear — torchvision's `Resize(int)`
               (`DeepHash-pytorch:utils/tools.py` image_transform, paddle_hashnet, OrthoHash COCO);
    "square"   to `resize_size` × `resize_size` with PIL's default filter (bicubic) — thuml/HashNet's and
               CSQ's `ResizeImage` (`pre_process.py`), and the pre-resized square image folders of
               OrthoHash's NUS-WIDE (256×256) and ImageNet-100 (224×224) (`orthohash:utils/datasets.py`).
eval_crop
    "center"   torchvision's `CenterCrop` (offset round((size − crop) / 2));
    "place"    thuml's `PlaceCrop` at (resize − crop − 1) / 2 on both axes, rounded by PIL's crop
               (15 for CSQ's 255 → 224; 16 for HashNet's 256 → 224).
interpolation
    None       the resize mode's filter above (and bilinear for the training crop's resize);
    "bilinear" / "bicubic"  that filter for every resize: what a backbone's pretrained weights expect
               (its `preprocess` attribute, models/vit.py: timm's, DINOv2's and CLIP's are bicubic).
train_augment
    "crop_flip"          random `crop_size` crop + horizontal flip (`RandomCrop` + `RandomHorizontalFlip`);
    "resized_crop_flip"  torchvision's `RandomResizedCrop(crop_size)` (area scale 0.08–1, aspect
                         3/4–4/3, 10 tries then a centre crop, bilinear) + flip (CSQ, thuml/HashNet,
                         OrthoHash ImageNet-100);
    "flip_jitter"        the evaluation crop, flip, `ColorJitter(brightness=0.05, contrast=0.05)` in a
                         random order (OrthoHash/RelaHash CIFAR);
    "none"               the evaluation transform itself (DeepHash-pytorch's CIFAR: `Resize(224)` only).

Random draws come from the caller's numpy Generator, so augmentation is reproducible per (seed, epoch,
image). A missing field (checkpoints and exports written before these existed) means today's
behaviour: shorter side, center crop, crop + flip.
"""
import math
from dataclasses import asdict, dataclass, fields

import numpy as np
from PIL import Image, ImageEnhance

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE_MODES = ("shorter", "square")
EVAL_CROPS = ("center", "place")
TRAIN_AUGMENTS = ("crop_flip", "resized_crop_flip", "flip_jitter", "none")
INTERPOLATIONS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}
# torchvision RandomResizedCrop defaults, and ColorJitter(brightness=0.05, contrast=0.05)
RRC_SCALE = (0.08, 1.0)
RRC_RATIO = (3 / 4, 4 / 3)
JITTER = 0.05


def random_resized_crop_box(width, height, rng, scale=RRC_SCALE, ratio=RRC_RATIO):
    """torchvision's `RandomResizedCrop.get_params`: (left, top, w, h) of the crop, drawn from `rng`."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1)), w, h
    in_ratio = width / height  # fallback: the whole image, cut to the nearest allowed aspect ratio
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


@dataclass(frozen=True)
class Preprocess:
    resize_size: int = 256
    crop_size: int = 224
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    resize_mode: str = "shorter"
    eval_crop: str = "center"
    train_augment: str = "crop_flip"
    interpolation: str = None  # None: the resize mode's own filter

    def __post_init__(self):
        if self.crop_size > self.resize_size:
            raise ValueError(f"crop size {self.crop_size} is larger than resize size {self.resize_size}")
        for value, allowed, what in ((self.resize_mode, RESIZE_MODES, "resize mode"),
                                     (self.eval_crop, EVAL_CROPS, "eval crop"),
                                     (self.train_augment, TRAIN_AUGMENTS, "train augmentation"),
                                     (self.interpolation or "bilinear", INTERPOLATIONS, "interpolation")):
            if value not in allowed:
                raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(allowed)}")

    def to_dict(self):
        """Plain values (inference.yml, code-cache fingerprints). The recipe fields are left out where they
        hold the defaults, so that a transform equal to the one before they existed keeps its fingerprint
        (and a database cached then stays valid)."""
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        for f in fields(self)[4:]:
            if d[f.name] == f.default:
                del d[f.name]
        return d

    @classmethod
    def from_dict(cls, d):
        """From `to_dict()` output, a checkpoint cfg or an inference.yml; missing optional fields keep the
        defaults (files written before they existed)."""
        kw = {f.name: d[f.name] for f in fields(cls) if d.get(f.name) is not None}
        for key in ("resize_size", "crop_size"):
            kw[key] = int(kw[key])
        for key in ("mean", "std"):
            if key in kw:
                kw[key] = tuple(float(v) for v in kw[key])
        return cls(**kw)

    # ------------------------------------------------------------------ steps
    def resize(self, img):
        if self.resize_mode == "square":
            size = (self.resize_size, self.resize_size)
            return img if img.size == size else img.resize(size, self._filter(Image.BICUBIC))
        w, h = img.size  # shorter side → resize_size, aspect kept (torchvision's Resize(int) rule)
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = self.resize_size, int(self.resize_size * long / short)
        size = (new_short, new_long) if w <= h else (new_long, new_short)
        return img if size == (w, h) else img.resize(size, self._filter(Image.BILINEAR))

    def _filter(self, default):
        return INTERPOLATIONS[self.interpolation] if self.interpolation else default

    def eval_box(self, width, height):
        """(left, top, right, bottom) of the evaluation crop in the resized image."""
        c = self.crop_size
        if self.eval_crop == "place":  # thuml PlaceCrop: float start, PIL's crop rounds it
            start = (self.resize_size - c - 1) / 2
            left, top = round(start), round(start)
        else:
            left, top = int(round((width - c) / 2.0)), int(round((height - c) / 2.0))
        return left, top, left + c, top + c

    def train_box(self, width, height, rng):
        """(left, top, right, bottom) of a training crop (before it is resized to crop_size when larger)."""
        c = self.crop_size
        if self.train_augment == "crop_flip":
            top, left = int(rng.integers(0, height - c + 1)), int(rng.integers(0, width - c + 1))
            return left, top, left + c, top + c
        if self.train_augment == "resized_crop_flip":
            left, top, w, h = random_resized_crop_box(width, height, rng)
            return left, top, left + w, top + h
        return self.eval_box(width, height)

    def normalize(self, arr):
        arr = arr.astype(np.float32) / 255.0
        arr = (arr - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(arr.transpose(2, 0, 1))

    def __call__(self, img, rng=None):
        """PIL RGB image → float32 CHW array. `rng` (np.random.Generator) applies the training augmentation."""
        img = self.resize(img)
        if rng is None or self.train_augment == "none":
            return self.normalize(np.asarray(img.crop(self.eval_box(*img.size))))
        img = img.crop(self.train_box(*img.size, rng))
        if img.size != (self.crop_size, self.crop_size):
            img = img.resize((self.crop_size, self.crop_size), self._filter(Image.BILINEAR))
        if rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        if self.train_augment == "flip_jitter":
            enhancers = (ImageEnhance.Brightness, ImageEnhance.Contrast)
            for k in rng.permutation(2):
                img = enhancers[k](img).enhance(rng.uniform(1 - JITTER, 1 + JITTER))
        return self.normalize(np.asarray(img))
