"""The one training / evaluation engine behind main_single_gpu.py and main_multi_gpu.py, in parts that
each own one concern:

    run.py           Run: process group, checkpoint, cfg, output folder, log, random state, data, model
    data.py          the lists, datasets and loaders; unreadable images (BadImages)
    trainer.py       the training loop, optimizer and lr schedule, stop signal, closed-form fits
    evaluator.py     encode query/database → utils.retrieval (mAP) → EvalResult
    checkpointer.py  resume, last/best checkpoints, best mAP, the finite-weights check
    reporter.py      logging, metrics.json, train_log.csv, database codes, report, VisualDL

    cfg → lists → datasets/loaders → model (backbone + head) → loss → train epochs
        → encode query/database → utils.retrieval (mAP) → checkpoints, codes, metrics

Multi-process runs differ only in: sharded samplers, `paddle.DataParallel`, codes gathered from
every rank before ranking, the memory-bank losses fed with every rank's batch (the gather they are
built with), and writes on rank 0.
"""
import sys

from models.checkpoint import load_checkpoint
from utils.train.config import format_recipe, resolve
from utils.train.evaluator import EvalResult, encode, evaluate  # noqa: F401  (the engine's API)
from utils.train.run import Run
from utils.train.trainer import build_optimizer, lr_step  # noqa: F401  (scripts/bench_train.py)

__all__ = ["EvalResult", "Run", "build_optimizer", "encode", "evaluate", "lr_step", "main", "print_recipe"]


def print_recipe(args):
    """--print-recipe: the resolved settings and their sources (from the checkpoint when one is given)."""
    ckpt_path = args.resume or args.pretrained
    ckpt_cfg = load_checkpoint(ckpt_path, "--resume" if args.resume else "--pretrained")["cfg"] if ckpt_path else None
    sources = {}
    print(format_recipe(resolve(args, ckpt_cfg, sources), sources))


def main(argv=None, distributed=False, description=""):
    from utils.train.config import build_parser

    args = build_parser(description).parse_args(argv)
    if args.print_recipe:
        return print_recipe(args)
    run = Run(args, distributed)
    if run.cfg["eval"]:
        run.evaluate_only()
    else:
        try:
            run.fit()
        except KeyboardInterrupt:
            sys.exit(130)
