"""Codebooks: one ±1 target code per class, for OrthoHash (and other centre-based methods).

Methods (seeded, numpy only):
- "N": signs of a standard normal draw;
- "B": Bernoulli(0.5) ±1;
- "O": greedy max-Hamming (OrthoHash's generator): draw random codes and keep one only if its
  normalised Hamming distance to every kept code is ≥ a target that starts at 0.61 and is lowered by
  0.01 after every 10,000 failed draws;
- "H": rows of a Hadamard matrix stacked as [H; −H] (2·bits codes, pairwise distance ≥ 1/2); when the
  classes outnumber them, or bits is not a power of two (no Sylvester Hadamard matrix), the remaining
  rows are random balanced codes (half +1, half −1), drawn up to 20 times until every pair of centres
  is more than bits/4 apart and the mean distance is at least bits/2, as DeepHash-pytorch's
  `CSQ.py get_hash_targets` does (where no draw passes, the one with the largest minimum distance is
  kept; the reference keeps its last draw).

Or a file (`--codebook FILE`): a .npy array, or a CSQ hash-centre .pkl (a `torch.save`d tensor, read
without torch by models/weights.py), of shape (classes, bits) with ±1 values (0/1 rows are read as ±1).
"""
import os

import numpy as np

from utils.errors import UserError

CODEBOOK_METHODS = ("N", "B", "O", "H")


def normalized_hamming(a, b):
    """Pairwise normalised Hamming distance between the ±1 rows of a (n, K) and b (m, K)."""
    a, b = np.sign(a), np.sign(b)
    return 0.5 * (1.0 - a @ b.T / a.shape[1])


def min_pairwise_distance(codebook):
    """Smallest normalised Hamming distance between two different rows (1.0 for a single row)."""
    if len(codebook) < 2:
        return 1.0
    d = normalized_hamming(codebook, codebook)
    return float(d[~np.eye(len(codebook), dtype=bool)].min())


def _signs(x):
    return np.where(x >= 0, 1.0, -1.0).astype(np.float32)


def _balanced_codes(n, bits, rng):
    half = np.r_[np.ones(bits // 2), -np.ones(bits - bits // 2)].astype(np.float32)
    return np.stack([rng.permutation(half) for _ in range(n)]) if n else np.zeros((0, bits), np.float32)


def greedy_codebook(num_classes, bits, rng, init_dist=0.61, min_dist=0.2, reduce_dist=0.01, max_tries=10000):
    """OrthoHash's "O" generator. Returns (codebook, target distance reached)."""
    codes = np.zeros((num_classes, bits), np.float32)
    target, fails, i = init_dist, 0, 0
    while i < num_classes:
        c = _signs(rng.standard_normal(bits))
        if i == 0 or normalized_hamming(c[None], codes[:i]).min() >= target:
            codes[i] = c
            i += 1
            continue
        fails += 1
        if fails >= max_tries:
            fails = 0
            target -= reduce_dist
            if target < min_dist:
                raise ValueError(f"cannot find {num_classes} codes of {bits} bits with distance ≥ {min_dist}")
    return codes[rng.permutation(num_classes)], target


def _hamming_stats(codes):
    """(min, mean) pairwise Hamming distance in bits."""
    if len(codes) < 2:
        return codes.shape[1], codes.shape[1]
    d = normalized_hamming(codes, codes)[np.triu_indices(len(codes), 1)] * codes.shape[1]
    return float(d.min()), float(d.mean())


def hadamard_codebook(num_classes, bits, rng, tries=20):
    rows = np.zeros((0, bits), np.float32)
    if bits >= 1 and bits & (bits - 1) == 0:
        h = np.ones((1, 1), np.float32)
        while h.shape[0] < bits:
            h = np.block([[h, h], [h, -h]])
        rows = np.concatenate([h, -h])[:num_classes]
    if len(rows) == num_classes:
        return rows
    best, best_min = None, -1.0
    for _ in range(tries):
        codes = np.concatenate([rows, _balanced_codes(num_classes - len(rows), bits, rng)])
        dmin, dmean = _hamming_stats(codes)
        if dmin > bits / 4 and dmean >= bits / 2:
            return codes
        if dmin > best_min:
            best, best_min = codes, dmin
    return best


def load_codebook_file(path, num_classes, bits, flag="--codebook"):
    """A (num_classes, bits) ±1 float32 codebook from a .npy or a torch.save'd tensor (.pkl/.pt/.pth)."""
    if not os.path.isfile(path):
        raise UserError(f"{flag} {path}: file not found; give N, B, O, H or a .npy/.pkl file of ±1 rows")
    from utils.safe_pickle import RefusedGlobal, refusal

    try:
        if path.lower().endswith(".npy"):
            arr = np.load(path, allow_pickle=False)
        else:
            from utils.weight_files import load_torch_object

            arr = load_torch_object(path)  # through utils.safe_pickle: nothing in the file runs
        arr = np.asarray(arr, dtype=np.float64)
    except RefusedGlobal as exc:
        raise UserError(f"{flag} {path}: {refusal(exc)}; a codebook is a tensor or array of ±1 rows")
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise UserError(f"{flag} {path}: not a readable codebook ({type(exc).__name__}: {exc}); expected a .npy "
                        "array or a torch.save'd tensor of ±1 rows")
    if arr.ndim != 2 or arr.shape != (num_classes, bits):
        raise UserError(f"{flag} {path}: shape {tuple(arr.shape)}, but this run needs {num_classes} classes × {bits} "
                        "bits; use the file made for this data set and code length")
    values = set(np.unique(arr).tolist())
    if values <= {0.0, 1.0} and len(values) == 2:
        arr = 2 * arr - 1  # {0, 1} centres
    elif not values <= {-1.0, 1.0}:
        raise UserError(f"{flag} {path}: values must be ±1 (or 0/1), found {sorted(values)[:5]}")
    return arr.astype(np.float32)


def build_codebook(cfg):
    """The codebook of a run: generated (cfg["codebook"] in N/B/O/H, seeded by cfg["seed"]) or read from a file."""
    if cfg["codebook"] in CODEBOOK_METHODS:
        return make_codebook(cfg["codebook"], cfg["num_labels"], cfg["bit"], seed=cfg["seed"])
    return load_codebook_file(cfg["codebook"], cfg["num_labels"], cfg["bit"])


def make_codebook(method, num_classes, bits, seed=0):
    """A (num_classes, bits) float32 array of ±1 codes."""
    rng = np.random.default_rng(seed)
    if method == "N":
        return _signs(rng.standard_normal((num_classes, bits)))
    if method == "B":
        return _signs(rng.integers(0, 2, size=(num_classes, bits)) - 0.5)
    if method == "O":
        return greedy_codebook(num_classes, bits, rng)[0]
    if method == "H":
        return hadamard_codebook(num_classes, bits, rng)
    raise ValueError(f"unknown codebook method {method!r}; choose one of {CODEBOOK_METHODS}")
