"""How an index spells the path of an image, and how any other spelling of the same file finds it.

An index records an image root (the `--data-path` of its list, or the `--images` folder). A file under
the root is stored relative to it, with `/` separators, exactly as a HashNet list writes it
(`images/0353.jpg`); a file under the index directory (the service's uploads) as `@index/<relative>`;
any other file by its absolute path. So the stored spelling does not depend on the directory a command
ran in, and an index moves with its images: point it at the new root (`scripts/index.py relocate`, or
`--data-path` when opening it).

`candidates(path)` are the stored spellings a user's path may stand for: the path as the list writes
it (relative to the root), the path relative to the current directory or absolute (`./`, `..` and
symlinks resolved).
"""
import os

INDEX_PREFIX = "@index/"


def _under(path, root):
    """`path` relative to `root` with / separators, or None when it is not inside it."""
    try:
        rel = os.path.relpath(path, root)
    except ValueError:  # another drive (Windows)
        return None
    if rel == os.curdir or rel == os.pardir or rel.startswith(os.pardir + os.sep) or os.path.isabs(rel):
        return None
    return rel.replace(os.sep, "/")


def to_key(path, root=None, index_dir=None):
    """The stored spelling of the file at `path` (relative to the current directory, or absolute)."""
    full = os.path.normpath(os.path.abspath(path))
    real = None
    for base, prefix in ((index_dir, INDEX_PREFIX), (root, "")):
        if not base:
            continue
        rel = _under(full, base)
        if rel is None:
            real = real or os.path.realpath(full)
            rel = _under(real, os.path.realpath(base))
        if rel is not None:
            return prefix + rel
    return full


def to_file(key, root=None, index_dir=None):
    """The file a stored spelling names (the inverse of to_key)."""
    if key.startswith(INDEX_PREFIX) and index_dir:
        return os.path.join(index_dir, *key[len(INDEX_PREFIX):].split("/"))
    if os.path.isabs(key) or not root:
        return key
    return os.path.join(root, *key.split("/"))


def candidates(path, root=None, index_dir=None):
    """The stored spellings `path` may stand for, most specific first: as the list writes it (relative
    to the root), as a file relative to the current directory or absolute, through its symlinks."""
    out = []
    if root and not os.path.isabs(path):
        listed = os.path.normpath(path).replace(os.sep, "/")
        if not (listed == os.pardir or listed.startswith(os.pardir + "/")):
            out.append(listed)
    out.append(to_key(path, root, index_dir))
    if os.path.exists(path):
        out.append(to_key(os.path.realpath(path), root, index_dir))
    return list(dict.fromkeys(out))
