"""Hamming-space retrieval: packing, exact top-k search, mAP (plain and tie-aware), precision/recall.

Arrays in, arrays out; no Paddle. numpy is required, numba is used when importable (parallel kernels,
compiled on first use and cached on disk with ``cache=True``), faiss is an optional search backend.

Codes
-----
Every function takes codes in one of two forms (see `as_packed`):

* **unpacked** ``(n, bits)`` of any dtype *except* uint8: ±1 (float or int), {0, 1} or bool. A bit is
  1 where the value is ``> 0``; so ``sign(0) == 0`` in a ±1 float array counts as a *negative* bit, and
  continuous network outputs can be passed directly (their sign is taken).
* **packed** ``(n, ceil(bits / 8))`` **uint8**, as made by `pack_codes` (``np.packbits`` order, bit 1
  for positive). Pass ``bits=`` when bits is not a multiple of 8 (otherwise it is taken from the
  unpacked operand, else ``8 * n_bytes``); padding bits are cleared.

A uint8 array is *always* read as packed. Keep {0, 1} codes as bool or int8, or pack them yourself.
`binarize` is the one sign rule of the project (±1 int8, 1 where > 0); `code_words` and `popcount` are
the packing and bit count behind every distance here, for callers that pair codes themselves.

Ranking rule
------------
Database items are ranked by Hamming distance to the query; ties are broken by database index (smaller
first), i.e. exactly ``np.argsort(dist, kind="stable")``. Every backend gives identical results.

Labels are 0/1 arrays ``(n, C)`` (one-hot or multi-hot); a database item is relevant to a query when
they share at least one label (HashNet protocol).

More metrics (precision / recall within a Hamming radius, MAP@R, R-precision, open-set query groups) live in
`utils.retrieval.metrics` and are re-exported here; their definitions are in that module's docstring.

Cost
----
The metrics make one pass over the database per query (numba: parallel over query blocks, a histogram
of distances gives every item's exact rank without sorting, relevance is computed only for the top k)
and keep O(n_db) memory per thread, never an n_query × n_db matrix. `hamming_topk` with small k scans
the database once per 8 queries. The numba kernels compile on first use (tens of seconds once per
machine; then loaded from the on-disk cache); importing this module compiles nothing.

Modules (this facade re-exports them; they never import it): codes, kernels_numpy, kernels_numba,
faiss_bridge, backends (which engine runs), search (top-k), ranking_metrics (mAP, P/R@k, PR by radius),
metrics (radius and R-based, one pass), radius (every item within a radius).
"""
from utils.retrieval.backends import SEARCH_ENGINES
from utils.retrieval.codes import as_packed, binarize, code_words, codes_to_hex, hex_to_codes, pack_codes, unpack_codes
from utils.retrieval.kernels_numba import HAVE_NUMBA
from utils.retrieval.kernels_numpy import popcount
from utils.retrieval.metrics import (RankStats, map_at_r, precision_recall_at_radius, query_groups, r_precision,
                                     rank_stats, subset_mean)
from utils.retrieval.ranking_metrics import (PRCurve, mean_average_precision, pr_curve_hamming_radius,
                                             precision_recall_at_k)
from utils.retrieval.search import HammingIndex, hamming_distance, hamming_topk

__all__ = [
    "HAVE_NUMBA", "SEARCH_ENGINES", "binarize", "pack_codes", "code_words", "popcount", "unpack_codes", "as_packed",
    "codes_to_hex", "hex_to_codes", "hamming_distance", "hamming_topk", "mean_average_precision",
    "precision_recall_at_k", "pr_curve_hamming_radius", "PRCurve", "HammingIndex",
    "RankStats", "rank_stats", "precision_recall_at_radius", "map_at_r", "r_precision", "query_groups", "subset_mean",
]
