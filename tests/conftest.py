import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("FLAGS_use_mkldnn", "0")

import pytest


@pytest.fixture(scope="session")
def lite_single(tmp_path_factory):
    """Small generated single-label data set (deterministic)."""
    from utils.data.lite_data import generate

    base = tmp_path_factory.mktemp("lite_single")
    generate("single", str(base / "images"), str(base / "lists"), n_train=24, n_database=48, n_test=12, seed=0)
    return {"dataset": "lite_single", "root": str(base / "images"), "list_dir": str(base / "lists")}


@pytest.fixture(scope="session")
def lite_multi(tmp_path_factory):
    """Small generated multi-label data set (deterministic)."""
    from utils.data.lite_data import generate

    base = tmp_path_factory.mktemp("lite_multi")
    generate("multi", str(base / "images"), str(base / "lists"), n_train=24, n_database=48, n_test=12, seed=0)
    return {"dataset": "lite_multi", "root": str(base / "images"), "list_dir": str(base / "lists")}
