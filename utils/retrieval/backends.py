"""Which backend computes a search or a metric: "auto" picks numba when it is installed (a search then
falls back to faiss, then numpy), and asking for a backend that is not installed is a UserError. The
availability flags are read here at call time (tests patch `HAVE_NUMBA` and `_faiss` in this module)."""
from utils.retrieval.faiss_bridge import _faiss
from utils.retrieval.kernels_numba import HAVE_NUMBA

# the search kernels a caller may ask for (--engine): "auto" and the exact ones
SEARCH_ENGINES = ("auto", "numba", "numpy", "faiss")


def _backend(backend, allowed):
    """Check a backend name against `allowed` → the engine to run ("auto" → `_exact_backend()`)."""
    if backend not in allowed:
        raise ValueError(f"backend must be one of {', '.join(allowed)}; got {backend!r}")
    if backend == "auto":
        return _exact_backend()
    if backend == "numba" and not HAVE_NUMBA:
        from utils.errors import UserError

        raise UserError("backend 'numba' requested but numba is not installed (pip install numba)")
    if backend == "faiss" and _faiss() is None:
        from utils.errors import UserError

        raise UserError("backend 'faiss' requested but faiss is not installed (pip install faiss-cpu)")
    return backend


def _exact_backend():
    """The exact engine "auto" means for metrics (and for faiss rows that need an exact re-rank)."""
    return "numba" if HAVE_NUMBA else "numpy"


def _search_backend(backend):
    """The backend of a top-k search: "auto" → numba, else faiss, else numpy."""
    if backend == "auto":
        backend = "numba" if HAVE_NUMBA else ("faiss" if _faiss() is not None else "numpy")
    return _backend(backend, SEARCH_ENGINES[1:])
