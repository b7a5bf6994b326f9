"""Hash images with an exported model in one of the registered runtimes (Paddle Inference, ONNX Runtime).

    python deploy/inference_python/infer.py --model-dir output/inference --img demo.jpg
    python deploy/inference_python/infer.py --model-dir output/inference --img images/ --backend onnx \
        --batch-size 64 --save-codes codes.npy --benchmark

Prints one line per image: `<image path>\t<code as hex>` (bit i of the code is bit 7 - i%8 of byte
i//8, 1 for a positive output). Preprocessing comes from the model's inference.yml.
"""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


from utils.cli import add_flag  # noqa: E402
from utils.deploy.options import add_runtime  # noqa: E402
from utils.deploy.runtimes import open_exported  # noqa: E402
from utils.errors import UserError, cli_entry  # noqa: E402



def str2bool(v):
    if isinstance(v, bool):
        return v
    if v.lower() in ("1", "true", "yes", "y", "on"):
        return True
    if v.lower() in ("0", "false", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got '{v}'")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flag(p, "--model-dir", required=True,
                   help="folder written by export_model.py (inference.yml + model files)")
    p.add_argument("--img", "--image_dir", dest="img", required=True, help="an image file or a folder of images")
    add_runtime(p, help_text="the runtime to run the export in")
    add_flag(p, "--use-gpu", type=str2bool, nargs="?", const=True, default=False)
    add_flag(p, "--batch-size", type=int, default=16)
    add_flag(p, "--cpu-threads", type=int, default=None,
                   help="CPU math threads (default: all cores)")
    add_flag(p, "--enable-mkldnn", type=str2bool, nargs="?", const=True,
                   default=True, help="oneDNN for Paddle Inference on CPU (default true; false if a model misbehaves)")
    add_flag(p, "--save-codes", default=None,
                   help="write the ±1 codes (int8, input order) to this .npy file")
    add_flag(p, "--skip-bad-images", action="store_true", help="skip unreadable images (default: stop)")
    p.add_argument("--benchmark", type=str2bool, nargs="?", const=True, default=False,
                   help="print preprocess / inference / postprocess ms per image and images/s")
    return p.parse_args(argv)


def list_images(path):
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise UserError(f"--img {path}: no such file or folder")
    from utils.data.images import IMAGE_EXTENSIONS, list_image_files

    found = list_image_files(path)
    if not found:
        raise UserError(f"--img {path}: folder holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return found


def main(argv=None):
    args = parse_args(argv)
    from utils.deploy import Timer, encode_images, read_inference_yml
    from utils.fileio import save_npy
    from utils.retrieval import binarize, codes_to_hex

    if args.batch_size <= 0:
        raise UserError(f"--batch-size must be positive, got {args.batch_size}")
    meta = read_inference_yml(args.model_dir)
    paths = list_images(args.img)
    encoder = open_exported(args.model_dir, args.runtime, args.use_gpu, args.cpu_threads, args.enable_mkldnn)
    preprocess = meta["preprocess_obj"]
    timer = Timer() if args.benchmark else None
    if args.benchmark:  # one warm-up batch outside the timings
        encode_images(encoder, paths[:args.batch_size], preprocess, args.batch_size,
                      on_error=lambda p, r: None)

    def skipped(path, reason):
        print(f"warning: skipping {path}: {reason}", file=sys.stderr)

    codes, kept = encode_images(encoder, paths, preprocess, args.batch_size, timer,
                                skipped if args.skip_bad_images else None)
    if timer:
        with timer.section("postprocess"):
            binary = binarize(codes)
            hexes = codes_to_hex(binary)
    else:
        binary = binarize(codes)
        hexes = codes_to_hex(binary)
    for path, h in zip(kept, hexes):
        print(f"{path}\t{h}")
    if args.save_codes:
        save_npy(args.save_codes, binary)
        print(f"----- saved {len(binary)} codes ({binary.shape[1]} bits) to {args.save_codes}", file=sys.stderr)
    if timer:
        print(f"----- benchmark ({args.runtime}, batch {args.batch_size}, "
              f"{'gpu' if args.use_gpu else 'cpu'}): {timer.report()}")


if __name__ == "__main__":
    sys.exit(cli_entry(main)())
