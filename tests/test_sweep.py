"""scripts/sweep_scratch.py: the variants it trains around each scratch recipe, its resumable CSV and
the table's choice (the training itself is main_single_gpu.py, tested elsewhere)."""
import importlib.util
import os

import pytest

from tests.helpers import ROOT


@pytest.fixture(scope="module")
def sweep():
    spec = importlib.util.spec_from_file_location("sweep_scratch", os.path.join(ROOT, "scripts", "sweep_scratch.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_variants_follow_the_scratch_recipe(sweep):
    names, cfg = sweep.variants("hashnet", "lite_single")
    assert [n for n, _ in names] == ["base", "lr/3", "lr*3", "bs32"]
    assert dict(names)["lr*3"] == {"--lr": f"{cfg['lr'] * 3:.3g}"} and cfg["lr"] == 3e-4
    csq = dict(sweep.variants("csq", "lite_multi")[0])
    assert csq["crop_flip"] == {"--train-augment": "crop_flip"} and csq["linear"] == {"--head": "linear"}


def test_results_round_trip_and_the_choice_waits_for_a_complete_sweep(sweep, tmp_path):
    path = str(tmp_path / "sweep.csv")
    row = dict(seed="0", bit="64", epochs="8", batch_size="16", lr="0.001", train_augment="crop_flip", head="",
               best_epoch="8", seconds="1")
    rows = [dict(row, method="orthohash", dataset=d, variant=v, map=m)
            for d, v, m in [("lite_single", "base", "0.5"), ("lite_multi", "base", "0.3"),
                            ("lite_single", "lr*3", "0.6"), ("lite_multi", "lr*3", "0.1")]]
    sweep.write_results(path, rows)
    def key(r):
        return sorted(r.items())

    assert sorted(map(key, sweep.read_results(path))) == sorted(map(key, rows))
    _, chosen = sweep.table(rows)
    assert chosen == {"orthohash": "base"}  # mean 0.4 against 0.35
    _, chosen = sweep.table(rows[:3])  # lr*3 has one set only: no choice yet
    assert chosen == {"orthohash": None}
    (tmp_path / "bad.csv").write_text("method,map\nx,1\n")
    from utils.errors import UserError

    with pytest.raises(UserError, match="columns"):
        sweep.read_results(str(tmp_path / "bad.csv"))
