"""Figures (matplotlib, Agg backend, written atomically as PNG)."""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from utils.fileio import atomic_path  # noqa: E402


def _save(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def save_montage(path, query_path, query_labels, hits, thumb=128):
    """The query and its top-k hits (utils.deploy.searcher.Hit: rank, distance, path, labels) in one row
    (wrapping every 6), each with its Hamming distance. When the query's labels are known, a hit sharing
    a label gets a green border, others red."""
    cols = min(6, len(hits) + 1)
    rows = int(np.ceil((len(hits) + 1) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    tiles = [(query_path, "query" + (f"\nlabels {' '.join(map(str, query_labels))}" if query_labels else ""), None)]
    for hit in hits:
        relevant = None if query_labels is None else bool(set(hit.labels) & set(query_labels))
        tiles.append((hit.path, f"#{hit.rank}  d={hit.distance}\n{os.path.basename(hit.path)}", relevant))
    for ax, (p, title, relevant) in zip(axes.flat, tiles):
        with Image.open(p) as img:
            img = img.convert("RGB")
            img.thumbnail((thumb, thumb))
            ax.imshow(np.asarray(img))
        ax.set_title(title, fontsize=7)
        if relevant is not None:
            ax.axis("on")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_edgecolor("green" if relevant else "red")
                spine.set_linewidth(4)
    return _save(fig, path)
