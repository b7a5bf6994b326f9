"""Code formats of `utils.retrieval`: the sign rule (`binarize`), packing (`pack_codes`, `as_packed`,
`unpack_codes`), hex strings, and the uint64 words every distance kernel reads (`code_words`), plus the
checks of a (query, database) pair of codes, of label arrays and of a cut-off k. numpy only."""
import numpy as np


def binarize(codes):
    """Continuous or ±1 / {0,1} codes (n, bits) → ±1 int8 (bit 1 where > 0, as everywhere here; 0 → −1)."""
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(f"codes must be a 2-D array (n, bits), got shape {codes.shape}")
    return np.where(codes > 0, 1, -1).astype(np.int8)


def pack_codes(codes):
    """±1 / {0,1} / bool codes ``(n, bits)`` → packed uint8 ``(n, ceil(bits/8))`` (bit 1 where > 0).

    Unlike `as_packed`, the input is always read as unpacked codes, whatever its dtype.
    """
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(f"codes must be a 2-D array (n, bits), got shape {codes.shape}")
    return np.packbits(codes > 0, axis=1)


def unpack_codes(packed, bits):
    """Packed uint8 ``(n, ceil(bits/8))`` → ±1 int8 ``(n, bits)``."""
    packed, bits = as_packed(_require_uint8(packed), bits)
    bits01 = np.unpackbits(packed, axis=1, count=bits)
    return (bits01.astype(np.int8) * 2 - 1).astype(np.int8)


def as_packed(codes, bits=None):
    """Normalise codes to ``(packed uint8 (n, ceil(bits/8)), bits)``.

    uint8 input is taken as already packed (padding bits beyond ``bits`` are cleared); anything else is
    unpacked codes ``(n, bits)`` with bit 1 where the value is > 0 (so 0 in ±1 input is a negative bit).
    """
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(f"codes must be a 2-D array (n, bits) or packed (n, bytes); got shape {codes.shape}"
                         " (use .reshape(1, -1) for a single code)")
    if codes.dtype == np.uint8:
        n_bytes = codes.shape[1]
        if bits is None:
            bits = 8 * n_bytes
        bits = int(bits)
        if bits <= 0 or (bits + 7) // 8 != n_bytes:
            raise ValueError(f"packed codes have {n_bytes} bytes per row, which cannot hold bits={bits}")
        packed = np.ascontiguousarray(codes)
        if bits % 8:
            packed = packed.copy()
            packed[:, -1] &= np.uint8((0xFF << (8 - bits % 8)) & 0xFF)
        return packed, bits
    if bits is not None and int(bits) != codes.shape[1]:
        raise ValueError(f"codes have {codes.shape[1]} bits per row, expected bits={bits}")
    if codes.shape[1] == 0:
        raise ValueError("codes have zero bits per row")
    return np.packbits(codes > 0, axis=1), codes.shape[1]


def codes_to_hex(codes, bits=None):
    """Codes (unpacked or packed, see `as_packed`) → one hex string per row (of the packed bytes)."""
    packed, _ = as_packed(codes, bits)
    return [row.tobytes().hex() for row in packed]


def hex_to_codes(hex_codes, bits):
    """Hex strings (one per code, as from `codes_to_hex`; a single string is one code) → ±1 int8 (n, bits)."""
    if isinstance(hex_codes, str):
        hex_codes = [hex_codes]
    bits = int(bits)
    n_bytes = (bits + 7) // 8
    rows = []
    for i, h in enumerate(hex_codes):
        try:
            raw = bytes.fromhex(h)
        except ValueError:
            raise ValueError(f"code {i}: {h!r} is not a hex string") from None
        if len(raw) != n_bytes:
            raise ValueError(f"code {i}: {h!r} has {len(raw)} bytes, {bits} bits need {n_bytes}")
        rows.append(np.frombuffer(raw, np.uint8))
    packed = np.stack(rows) if rows else np.zeros((0, n_bytes), np.uint8)
    if bits % 8 and len(packed) and np.any(packed[:, -1] & np.uint8(0xFF >> (bits % 8))):
        raise ValueError(f"hex codes have bits set beyond bit {bits}")
    return unpack_codes(packed, bits)


def _require_uint8(packed):
    packed = np.asarray(packed)
    if packed.dtype != np.uint8:
        raise ValueError(f"packed codes must be uint8, got {packed.dtype}")
    return packed


def _pair(query_codes, db_codes, bits):
    """Validate a (query, database) pair → (query packed, database packed, bits)."""
    q, d = np.asarray(query_codes), np.asarray(db_codes)
    for name, a in (("query codes", q), ("database codes", d)):
        if a.ndim != 2:
            raise ValueError(f"{name} must be a 2-D array (n, bits) or packed uint8 (n, bytes); got shape "
                             f"{a.shape} (use .reshape(1, -1) for a single code)")
    if bits is None:  # an unpacked operand knows its width
        unpacked = [a.shape[1] for a in (q, d) if a.dtype != np.uint8]
        if len(unpacked) == 2 and unpacked[0] != unpacked[1]:
            raise ValueError(f"query codes have {unpacked[0]} bits, database codes {unpacked[1]}")
        bits = unpacked[0] if unpacked else None
    try:
        qp, q_bits = as_packed(q, bits)
        dp, d_bits = as_packed(d, bits)
    except ValueError as exc:
        raise ValueError(f"query/database codes do not match: {exc}") from None
    if qp.shape[1] != dp.shape[1] or q_bits != d_bits:
        raise ValueError(f"query codes have {q_bits} bits ({qp.shape[1]} bytes), database codes {d_bits} bits "
                         f"({dp.shape[1]} bytes)")
    return qp, dp, q_bits


def code_words(codes):
    """Unpacked codes (n, bits), read as `pack_codes` does → uint64 words (n, W) for XOR-popcount."""
    return _words(pack_codes(codes))


def _words(packed):
    """Packed uint8 (n, B) → uint64 words (n, W), zero padded (distances are unchanged).

    W = ceil(B / 8) rounded up to 1, 2 or 4 (the word counts with unrolled kernels), exact above 4.
    """
    n, n_bytes = packed.shape
    n_words = max(1, (n_bytes + 7) // 8)
    n_words = 4 if n_words == 3 else n_words
    buf = np.zeros((n, 8 * n_words), np.uint8)
    buf[:, :n_bytes] = packed
    return buf.view(np.uint64)


def _label_words(labels, name, n_rows):
    labels = np.asarray(labels)
    if labels.ndim == 1:
        raise ValueError(f"{name} must be 0/1 arrays (n, n_classes); got shape {labels.shape} "
                         "(one-hot encode class indices first)")
    if labels.ndim != 2 or labels.shape[0] != n_rows:
        raise ValueError(f"{name} have shape {labels.shape}, expected ({n_rows}, n_classes) to match the codes")
    return _words(np.packbits(labels > 0, axis=1))


def _labels_pair(query_labels, db_labels, nq, ndb):
    ql = _label_words(query_labels, "query labels", nq)
    dl = _label_words(db_labels, "database labels", ndb)
    if np.shape(query_labels)[1] != np.shape(db_labels)[1]:
        raise ValueError(f"query labels have {np.shape(query_labels)[1]} classes, database labels "
                         f"{np.shape(db_labels)[1]}")
    return ql, dl


def _resolve_k(k, ndb, name="topk"):
    """None / -1 / > n_db → the whole database."""
    if k is None or k == -1:
        return ndb
    k = int(k)
    if k <= 0:
        raise ValueError(f"{name} must be positive, -1 or None (whole database), got {k}")
    return min(k, ndb)
