"""One interface over the ways to run a trained model on a batch of images, and `inference.yml`.

    Encoder.run(batch float32 NCHW) -> continuous codes float32 (n, bit); sign(·) is the binary code.

- `DygraphEncoder`: the checkpoint, rebuilt in Paddle's dynamic graph.
- the exported runtimes (Paddle Inference, ONNX Runtime): the registry in `utils/deploy/runtimes.py`,
  their exporters and encoders, `open_exported(model_dir, backend)`.
- `utils/deploy/searcher.py`: query-by-image search over a database (`open_search`).

`inference.yml` (written by export_model.py next to the model files) carries what a deployed model
needs besides its weights: preprocessing, code length, method, and the weights' fingerprint.
Paddle and ONNX Runtime are imported only by the encoder that needs them.
"""
import contextlib
import os
import time

import numpy as np
import yaml

from utils.errors import UserError
from utils.fileio import write_text
from utils.data.transforms import Preprocess

YML = "inference.yml"
PREFIX = "inference"


# ----------------------------------------------------------------------------------------- inference.yml
def write_inference_yml(directory, cfg, weights_fingerprint, files):
    meta = {
        "model": {"method": cfg["method"], "backbone": cfg["backbone"], "bit": int(cfg["bit"]),
                  "num_labels": int(cfg["num_labels"]), "dataset": cfg["dataset"],
                  "input_shape": [3, int(cfg["crop_size"]), int(cfg["crop_size"])],
                  "output": "continuous code (float32, n x bit); binary code = sign, > 0 -> 1"},
        "preprocess": Preprocess.from_dict(cfg).to_dict(),
        "weights_fingerprint": weights_fingerprint,
        "files": files,
        "trained_on": {k: cfg.get(k) for k in ("dataset", "data_path", "list_dir")},
    }
    write_text(os.path.join(directory, YML), yaml.safe_dump(meta, sort_keys=False))
    return meta


def read_inference_yml(directory, flag="--model-dir"):
    path = os.path.join(directory, YML)
    if not os.path.isfile(path):
        raise UserError(f"{flag} {directory}: no {YML} there; export a checkpoint first: "
                        f"python export_model.py --pretrained output/best.pdparams --output-dir {directory}")
    try:
        with open(path, encoding="utf-8") as f:
            meta = yaml.safe_load(f)
        meta["preprocess_obj"] = Preprocess.from_dict(meta["preprocess"])
        int(meta["model"]["bit"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path}: not a valid {YML} ({type(exc).__name__}: {exc}); re-run export_model.py")
    return meta


# ----------------------------------------------------------------------------------------- encoders
class DygraphEncoder:
    """A checkpoint in Paddle's dynamic graph (eval mode, no grad)."""

    def __init__(self, ckpt_path, flag="--pretrained", use_gpu=False):
        import paddle

        from models import build_model
        from models.checkpoint import load_checkpoint

        paddle.set_device("gpu" if use_gpu else "cpu")
        self.ckpt = load_checkpoint(ckpt_path, flag)
        self.cfg = dict(self.ckpt["cfg"])
        self.model = build_model(self.cfg, self.ckpt["model"])
        self.model.eval()
        self.preprocess = Preprocess.from_dict(self.cfg)
        self.bit = int(self.cfg["bit"])
        self._paddle = paddle

    @property
    def weights_fingerprint(self):
        """Of the weights actually loaded (not the value stored in the file, which an edit would not update)."""
        from models.checkpoint import weights_fingerprint

        if not hasattr(self, "_fingerprint"):
            self._fingerprint = weights_fingerprint(self.model.state_dict())
        return self._fingerprint

    def run(self, batch):
        with self._paddle.no_grad():
            return self.model(self._paddle.to_tensor(np.ascontiguousarray(batch, np.float32))).numpy()


def encode_images(encoder, paths, preprocess, batch_size=32, timer=None, on_error=None):
    """Continuous codes for image files, in order. A file that can't be read raises UserError naming it
    (or is reported to `on_error(path, reason)` and skipped, when given). Returns (codes, kept paths)."""
    from utils.data.images import ImageError, open_image

    codes, kept = [], []
    for start in range(0, len(paths), batch_size):
        chunk, arrays = [], []
        with (timer.section("preprocess") if timer else contextlib.nullcontext()):
            for p in paths[start:start + batch_size]:
                try:
                    arrays.append(preprocess(open_image(p)))
                except ImageError as exc:
                    if on_error is None:
                        raise UserError(f"{p}: {exc}")
                    on_error(p, str(exc))
                    continue
                chunk.append(p)
        if not chunk:
            continue
        with (timer.section("inference", len(chunk)) if timer else contextlib.nullcontext()):
            codes.append(encoder.run(np.stack(arrays)))
        kept.extend(chunk)
    bit = codes[0].shape[1] if codes else 0
    return (np.concatenate(codes) if codes else np.zeros((0, bit), np.float32)), kept


class Timer:
    """Wall-clock time per named section (preprocess / inference / postprocess) and images counted,
    for `--benchmark` (Paddle's auto_log is not installable from the registry, so we time ourselves)."""

    def __init__(self):
        self.seconds, self.images = {}, 0

    @contextlib.contextmanager
    def section(self, name, images=0):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
            self.images += images

    def report(self):
        n = max(self.images, 1)
        total = sum(self.seconds.values())
        parts = [f"{k} {1000 * v / n:.2f} ms/img" for k, v in self.seconds.items()]
        return f"{self.images} images: " + ", ".join(parts) + f", {self.images / total if total else 0:.1f} images/s"


def max_diff_and_bit_agreement(a, b):
    """(max |a − b|, share of identical sign bits)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max()), float(np.mean((a > 0) == (b > 0)))
