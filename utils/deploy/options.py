"""The command-line option groups the entry points share, built once from the registries, with one
vocabulary (see README "Words"):

    --runtime   the model runtime of an exported model: utils.deploy.runtimes.RUNTIMES (paddle, onnx, onnx-int8)
    --engine    the search kernel: utils.retrieval.SEARCH_ENGINES (auto, numba, numpy, faiss)
    --backend   the index storage: utils.index.BACKENDS (embedded, milvus) — in scripts/index.py only;
                elsewhere `--backend` is the old spelling of --runtime and still accepted
    --method    the hashing method: models.methods.METHODS (utils/train/config.py builds the training flags)

Every option here goes through utils.cli.add_flag, the one place that makes paddle_hashnet's underscore
spellings (--data_path for --data-path). Adding a runtime, an engine or an index store to its registry
adds it to every entry point's choices and -h.
"""
from utils.cli import add_flag

OLD_RUNTIME_SPELLING = "--backend"


def add_runtime(parser, default="paddle", help_text="runtime of an exported --model-dir", old_spelling=True):
    """--runtime (into args.runtime); `old_spelling`: also accept --backend, its name before this release."""
    from utils.deploy.runtimes import RUNTIMES

    names = ("--runtime", OLD_RUNTIME_SPELLING) if old_spelling else ("--runtime",)
    note = f"; {OLD_RUNTIME_SPELLING} is its old spelling" if old_spelling else ""
    shown = f" (default {default})" if default else ""
    return add_flag(parser, *names, dest="runtime", choices=tuple(RUNTIMES), default=default,
                    help=f"{help_text}: {', '.join(RUNTIMES)}{shown}{note}")


def add_engine(parser, help_text="search kernel (default: auto, or the index's)"):
    """--engine: the exact search kernel of utils.retrieval."""
    from utils.retrieval import SEARCH_ENGINES

    return add_flag(parser, "--engine", choices=SEARCH_ENGINES, default=None, help=help_text)


def add_index_backend(parser, default="embedded"):
    """--backend: where an index keeps its codes (scripts/index.py build)."""
    from utils.index import BACKENDS

    return add_flag(parser, "--backend", choices=tuple(BACKENDS), default=default,
                    help=f"index storage: {', '.join(BACKENDS)} (default {default})")


def add_database(parser):
    """Where a database list is (predict.py, the service): each defaults to what training used."""
    add_flag(parser, "--dataset", default=None, help="data set of the database (default: the model's)")
    add_flag(parser, "--data-path", default=None,
             help="image root of the database list (default: the one training used)")
    add_flag(parser, "--list-dir", default=None, help="folder with database.txt (default: the one training used)")


def add_search_model(parser, runtime_default="paddle"):
    """The runtime of an exported model and the database flags predict.py and the service share."""
    add_runtime(parser, runtime_default, "for --model-dir")
    add_database(parser)
