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

from utils.errors import UserError, cli_entry

CHECKED = ("method", "bit", "backbone", "crop_size", "resize_size")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pretrained", "--model-path", dest="pretrained", required=True,
                   help="checkpoint (best.pdparams / last.pdparams) written by training")
    p.add_argument("--output-dir", "--save-inference-dir", "--output_dir", dest="output_dir",
                   default="./output/inference", help="where to write the exported model (default %(default)s)")
    p.add_argument("--onnx", action="store_true", help="also write inference.onnx (paddle2onnx)")
    p.add_argument("--opset", type=int, default=11, help="ONNX opset (default %(default)s)")
    p.add_argument("--check-batch", type=int, default=4, help="images in the dygraph/static/ONNX check (0 = skip)")
    for key in CHECKED:  # accepted only to assert the checkpoint's value (TIPC passes them)
        flag = "--" + key.replace("_", "-")
        p.add_argument(flag, "--" + key, dest=key, type=str if key in ("method", "backbone") else int,
                       default=None, help=f"must match the checkpoint's {key} (optional)")
    return p.parse_args(argv)


def export_paddle(model, crop, prefix):
    import paddle

    model.eval()
    spec = [paddle.static.InputSpec([None, 3, crop, crop], "float32", "x")]
    paddle.jit.save(model, prefix, input_spec=spec)


def export_onnx(model_file, params_file, onnx_file, opset):
    try:
        import paddle2onnx
    except ImportError:
        raise UserError("--onnx needs paddle2onnx: pip install paddle2onnx onnxruntime")
    import contextlib
    import io

    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        paddle2onnx.export(model_file, params_file, onnx_file, opset_version=opset, enable_onnx_checker=True,
                           optimize_tool="None")
    if not os.path.isfile(onnx_file):
        raise UserError(f"paddle2onnx wrote no {onnx_file}:\n{log.getvalue()[-2000:]}")


def check(dygraph, directory, n, with_onnx):
    """Run one random batch through every exported form; print max difference and bit agreement."""
    from utils.deploy import OnnxEncoder, PaddleInferenceEncoder, max_diff_and_bit_agreement

    crop = dygraph.cfg["crop_size"]
    batch = np.random.default_rng(0).standard_normal((n, 3, crop, crop)).astype(np.float32)
    ref = dygraph.run(batch)
    engines = [PaddleInferenceEncoder(directory)] + ([OnnxEncoder(directory)] if with_onnx else [])
    for engine in engines:
        diff, same = max_diff_and_bit_agreement(ref, engine.run(batch))
        print(f"check {engine.name:6s} vs dygraph on {n} images: max |diff| {diff:.2e}, identical code bits "
              f"{100 * same:.2f}%")


def main(argv=None):
    args = parse_args(argv)
    from utils.deploy import PREFIX, DygraphEncoder, paddle_model_files, write_inference_yml
    from utils.fileio import check_writable_dir

    dygraph = DygraphEncoder(args.pretrained)
    cfg = dygraph.cfg
    for key in CHECKED:
        given = getattr(args, key)
        if given is not None and given != cfg[key]:
            raise UserError(f"--{key.replace('_', '-')} {given} contradicts the checkpoint {args.pretrained} "
                            f"({key} = {cfg[key]}); drop the flag, or export the checkpoint you meant")
    out = check_writable_dir(args.output_dir, "--output-dir")
    prefix = os.path.join(out, PREFIX)
    export_paddle(dygraph.model, cfg["crop_size"], prefix)
    model_file, params_file = paddle_model_files(out)
    files = {"model": os.path.basename(model_file), "params": os.path.basename(params_file)}
    print(f"----- static Paddle model: {model_file} + {params_file}")
    if args.onnx:
        export_onnx(model_file, params_file, prefix + ".onnx", args.opset)
        files["onnx"] = PREFIX + ".onnx"
        print(f"----- ONNX model (opset {args.opset}): {prefix}.onnx")
    write_inference_yml(out, cfg, dygraph.weights_fingerprint, files)
    print(f"----- {cfg['method']} {cfg['bit']} bits, {cfg['backbone']}, input 3x{cfg['crop_size']}x{cfg['crop_size']} "
          f"(resize {cfg['resize_size']}); preprocessing in {os.path.join(out, 'inference.yml')}")
    if args.check_batch > 0:
        check(dygraph, out, args.check_batch, args.onnx)


if __name__ == "__main__":
    sys.exit(cli_entry(main)())
