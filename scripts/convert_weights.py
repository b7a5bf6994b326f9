"""Convert ImageNet weights to a Paddle .pdparams file in this project's backbone layout, once.

    python scripts/convert_weights.py alexnet-owt-7be5be79.pth weights/alexnet_imagenet.pdparams --backbone alexnet
    python scripts/convert_weights.py AlexNet_pretrained.pdparams weights/alexnet_pv.pdparams --backbone alexnet
    python scripts/convert_weights.py resnet50-11ad3fa6.pth weights/resnet50.pdparams --backbone resnet50

Reads what `--backbone-weights` reads (torchvision / PyTorch .pth and .pt in both torch.save formats,
.safetensors, Paddle and PaddleClas .pdparams; see utils/weight_files.py), maps it onto the backbone with
the same checks (models/weights.py), prints the same summary, and writes the backbone's state dict
atomically. The result loads with `--backbone-weights OUT` without conversion. torch is not needed:
pickles are read with a restricted unpickler that runs nothing from the file.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from models import BACKBONES, build_backbone, load_backbone_weights  # noqa: E402
from utils.cli import add_flag  # noqa: E402
from utils.errors import UserError, cli_entry  # noqa: E402
from utils.fileio import atomic_path  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="weights file (.pth, .pt, .safetensors, .pdparams)")
    p.add_argument("output", help="Paddle .pdparams file to write")
    p.add_argument("--backbone", required=True, choices=sorted(BACKBONES))
    add_flag(p, "--allow-partial-weights", dest="allow_partial", action="store_true",
             help="write even when some backbone parameters are not in the file")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    return p.parse_args(argv)


@cli_entry
def main(argv=None):
    args = parse_args(argv)
    if not args.output.endswith(".pdparams"):
        raise UserError(f"{args.output}: the output must be a .pdparams file")
    if os.path.exists(args.output) and os.path.exists(args.input) and os.path.samefile(args.output, args.input):
        raise UserError(f"{args.output}: the output would overwrite the input; choose another path")
    if os.path.exists(args.output) and not args.force:
        raise UserError(f"{args.output}: exists; pass --force to overwrite it")
    import paddle

    backbone = build_backbone(args.backbone)
    info = load_backbone_weights(backbone, args.input, flag="input", allow_partial=args.allow_partial)
    print(info["summary"])
    with atomic_path(args.output) as tmp:
        paddle.save(backbone.state_dict(), tmp)
    print(f"wrote {args.output}: {args.backbone} backbone, {info['total']} tensors "
          f"(use it with --backbone {args.backbone} --backbone-weights {args.output})")


if __name__ == "__main__":
    main()
