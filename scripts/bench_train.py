"""What bounds a training run, measured in one run on this machine: images/s of the data loader alone,
of the model step alone (forward, loss, backward, optimizer step on one batch held in memory) and of the
engine's full training step (utils/train/engine.py, from its per-epoch training time in train_log.csv).

    python scripts/bench_train.py                            # OrthoHash AlexNet 64 bits, batch 32, 56 px
    python scripts/bench_train.py --method hashnet --num-workers 2 --steps 10
    python scripts/bench_train.py --data-path datasets/coco --list-dir data/coco --dataset coco --crop-size 224
    python scripts/bench_train.py --compare-feature-cache --method hashnet --backbone resnet18 --crop-size 64

--compare-feature-cache trains with --freeze-backbone twice in one run, from images (--feature-cache off)
and from cached features (--feature-cache auto), and prints both runs' per-epoch times and their ratio.

Without --data-path, generated lite images are written to a temporary folder. Any other training flag
(e.g. --optimizer, --amp) is passed to the engine and to the model step alike.
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("FLAGS_use_mkldnn", "0")  # as the training scripts

from utils.errors import cli_entry  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=10, help="timed steps of the loader and of the model step")
    p.add_argument("--epochs", type=int, default=2, help="engine epochs; the last one is reported (default 2)")
    p.add_argument("--n-train", type=int, default=352, help="generated training images (without --data-path)")
    p.add_argument("--compare-feature-cache", action="store_true",
                   help="frozen backbone: per-epoch time from images vs from cached features "
                        "(utils/train/feature_cache.py)")
    args, train_flags = p.parse_known_args(argv)
    return args, train_flags


def engine_args(train_flags, data_dir, out, epochs):
    from utils.train.config import build_parser

    defaults = ["--method", "orthohash", "--bit", "64", "-bs", "32", "--resize-size", "64", "--crop-size", "56",
                "--num-workers", "0", "--seed", "0", "-lr", "1e-3"]
    if data_dir:
        defaults += ["--dataset", "lite_single", "--data-path", os.path.join(data_dir, "images"),
                     "--list-dir", os.path.join(data_dir, "lists")]
    given = {a.split("=")[0] for a in train_flags if a.startswith("-")}
    merged = []
    for i in range(0, len(defaults), 2):
        if defaults[i] not in given:
            merged += defaults[i:i + 2]
    argv = merged + list(train_flags) + ["--epochs", str(epochs), "-ee", str(10 ** 6), "--output", out]
    return build_parser("bench").parse_args(argv)


def time_loader(loader, steps):
    it = iter(loader)
    next(it)  # warm-up (worker start-up)
    n, start = 0, time.perf_counter()
    for _ in range(steps):
        img = next(it)[0]
        n += img.shape[0]
    return n / (time.perf_counter() - start)


def time_model_step(run, steps):
    """The engine's model, loss and optimizer on one batch held in memory: forward, loss, backward, step."""
    from models import METHODS
    from utils.train.amp import Amp
    from utils.train.engine import build_optimizer

    cfg, model = run.cfg, run.model
    criterion = METHODS[cfg["method"]].build_loss(cfg, model.head, len(run.data.sets["train"].list))
    optimizer, _ = build_optimizer(cfg, model)
    amp = Amp(cfg["amp"], run.env.device)
    criterion.set_epoch(1)
    img, label, idx, _ok = next(iter(run.data.train_loader))
    model.train()

    def step():  # what the engine's loop does per batch, without the data loader and the bookkeeping
        with amp.autocast():
            out = model(img)
        loss = criterion(amp.float32(out), label, idx)
        value = float(loss.item())
        amp.step(loss, optimizer)
        return value

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * img.shape[0] / (time.perf_counter() - start)


def lite_data(args, train_flags, tmp):
    """Without --data-path: generated lite images in `tmp` (their folder), else None."""
    from utils.data.lite_data import generate

    if "--data-path" in train_flags or "--data_path" in train_flags:
        return None
    data_dir = os.path.join(tmp, "lite")
    generate("single", os.path.join(data_dir, "images"), os.path.join(data_dir, "lists"),
             n_train=args.n_train, n_database=16, n_test=8, seed=0)
    return data_dir


def compare_feature_cache(args, train_flags, data_dir, tmp):
    """Train twice with --freeze-backbone: --feature-cache off, then auto; print per-epoch seconds and the ratio."""
    import paddle

    from utils.train.engine import Run

    times, walls = {}, {}
    for mode in ("off", "auto"):
        flags = [*train_flags, "--freeze-backbone", "--feature-cache", mode]
        run = Run(engine_args(flags, data_dir, os.path.join(tmp, f"cache_{mode}"), args.epochs), distributed=False)
        paddle.seed(run.cfg["seed"])
        start = time.perf_counter()
        state = run.fit()
        walls[mode] = time.perf_counter() - start
        times[mode] = [row["seconds"] for row in state.history]
    cfg = run.cfg
    print(f"\n{cfg['method']} {cfg['backbone']} (frozen) {cfg['bit']} bits, batch {cfg['batch_size']}, input "
          f"{cfg['crop_size']}px, {len(run.data.sets['train'])} training images, {paddle.get_device()}, "
          f"{os.cpu_count()} cores")
    print(f"{'epoch':<7} {'images (s)':>11} {'cached (s)':>11} {'speed-up':>9}")
    for e, (a, b) in enumerate(zip(times["off"], times["auto"]), start=1):
        print(f"{e:<7} {a:>11.2f} {b:>11.2f} {a / max(b, 1e-9):>8.1f}x")
    mean_off, mean_on = np.mean(times["off"]), np.mean(times["auto"])
    print(f"{'mean':<7} {mean_off:>11.2f} {mean_on:>11.2f} {mean_off / max(mean_on, 1e-9):>8.1f}x")
    print(f"whole fit() incl. the cache build and the final evaluation: {walls['off']:.1f}s from images, "
          f"{walls['auto']:.1f}s cached ({walls['off'] / walls['auto']:.2f}x)")


def main(argv=None):
    args, train_flags = parse_args(argv)
    if args.compare_feature_cache:
        with tempfile.TemporaryDirectory() as tmp:
            return compare_feature_cache(args, train_flags, lite_data(args, train_flags, tmp), tmp)
    import paddle

    from utils.train.engine import Run

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = lite_data(args, train_flags, tmp)
        # the loader and the model step alone, on a Run's data and model (fresh weights, nothing trained)
        probe = Run(engine_args(train_flags, data_dir, os.path.join(tmp, "probe"), args.epochs), distributed=False)
        cfg = probe.cfg
        loader_ips = time_loader(probe.data.train_loader, args.steps)
        model_ips = time_model_step(probe, args.steps)
        # the engine's full step: its own training loop, timed by itself (train_log.csv "seconds")
        paddle.seed(cfg["seed"])
        run = Run(engine_args(train_flags, data_dir, os.path.join(tmp, "engine"), args.epochs), distributed=False)
        state = run.fit()
        steps_per_epoch = len(run.data.train_loader)
        seconds = state.history[-1]["seconds"]
        engine_ips = steps_per_epoch * cfg["batch_size"] / seconds
    print(f"\n{cfg['method']} {cfg['backbone']} {cfg['bit']} bits, batch {cfg['batch_size']}, "
          f"input {cfg['crop_size']}px, optimizer {cfg['optimizer']}, amp {cfg['amp']}, {cfg['num_workers']} loader "
          f"workers, {paddle.get_device()}, {os.cpu_count()} cores")
    print(f"{'what':<34} {'images/s':>9} {'s/step':>8} {'vs model step':>14}")
    for name, ips in (("data loader alone", loader_ips), ("model step alone (fwd+bwd+opt)", model_ips),
                      (f"engine step (epoch {args.epochs}, {steps_per_epoch} steps)", engine_ips)):
        print(f"{name:<34} {ips:>9.1f} {cfg['batch_size'] / ips:>8.3f} {ips / model_ips:>13.2f}x")
    slower = model_ips / engine_ips - 1
    print(f"engine step is {100 * slower:+.1f}% slower than the model step alone "
          f"({'within' if slower <= 0.05 else 'NOT within'} 5%)")


if __name__ == "__main__":
    sys.exit(cli_entry(main)())
