"""Image preprocessing in numpy + Pillow, shared by training, evaluation, infer.py and predict.py so
that every path feeds the network the same bytes (no Paddle import here).

Evaluation: resize the shorter side to `resize_size` (bilinear), center-crop `crop_size`, scale to
[0, 1], normalise with mean/std, HWC → CHW. Training: the same with a random crop and a random
horizontal flip drawn from the caller's numpy Generator (so augmentation is reproducible per epoch).
"""
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageError(Exception):
    """An image that cannot be opened or decoded."""


def load_image(path):
    """Open an image file as RGB, fully decoded (so truncated files fail here, not later)."""
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")
    except FileNotFoundError:
        raise ImageError("file not found")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"not a readable image ({type(exc).__name__}: {exc})")


@dataclass(frozen=True)
class Preprocess:
    resize_size: int = 256
    crop_size: int = 224
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD

    def __post_init__(self):
        if self.crop_size > self.resize_size:
            raise ValueError(f"crop size {self.crop_size} is larger than resize size {self.resize_size}")

    def to_dict(self):
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d):
        return cls(int(d["resize_size"]), int(d["crop_size"]), tuple(d["mean"]), tuple(d["std"]))

    def resize(self, img):
        """Shorter side → resize_size, aspect kept (torchvision's Resize(int) rule)."""
        w, h = img.size
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = self.resize_size, int(self.resize_size * long / short)
        size = (new_short, new_long) if w <= h else (new_long, new_short)
        return img if size == (w, h) else img.resize(size, Image.BILINEAR)

    def normalize(self, arr):
        arr = arr.astype(np.float32) / 255.0
        arr = (arr - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(arr.transpose(2, 0, 1))

    def __call__(self, img, rng=None):
        """PIL RGB image → float32 CHW array. `rng` (np.random.Generator) enables train augmentation."""
        arr = np.asarray(self.resize(img))
        h, w = arr.shape[:2]
        c = self.crop_size
        if rng is None:
            top, left = int(round((h - c) / 2.0)), int(round((w - c) / 2.0))
        else:
            top, left = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
        arr = arr[top:top + c, left:left + c]
        if rng is not None and rng.random() < 0.5:
            arr = arr[:, ::-1]
        return self.normalize(arr)
