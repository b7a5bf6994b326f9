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

from utils.deploy.runtimes import RUNTIMES
from utils.errors import UserError, cli_entry

CHECKED = ("method", "bit", "backbone", "crop_size", "resize_size")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pretrained", "--model-path", dest="pretrained", required=True,
                   help="checkpoint (best.pdparams / last.pdparams) written by training")
    p.add_argument("--output-dir", "--save-inference-dir", "--output_dir", dest="output_dir",
                   default="./output/inference", help="where to write the exported model (default %(default)s)")
    for rt in RUNTIMES.values():
        if rt.export_flag:  # the other runtimes are always exported
            p.add_argument("--" + rt.export_flag, dest=rt.export_flag, action="store_true",
                           help=f"also write {' + '.join(rt.files)} ({rt.summary})")
    p.add_argument("--opset", type=int, default=11, help="ONNX opset (default %(default)s)")
    p.add_argument("--check-batch", type=int, default=4, help="images in the dygraph/static/ONNX check (0 = skip)")
    for key in CHECKED:  # accepted only to assert the checkpoint's value (TIPC passes them)
        flag = "--" + key.replace("_", "-")
        p.add_argument(flag, "--" + key, dest=key, type=str if key in ("method", "backbone") else int,
                       default=None, help=f"must match the checkpoint's {key} (optional)")
    return p.parse_args(argv)


def check(dygraph, directory, n, runtimes):
    """Run one random batch through every exported form; print max difference and bit agreement."""
    from utils.deploy import max_diff_and_bit_agreement

    crop = dygraph.cfg["crop_size"]
    batch = np.random.default_rng(0).standard_normal((n, 3, crop, crop)).astype(np.float32)
    ref = dygraph.run(batch)
    for runtime in runtimes:
        diff, same = max_diff_and_bit_agreement(ref, runtime.open(directory).run(batch))
        print(f"check {runtime.name:6s} vs dygraph on {n} images: max |diff| {diff:.2e}, identical code bits "
              f"{100 * same:.2f}%")


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
    runtimes = [rt for rt in RUNTIMES.values() if not rt.export_flag or getattr(args, rt.export_flag)]
    files = {}
    for rt in runtimes:
        files.update(rt.export(dygraph.model, cfg["crop_size"], out, opset=args.opset))
    write_inference_yml(out, cfg, dygraph.weights_fingerprint, files)
    print(f"----- {cfg['method']} {cfg['bit']} bits, {cfg['backbone']}, input 3x{cfg['crop_size']}x{cfg['crop_size']} "
          f"(resize {cfg['resize_size']}); preprocessing in {os.path.join(out, YML)}")
    if args.check_batch > 0:
        check(dygraph, out, args.check_batch, runtimes)


if __name__ == "__main__":
    sys.exit(cli_entry(main)())
