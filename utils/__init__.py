"""Deep hashing library: data, losses, training engine and the retrieval engine.

`utils.retrieval` is importable without Paddle; everything that trains imports Paddle lazily.
"""
