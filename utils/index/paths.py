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


def _inside(full, base):
    """`full` relative to `base` (both absolute and normalised) with / separators, or None: a string test."""
    if base == os.sep:
        rel = full[1:]
    elif full.startswith(base + os.sep):
        rel = full[len(base) + 1:]
    else:
        return None
    return rel.replace(os.sep, "/") if rel else None


def to_keys(paths, root=None, index_dir=None):
    """The stored spellings of the files at `paths` (relative to the current directory, or absolute): a
    file lexically under the index directory or the root is spelled relative to it; otherwise its real
    path (symlinks resolved, each directory's once per call) is tried the same way; else it stays
    absolute."""
    bases = [(os.path.abspath(b), prefix) for b, prefix in ((index_dir, INDEX_PREFIX), (root, "")) if b]
    real_bases = [(os.path.realpath(b), prefix) for b, prefix in bases]
    real_dirs = {}
    cwd = os.getcwd().rstrip("/")  # "" for /
    out = []
    for path in paths:
        path = os.fspath(path)
        if os.sep == "/" and not path.startswith("/") and "//" not in path and "/." not in "/" + path \
                and not path.endswith("/"):
            full = cwd + "/" + path  # already normal: what abspath would give, without its cost
        else:
            full = os.path.abspath(path)
        key = next((prefix + rel for base, prefix in bases if (rel := _inside(full, base)) is not None), None)
        if key is None and root:  # not under a base as spelled: through its symlinks?
            if os.path.islink(full):
                real = os.path.realpath(full)
            else:
                folder, name = os.path.split(full)
                if folder not in real_dirs:
                    real_dirs[folder] = os.path.realpath(folder)
                real = os.path.join(real_dirs[folder], name)
            key = next((prefix + rel for base, prefix in real_bases if (rel := _inside(real, base)) is not None),
                       None)
        out.append(full if key is None else key)
    return out


def to_key(path, root=None, index_dir=None):
    """The stored spelling of the file at `path` (see to_keys)."""
    return to_keys([path], root, index_dir)[0]


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


def lookup(alive, paths, root=None, index_dir=None):
    """{given path: id} of the items of `alive` ({stored path: (id, ...)}) the paths name (any spelling of
    the same file: as the list writes it, relative to the current directory, absolute, through a
    symlink, another hard link), and the paths that name none."""
    found, missing, by_inode = {}, [], None
    for p in paths:
        hit = next((alive[c][0] for c in candidates(p, root, index_dir) if c in alive), None)
        if hit is None and os.path.exists(p):  # another link to the same file
            if by_inode is None:
                by_inode = {}
                for key, (i, *_) in alive.items():
                    try:
                        st = os.stat(to_file(key, root, index_dir))
                    except OSError:
                        continue
                    by_inode.setdefault((st.st_dev, st.st_ino), i)
            st = os.stat(p)
            hit = by_inode.get((st.st_dev, st.st_ino))
        if hit is None:
            missing.append(p)
        else:
            found[p] = hit
    return found, missing
