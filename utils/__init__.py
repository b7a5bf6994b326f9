"""Deep hashing library: data, losses, training engine and the retrieval engine.

`utils.retrieval` is importable without Paddle; everything that trains imports Paddle lazily.
"""
import warnings

# Paddle warns on every import that ccache (a compiler cache for custom C++ ops) is missing; we build none.
warnings.filterwarnings("ignore", message="No ccache found")
