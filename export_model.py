"""Export a checkpoint to a static Paddle model (and ONNX) for deployment.

    python export_model.py --pretrained output/best.pdparams --output-dir output/inference --onnx

Everything (method, bit, backbone, input size, normalisation, codebook) comes from the checkpoint;
the flags --method/--bit/--backbone/--crop-size may be given only to assert what is inside. Writes
inference.json + inference.pdiparams (Paddle 3; .pdmodel on 2.x), inference.onnx with --onnx, and
inference.yml. The exported graph outputs the continuous code; sign is applied outside. At the end one
batch goes through dygraph, static and ONNX and the differences are printed.
"""
import argparse
import os
import sys

import numpy as np

from utils.cli import add_flag
from utils.deploy.runtimes import RUNTIMES
from utils.errors import UserError, cli_entry

CHECKED = ("method", "bit", "backbone", "crop_size", "resize_size")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pretrained", "--model-path", dest="pretrained", required=True,
                   help="checkpoint (best.pdparams / last.pdparams) written by training")
    add_flag(p, "--output-dir", "--save-inference-dir", dest="output_dir",
                   default="./output/inference", help="where to write the exported model (default %(default)s)")
    for rt in RUNTIMES.values():
        if rt.export_flag:  # the other runtimes are always exported
            p.add_argument("--" + rt.export_flag, dest=rt.export_flag, action="store_true",
                           help=f"also write {' + '.join(rt.files)} ({rt.summary})")
    p.add_argument("--opset", type=int, default=11, help="ONNX opset (default %(default)s)")
    g = p.add_argument_group("INT8 (--int8, implies --onnx; utils/deploy/quantize.py)")
    add_flag(g, "--calib-list", default=None,
                   help="list whose images calibrate the quantisation: the training list, e.g. data/coco/train.txt")
    add_flag(g, "--calib-num", type=int, default=256,
                   help="calibration images, a seeded sample of --calib-list; as many others check the bit "
                        "agreement (default %(default)s)")
    g.add_argument("--calib-data-path", dest="calib_data_path", default=None,
                   help="image root of --calib-list (default: the --data-path of training, from the checkpoint)")
    g.add_argument("--min-bit-agreement", type=float, default=None,
                   help="refuse an INT8 model whose codes agree with FP32 on fewer bits than this share "
                        "(default 0.98, see utils/deploy/quantize.py)")
    p.add_argument("--check-batch", type=int, default=4, help="images in the dygraph/static/ONNX check (0 = skip)")
    for key in CHECKED:  # accepted only to assert the checkpoint's value (TIPC passes them)
        flag = "--" + key.replace("_", "-")
        p.add_argument(flag, "--" + key, dest=key, type=str if key in ("method", "backbone") else int,
                       default=None, help=f"must match the checkpoint's {key} (optional)")
    return p.parse_args(argv)


def check(dygraph, directory, n, runtimes):
    """Run one random batch through every exact exported form; print max difference and bit agreement
    (a quantised form was checked against FP32 on real images when it was written)."""
    from utils.deploy import max_diff_and_bit_agreement

    crop = dygraph.cfg["crop_size"]
    batch = np.random.default_rng(0).standard_normal((n, 3, crop, crop)).astype(np.float32)
    ref = dygraph.run(batch)
    for runtime in (rt for rt in runtimes if rt.exact):
        diff, same = max_diff_and_bit_agreement(ref, runtime.open(directory).run(batch))
        print(f"check {runtime.name:6s} vs dygraph on {n} images: max |diff| {diff:.2e}, identical code bits "
              f"{100 * same:.2f}%")


def int8_options(args, cfg, preprocess):
    from utils.deploy import quantize

    if not args.calib_list:
        raise UserError("--int8 needs --calib-list: the training list, e.g. "
                        f"--calib-list {os.path.join(cfg.get('list_dir') or 'data/<dataset>', 'train.txt')}")
    threshold = quantize.MIN_BIT_AGREEMENT if args.min_bit_agreement is None else args.min_bit_agreement
    if not 0 <= threshold <= 1:
        raise UserError(f"--min-bit-agreement must be in [0, 1], got {threshold}")
    data_path = args.calib_data_path or cfg.get("data_path")
    if not data_path or not os.path.isdir(data_path):
        raise UserError(f"--calib-data-path {data_path}: not a directory; give the image root of --calib-list")
    calibration = quantize.calibration_from_list(args.calib_list, data_path, preprocess, args.calib_num)
    return {"calibration": calibration, "min_bit_agreement": threshold}


def main(argv=None):
    args = parse_args(argv)
    from utils.deploy import YML, DygraphEncoder, write_inference_yml
    from utils.fileio import check_writable_dir

    dygraph = DygraphEncoder(args.pretrained)
    cfg = dygraph.cfg
    for key in CHECKED:
        given = getattr(args, key)
        if given is not None and given != cfg[key]:
            raise UserError(f"--{key.replace('_', '-')} {given} contradicts the checkpoint {args.pretrained} "
                            f"({key} = {cfg[key]}); drop the flag, or export the checkpoint you meant")
    out = check_writable_dir(args.output_dir, "--output-dir")
    options = {"opset": args.opset}
    if args.int8:
        args.onnx = True  # the INT8 model is a quantisation of the FP32 ONNX one, written beside it
        options.update(int8_options(args, cfg, dygraph.preprocess))
    runtimes = [rt for rt in RUNTIMES.values() if not rt.export_flag or getattr(args, rt.export_flag)]
    files = {}
    for rt in runtimes:
        files.update(rt.export(dygraph.model, cfg["crop_size"], out, **options))
    write_inference_yml(out, cfg, dygraph.weights_fingerprint, files)
    print(f"----- {cfg['method']} {cfg['bit']} bits, {cfg['backbone']}, input 3x{cfg['crop_size']}x{cfg['crop_size']} "
          f"(resize {cfg['resize_size']}); preprocessing in {os.path.join(out, YML)}")
    if args.check_batch > 0:
        check(dygraph, out, args.check_batch, runtimes)


if __name__ == "__main__":
    sys.exit(cli_entry(main)())
