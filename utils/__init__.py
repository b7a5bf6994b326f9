"""The project's library below the entry points (the networks, losses, codebooks and checkpoints are in
`models`): `data` (lists, datasets, transforms, lite data), `train` (command line and the training /
evaluation engine), `retrieval` (codes, Hamming ranking, mAP), `report` (evaluation metrics, report),
`index` (the living index of codes), `deploy` (export, runtimes, search service), and the small leaves
(`errors`, `fileio`, `rundir`, `registry`, `safe_pickle`, `cache_file`, `stop_signal`, `cli`,
`weight_files`), and `code_cache` (a run's cached database codes).

`utils.retrieval`, `utils.report` and `utils.index` import neither Paddle nor `models`
(tests/test_layers.py); importing `utils` itself imports nothing else.
"""
import warnings

# Paddle warns on every import that ccache (a compiler cache for custom C++ ops) is missing; we build none.
warnings.filterwarnings("ignore", message="No ccache found")
