"""The method registry. A method is one module here — its loss, its head choice, its options and its
recipe (models/methods/base.py) — ending in one `register(Method(...))` call; adding a method is that
file plus its import line below. Everything else (training, evaluation, export, inference, prediction,
the service, TIPC) is shared.
"""
from models.methods.base import METHODS, Method, Option, Recipe, Rule, fill_legacy, method_options, register
from models.methods import hashnet, orthohash, relahash, dpsh, csq  # noqa: F401  (each registers itself)
from models.methods import dsh, dhn, dch, dfh, dpn, greedyhash, dshsd, lcdsh  # noqa: F401
from models.methods import unsupervised, shallow  # noqa: F401

__all__ = ["METHODS", "Method", "Option", "Recipe", "Rule", "fill_legacy", "method_options", "register"]
