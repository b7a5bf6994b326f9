"""Atomic, durable file writes: everything the project persists (checkpoints, lists, caches, index
segments, reports) goes to a temp file in the same directory, is flushed and fsynced, renamed over the
target, and the directory is fsynced after the rename. A crash (or a power loss) leaves the old file or
the new one, never half of one and never a new name pointing at unwritten data. (The index catalogue
is SQLite with WAL and synchronous=FULL, which makes the same promise for its transactions.)"""
import contextlib
import json
import os
import tempfile

import numpy as np


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to `path`; on success rename it to `path`, on error remove it."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(directory)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def fsync_dir(directory):
    """Make a rename (or a new file) in `directory` durable: fsync the directory itself. A no-op where the
    platform cannot open directories (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on directories; the rename itself is still atomic
    finally:
        os.close(fd)


def write_text(path, text):
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def write_json(path, obj):
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_npy(path, array):
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, np.asarray(array))


def check_writable_dir(path, flag="--output"):
    """Create `path` if needed and make sure we can write in it; UserError otherwise."""
    from utils.errors import UserError

    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write_probe.", dir=path)
        os.close(fd)
        os.remove(probe)
    except OSError as exc:
        raise UserError(f"{flag} {path}: directory is not writable ({exc.strerror}); choose another {flag}")
    return path
