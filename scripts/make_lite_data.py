"""Generate the lite data sets: deterministic synthetic images with known labels (nothing is downloaded).

    python scripts/make_lite_data.py                      # both kinds, quick-start sizes
    python scripts/make_lite_data.py --kind single --n-train 32 --n-database 48 --n-test 16 \\
        --data-path /tmp/lite/images --list-dir /tmp/lite/lists

Writes images to --data-path (default datasets/lite_<kind>) and train/database/test lists to --list-dir
(default data/lite_<kind>); train with `--dataset lite_<kind>` (whose default --data-path/--list-dir are
the same folders). Re-running with the same arguments does nothing; other arguments regenerate.
The defaults (200 train / 400 database / 100 test, 10 classes, 64 px) train in a couple of minutes on
two CPU cores.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils.cli import add_flag  # noqa: E402
from utils.errors import UserError, cli_entry  # noqa: E402
from utils.data.lite_data import generate  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kind", choices=("single", "multi", "both"), default="both",
                   help="single: one-hot labels; multi: 1-3 labels per image; both (default)")
    add_flag(p, "--data-path", default=None,
                   help="image root (default datasets/lite_<kind>; only with one --kind)")
    add_flag(p, "--list-dir", default=None,
                   help="list folder (default data/lite_<kind>; only with one --kind)")
    add_flag(p, "--n-train", type=int, default=200)
    add_flag(p, "--n-database", type=int, default=400)
    add_flag(p, "--n-test", type=int, default=100)
    add_flag(p, "--num-classes", type=int, default=10)
    p.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


@cli_entry
def main(argv=None):
    args = parse_args(argv)
    kinds = ("single", "multi") if args.kind == "both" else (args.kind,)
    if len(kinds) > 1 and (args.data_path or args.list_dir):
        raise UserError("--data-path/--list-dir need one --kind (single or multi), not both")
    for name in ("n_train", "n_database", "n_test"):
        if getattr(args, name) <= 0:
            raise UserError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    for kind in kinds:
        root = args.data_path or os.path.join("datasets", f"lite_{kind}")
        list_dir = args.list_dir or os.path.join("data", f"lite_{kind}")
        start = time.time()
        s = generate(kind, root, list_dir, n_train=args.n_train, n_database=args.n_database, n_test=args.n_test,
                     num_classes=args.num_classes, size=args.size, seed=args.seed)
        what = "wrote" if s["regenerated"] else "up to date (same arguments), kept"
        print(f"lite_{kind}: {what} {s['train']} train / {s['database']} database / {s['test']} test images, "
              f"{s['num_labels']} classes, {s['size']} px -> images {root}, lists {list_dir} "
              f"({time.time() - start:.1f}s)", flush=True)


if __name__ == "__main__":
    main()
