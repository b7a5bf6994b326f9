"""The one image decoder (utils/data/images.py) and durable atomic writes (utils/fileio.py).

Every road that reads an image must give the same one-line reason for the same bad file, including
files Pillow rejects with SyntaxError (a PNG with a broken chunk), which used to be a traceback on
some roads; the same extension list must be used by every folder scan."""
import ast
import io
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from tests.helpers import ROOT
from utils import fileio
from utils.data import images
from utils.data.images import IMAGE_EXTENSIONS, ImageError, check_image, list_image_files, open_image


def png_bytes(size=(8, 6)):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def broken_png_chunk():
    """A PNG whose image data is split in two IDAT chunks and the second one's header is garbage: Pillow opens
    it and then raises SyntaxError ('broken PNG file') while decoding."""
    data = png_bytes((80, 60))
    (n,) = struct.unpack(">I", data[33:37])  # the IDAT chunk after the signature and IHDR
    idat = data[41:41 + n]
    first = struct.pack(">I", 50) + b"IDAT" + idat[:50] + struct.pack(">I", zlib.crc32(b"IDAT" + idat[:50]))
    return data[:33] + first + b"\xff" * 30


def bad_files(tmp_path):
    """name → bytes of files Pillow cannot decode, each by a different exception type."""
    jpeg = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(jpeg, "JPEG")
    return {
        "text.jpg": b"not an image at all\n" * 10,  # UnidentifiedImageError
        "crc.png": broken_png_chunk(),  # SyntaxError
        "truncated.jpg": jpeg.getvalue()[: len(jpeg.getvalue()) // 2],  # OSError: image file is truncated
        "empty.png": b"",
    }


def test_bad_files_same_one_line_reason_on_every_road(tmp_path):
    """open_image (training, infer.py, predict.py, the index, calibration), bytes (the service's uploads)
    and check_image (the list builders) agree on the reason, and it is one line."""
    for name, data in bad_files(tmp_path).items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ImageError) as from_path:
            open_image(str(path))
        reason = str(from_path.value)
        assert "\n" not in reason and reason, name
        assert check_image(str(path)) == reason, name
        if data:
            with pytest.raises(ImageError) as from_bytes:
                open_image(data)
            assert str(from_bytes.value) == reason, name
        assert reason.startswith("not a readable image"), (name, reason)
    with pytest.raises(ImageError, match="SyntaxError"):
        open_image(str(tmp_path / "crc.png"))


def test_good_image_and_limits(tmp_path):
    (tmp_path / "ok.png").write_bytes(png_bytes((8, 6)))
    img = open_image(str(tmp_path / "ok.png"))
    assert img.mode == "RGB" and img.size == (8, 6)
    assert check_image(str(tmp_path / "ok.png")) is None
    assert np.array_equal(np.asarray(open_image(png_bytes((8, 6)))), np.asarray(img))
    with pytest.raises(ImageError, match="48 pixels, more than the 40 accepted"):
        open_image(png_bytes((8, 6)), max_pixels=40)
    with pytest.raises(ImageError, match="empty"):
        open_image(b"")
    assert check_image(str(tmp_path / "missing.jpg")) == "file not found"
    with pytest.raises(ImageError, match="file not found"):
        open_image(str(tmp_path / "missing.jpg"))
    with pytest.raises(ImageError, match="directory"):
        open_image(str(tmp_path))


def test_thumbnail_keeps_aspect(tmp_path):
    (tmp_path / "wide.png").write_bytes(png_bytes((40, 10)))
    assert images.thumbnail(str(tmp_path / "wide.png"), 20).size == (20, 5)
    jpeg = Image.open(io.BytesIO(images.thumbnail_jpeg(str(tmp_path / "wide.png"), 20)))
    assert jpeg.format == "JPEG" and jpeg.size == (20, 5)


def test_list_image_files_one_extension_list(tmp_path):
    (tmp_path / "b").mkdir()
    for name in ("a.JPG", "b/c.webp", "b/d.tiff", "e.txt", "f.jpeg.bak", "g.PNG"):
        (tmp_path / name).write_bytes(b"x")
    found = [os.path.relpath(p, tmp_path) for p in list_image_files(str(tmp_path))]
    assert found == ["a.JPG", "g.PNG", os.path.join("b", "c.webp"), os.path.join("b", "d.tiff")]
    assert all(e == e.lower() and e.startswith(".") for e in IMAGE_EXTENSIONS)


def test_only_utils_data_opens_images():
    """Image.open appears only in utils/data (the decoder); no other module keeps its own extension list."""
    offenders = []
    for base, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in {".git", ".venv", "tests", "output", "datasets", "__pycache__"}]
        for f in files:
            if not f.endswith(".py"):
                continue
            path = os.path.join(base, f)
            rel = os.path.relpath(path, ROOT)
            tree = ast.parse(open(path, encoding="utf-8").read())
            for node in ast.walk(tree):
                if (isinstance(node, ast.Attribute) and node.attr == "open" and isinstance(node.value, ast.Name)
                        and node.value.id == "Image" and not rel.startswith(os.path.join("utils", "data"))):
                    offenders.append(f"{rel}:{node.lineno} Image.open")
                if isinstance(node, ast.Constant) and node.value in (".jpeg", ".tiff") and rel != os.path.join(
                        "utils", "data", "images.py"):
                    offenders.append(f"{rel}:{node.lineno} own extension list")
    assert not offenders, offenders


# ---------------------------------------------------------------------------------------- durable writes
def test_atomic_write_fsyncs_file_then_directory(tmp_path, monkeypatch):
    """fsync of the new file's data before the rename and of the directory after it (else a power loss can
    leave the new name pointing at an empty file)."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync-dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "fsync-file"))
        real_fsync(fd)

    def replace(a, b):
        events.append("rename")
        real_replace(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    fileio.write_text(tmp_path / "sub" / "a.txt", "hello")
    assert (tmp_path / "sub" / "a.txt").read_text() == "hello"
    if os.path.isdir("/proc/self/fd"):
        assert events == ["fsync-file", "rename", "fsync-dir"], events
    else:
        assert events[:2] == ["fsync-file", "rename"], events


def test_atomic_write_failure_keeps_old_file(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with fileio.atomic_path(target) as tmp:
            open(tmp, "w").write("half")
            raise RuntimeError("crash before the rename")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["keep.txt"]  # no temp file left behind
