"""Throughput of the ways to run a model, in one run on this machine: dygraph and every registered
runtime (utils/deploy/runtimes.py: Paddle Inference, ONNX Runtime), on the same batches, with the same
number of threads.

    python scripts/bench_inference.py                       # random-weight AlexNet, 64 bits, 224 px, batch 64
    python scripts/bench_inference.py --pretrained output/hashnet_64/best.pdparams --batches 5

Without --pretrained a random-weight model is built and exported to a temporary folder (speed does not
depend on the weights). Prints images/s per engine, the ratio to dygraph, and code agreement.

The INT8 runtime (onnx-int8) is calibrated on --calib-num images of the checkpoint's training list
(random batches without --pretrained, for its speed only). With --pretrained, every engine also encodes
the checkpoint's query and database lists: "same bits" is then measured on those images, next to each
engine's mAP and its change from dygraph (FP32).
"""
import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("FLAGS_use_mkldnn", "0")

import numpy as np  # noqa: E402

from utils.errors import cli_entry  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pretrained", default=None, help="checkpoint to benchmark (default: random AlexNet)")
    p.add_argument("--method", default="hashnet")
    p.add_argument("--backbone", default="alexnet")
    p.add_argument("--bit", type=int, default=64)
    p.add_argument("--crop-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--batches", type=int, default=3, help="timed batches per engine (after one warm-up)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads for every engine")
    p.add_argument("--calib-num", type=int, default=100, help="INT8 calibration images (default %(default)s)")
    return p.parse_args(argv)


def random_checkpoint(args, directory):
    import paddle

    from models import build_model
    from models.checkpoint import TrainState, save_checkpoint

    cfg = {"method": args.method, "backbone": args.backbone, "bit": args.bit, "num_labels": 10, "dataset": "custom",
           "crop_size": args.crop_size, "resize_size": args.crop_size * 8 // 7, "seed": 0, "codebook": "B",
           "margin": 0.2, "scale": 8.0, "loss": "cos", "alpha": 0.1, "step_continuation": 20,
           "bn_variance": "unbiased", "label_mode": "smooth", "head": "mlp", "head_dropout": 0.0,
           "data_path": None, "list_dir": None}
    paddle.seed(0)
    model = build_model(cfg)
    path = os.path.join(directory, "random.pdparams")
    save_checkpoint(path, model, cfg, TrainState(best_map=0.0))
    return path


def throughput(engine, batches):
    engine.run(batches[0])  # warm-up
    start = time.perf_counter()
    outs = [engine.run(b) for b in batches]
    return sum(len(b) for b in batches) / (time.perf_counter() - start), np.concatenate(outs)


def calibration(args, dy, rng):
    from utils.deploy.quantize import Calibration, calibration_from_list

    cfg = dy.cfg
    if args.pretrained:
        return calibration_from_list(os.path.join(cfg["list_dir"], "train.txt"), cfg["data_path"], dy.preprocess,
                                     args.calib_num), 0.0
    crop = cfg["crop_size"]
    batches = [rng.standard_normal((min(16, args.calib_num), 3, crop, crop)).astype(np.float32)
               for _ in range(max(1, args.calib_num // 16))]
    return Calibration(batches, batches[:1], "random batches (speed only)"), 0.0


def retrieval_codes(engine, dy, lists):
    """Continuous codes of the query and database images (in list order) through `engine`."""
    from utils.deploy import encode_images

    return [encode_images(engine, [os.path.join(dy.cfg["data_path"], p) for p in lst.paths], dy.preprocess, 64)[0]
            for lst in lists]


def main(argv=None):
    args = parse_args(argv)
    import paddle

    from utils.data.lists import read_list
    from utils.deploy import DygraphEncoder
    from utils.deploy.runtimes import RUNTIMES
    from utils.retrieval import mean_average_precision

    paddle.set_num_threads(args.threads) if hasattr(paddle, "set_num_threads") else None
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.pretrained or random_checkpoint(args, tmp)
        dy = DygraphEncoder(ckpt)
        crop = dy.cfg["crop_size"]
        calib, min_agreement = calibration(args, dy, rng)
        for runtime in RUNTIMES.values():  # in registration order: a runtime may convert an earlier one's model
            runtime.export(dy.model, crop, tmp, log=lambda _line: None, opset=11, calibration=calib,
                           min_bit_agreement=min_agreement)
        batches = [rng.standard_normal((args.batch_size, 3, crop, crop)).astype(np.float32)
                   for _ in range(args.batches)]
        engines = [("dygraph", dy)] + [(name, rt.open(tmp, threads=args.threads)) for name, rt in RUNTIMES.items()]
        lists = None
        if args.pretrained:
            lists = [read_list(os.path.join(dy.cfg["list_dir"], f"{n}.txt")) for n in ("test", "database")]
        rows = []
        for name, engine in engines:
            ips, out = throughput(engine, batches)
            rows.append((name, ips, out, retrieval_codes(engine, dy, lists) if lists else None))
    ref_ips, ref, ref_codes = rows[0][1], rows[0][2], rows[0][3]
    print(f"{dy.cfg['method']} {dy.cfg['backbone']} {dy.cfg['bit']} bits, input {crop}px, batch {args.batch_size}, "
          f"{args.batches} timed batches, {args.threads} threads, CPU; INT8 calibration: {calib.source}")
    if lists:
        print(f"same bits and mAP@all on {dy.cfg['dataset']}: {len(lists[0])} queries, {len(lists[1])} database "
              f"images ({dy.cfg['list_dir']})")
        maps = {}
    else:
        print("same bits on the timed random batches (no --pretrained: no mAP)")
    print(f"{'engine':<10} {'images/s':>9} {'vs dygraph':>11} {'max |diff|':>11} {'same bits':>10}"
          + (f" {'mAP':>7} {'change':>8}" if lists else ""))
    for name, ips, out, codes in rows:
        diff = float(np.abs(out - ref).max())
        line = f"{name:<10} {ips:>9.1f} {ips / ref_ips:>10.2f}x {diff:>11.2e}"
        if lists:
            q, d = codes
            same = float(np.mean(np.concatenate([(q > 0) == (ref_codes[0] > 0), (d > 0) == (ref_codes[1] > 0)])))
            maps[name] = mean_average_precision(q, d, lists[0].labels, lists[1].labels)
            line += f" {100 * same:>9.2f}% {maps[name]:>7.4f} {maps[name] - maps['dygraph']:>+8.4f}"
        else:
            line += f" {100 * float(np.mean((out > 0) == (ref > 0))):>9.2f}%"
        print(line)


if __name__ == "__main__":
    sys.exit(cli_entry(main)())
