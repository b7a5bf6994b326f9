"""Codebooks: one ±1 target code per class, for OrthoHash (and other centre-based methods).

Methods (seeded, numpy only):
- "N": signs of a standard normal draw;
- "B": Bernoulli(0.5) ±1;
- "O": greedy max-Hamming (OrthoHash's generator): draw random codes and keep one only if its
  normalised Hamming distance to every kept code is ≥ a target that starts at 0.61 and is lowered by
  0.01 after every 10,000 failed draws;
- "H": rows of a Hadamard matrix stacked as [H; −H] (2·bits codes, pairwise distance ≥ 1/2); when the
  classes outnumber them, or bits is not a power of two (no Sylvester Hadamard matrix), the remaining
  rows are random balanced codes (half +1, half −1), as CSQ does.
"""
import numpy as np

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


def hadamard_codebook(num_classes, bits, rng):
    rows = np.zeros((0, bits), np.float32)
    if bits >= 1 and bits & (bits - 1) == 0:
        h = np.ones((1, 1), np.float32)
        while h.shape[0] < bits:
            h = np.block([[h, h], [h, -h]])
        rows = np.concatenate([h, -h])[:num_classes]
    return np.concatenate([rows, _balanced_codes(num_classes - len(rows), bits, rng)])


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
