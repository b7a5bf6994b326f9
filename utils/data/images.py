"""The one image decoder: every road that reads an image (training, calibration, infer.py, predict.py,
the index, the service, the list builders, the report's montage) opens it here, so that one set of
errors is caught, one list of extensions is known, and a bad file gives the same one-line message
everywhere: `ImageError("not a readable image (<Type>: <what PIL said>)")`, which callers prefix with
the file's path (or "the uploaded image").

    img = open_image(path)                    # RGB, fully decoded (truncated files fail here, not later)
    img = open_image(data, max_pixels=40e6)   # bytes (an upload), size checked from the header first
    reason = check_image(path)                # None, or the reason (list builders: fast JPEG draft decode)
    files = list_image_files(folder)          # every file with an image extension, sorted, recursive

Pillow raises many exception types for broken files: UnidentifiedImageError (not an image), OSError
("image file is truncated", bad JPEG data), SyntaxError (bad PNG chunks), ValueError, EOFError,
struct.error and IndexError (short headers), DecompressionBombError (a header declaring an enormous
size). All of them are `BAD_IMAGE_ERRORS`; anything else is a bug and propagates.
"""
import io
import os
import struct
import warnings

from PIL import Image, UnidentifiedImageError

from utils.errors import one_line

# the still-image formats Pillow reads out of the box, by extension (any case)
IMAGE_EXTENSIONS = (".bmp", ".dib", ".gif", ".jfif", ".jpe", ".jpeg", ".jpg", ".pbm", ".pgm", ".png", ".pnm",
                    ".ppm", ".tif", ".tiff", ".webp")
BAD_IMAGE_ERRORS = (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError,
                    Image.DecompressionBombError)


class ImageError(Exception):
    """An image that cannot be opened or decoded; the text says why, on one line, without the path."""


def _reason(exc):
    if isinstance(exc, UnidentifiedImageError):  # Pillow's text repeats the path (or a BytesIO repr)
        return "not a readable image (UnidentifiedImageError: not an image file Pillow recognises)"
    return f"not a readable image ({type(exc).__name__}: {one_line(exc, 120)})"


def is_image_file(name):
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def list_image_files(folder):
    """Every file under `folder` (recursive) with an image extension, sorted by path."""
    found = []
    for base, dirs, files in os.walk(folder):
        dirs.sort()
        found += [os.path.join(base, f) for f in sorted(files) if is_image_file(f)]
    return found


def open_image(source, max_pixels=None, draft=None):
    """A path or bytes → PIL RGB image, fully decoded. `max_pixels`: refuse larger images from their header,
    before decoding (uploads). `draft` ((w, h)): let JPEG decode at a reduced scale of at least that size
    (thumbnails, checks). Raises ImageError for every file Pillow cannot read."""
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise ImageError("the file is empty")
        source = io.BytesIO(source)
    try:
        with warnings.catch_warnings():
            if max_pixels is not None:
                warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                w, h = img.size
                if max_pixels is not None and w * h > max_pixels:
                    raise ImageError(f"image is {w}x{h} = {w * h} pixels, more than the {int(max_pixels)} accepted")
                if draft is not None and img.format == "JPEG":
                    img.draft("RGB", draft)
                img.load()
                return img.convert("RGB")
    except FileNotFoundError:
        raise ImageError("file not found") from None
    except IsADirectoryError:
        raise ImageError("a directory, not an image file") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        limit = f"the {int(max_pixels)}" if max_pixels is not None else "Pillow's"
        raise ImageError(f"image rejected: its header declares more pixels than {limit} limit "
                         "(decompression bomb guard)") from None
    except BAD_IMAGE_ERRORS as exc:
        raise ImageError(_reason(exc)) from None


def check_image(path):
    """None if the file decodes as training will read it (RGB), else the reason (ImageError's text). JPEGs
    are decoded at 1/8 scale: all the data is read, at a fraction of the work."""
    try:
        with Image.open(path) as probe:
            size = (max(1, probe.width // 8), max(1, probe.height // 8))
    except FileNotFoundError:
        return "file not found"
    except BAD_IMAGE_ERRORS as exc:
        return _reason(exc)
    except IsADirectoryError:
        return "a directory, not an image file"
    try:
        open_image(path, draft=size)
    except ImageError as exc:
        return str(exc)
    return None


def thumbnail(path, size):
    """The image at `path` as RGB, at most `size` pixels on its longer side (JPEG: decoded at reduced scale)."""
    img = open_image(path, draft=(size, size))
    img.thumbnail((size, size))
    return img


def thumbnail_jpeg(path, size, quality=85):
    """thumbnail() encoded as JPEG bytes."""
    buf = io.BytesIO()
    thumbnail(path, size).save(buf, "JPEG", quality=quality)
    return buf.getvalue()
