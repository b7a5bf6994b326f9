"""Evaluation report: each diagnostic on hand-made codes with a known answer, the files write_report
writes (valid PNGs, report.md links), training curves, and scripts/compare_runs.py."""
import json
import os
import re

import numpy as np
import pytest
from PIL import Image

from tests.helpers import run_cli
from utils import retrieval
from utils.report import diagnostics
from utils.report import _clean, compute_report, plot_training_curves, write_report


def one_hot(classes, n_classes):
    out = np.zeros((len(classes), n_classes), np.uint8)
    out[np.arange(len(classes)), classes] = 1
    return out


# the 4 rows of a Hadamard matrix: pairwise distance exactly 2 of 4 bits
HADAMARD4 = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]], np.float32)


def assert_png(path, min_w=300, min_h=200):
    assert os.path.isfile(path), path
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.format == "PNG"
        w, h = img.size
    assert w > min_w and h > min_h, (path, img.size)


# ------------------------------------------------------------------------------------- diagnostics
def test_binarize_follows_retrieval_sign_rule():
    u = np.array([[0.3, -0.2, 0.0, 5.0]])
    np.testing.assert_array_equal(diagnostics.binarize(u), [[1, -1, -1, 1]])
    assert np.array_equal(retrieval.pack_codes(diagnostics.binarize(u)), retrieval.pack_codes(u))


def test_bit_balance_perfect_and_constant():
    b = np.array([[1, 1, -1], [1, -1, -1], [-1, 1, -1], [-1, -1, -1]])
    np.testing.assert_allclose(diagnostics.bit_balance(b), [0, 0, -1])
    np.testing.assert_allclose(diagnostics.bit_balance(b[:, :2]), [0, 0])


def test_bit_correlation_identical_opposite_independent_constant():
    a = np.array([1, 1, -1, -1])
    c = np.array([1, -1, 1, -1])  # independent of a
    b = np.stack([a, a, -a, c, np.ones(4, int)], axis=1)  # bit 4 is constant
    r = diagnostics.bit_correlation(b)
    m = r["matrix"]
    assert m[0, 1] == pytest.approx(1.0) and m[0, 2] == pytest.approx(-1.0) and m[0, 3] == pytest.approx(0.0)
    assert np.isnan(m[4]).all() and np.isnan(m[:, 4]).all()
    assert r["constant_bits"] == [4]
    # |corr| over pairs of non-constant bits: (0,1)=1 (0,2)=1 (0,3)=0 (1,2)=1 (1,3)=0 (2,3)=0
    assert r["max_abs_offdiag"] == pytest.approx(1.0)
    assert r["mean_abs_offdiag"] == pytest.approx(0.5)
    # (1/N) BᵀB is defined for the constant bit too: <a,1> = 0, <c,1> = 0
    assert r["orthogonality_max_abs"] == pytest.approx(1.0)
    two_identical = np.stack([c, c], axis=1)
    assert diagnostics.bit_correlation(two_identical)["mean_abs_offdiag"] == pytest.approx(1.0)
    assert diagnostics.bit_correlation(np.ones((5, 2)))["mean_abs_offdiag"] is None


def test_bit_correlation_is_sampled_above_max_codes():
    b = np.where(np.random.default_rng(0).random((5000, 8)) > 0.5, 1, -1)
    r = diagnostics.bit_correlation(b, max_codes=1000)
    assert r["n_codes"] == 1000 and r["max_abs_offdiag"] < 0.15


def test_quantization_error_hand_values():
    q = diagnostics.quantization_error(np.array([[0.5, -0.5], [2.0, -2.0]]))
    assert q["normalized"] == pytest.approx(0.0)  # every code already has equal magnitudes
    assert q["raw"] == pytest.approx((0.5 + 0.5 + 1 + 1) / 4)
    assert q["tanh"] == pytest.approx((1 - np.tanh(0.5) + 1 - np.tanh(2.0)) / 2)
    # u = (1, 0, 0, 0): sign → (1, −1, −1, −1); rescaled to RMS 1 → (2, 0, 0, 0); |ũ − b| = (1, 1, 1, 1)
    q = diagnostics.quantization_error(np.array([[1.0, 0.0, 0.0, 0.0]]))
    assert q["normalized"] == pytest.approx(1.0)
    assert q["raw"] == pytest.approx(0.75)
    # scale-free: multiplying the output by 10 changes raw, not normalized
    u = np.random.default_rng(1).normal(size=(50, 16))
    assert diagnostics.quantization_error(10 * u)["normalized"] == pytest.approx(
        diagnostics.quantization_error(u)["normalized"])


@pytest.mark.parametrize("bits", [8, 72])
def test_distinct_codes(bits):
    rng = np.random.default_rng(bits)
    base = np.where(rng.random((3, bits)) > 0.5, 1, -1)
    codes = base[[0, 1, 2, 1]]
    assert diagnostics.distinct_codes(codes) == (3, 0.75)
    assert diagnostics.distinct_codes(base) == (3, 1.0)


def codebook_codes(reps_q=3, reps_db=5):
    classes_q = np.tile(np.arange(4), reps_q)
    classes_db = np.tile(np.arange(4), reps_db)
    return (HADAMARD4[classes_q], HADAMARD4[classes_db], one_hot(classes_q, 4), one_hot(classes_db, 4))


def test_hamming_codes_equal_to_codebook_rows_exact():
    q, d, ql, dl = codebook_codes()
    cb = diagnostics.codebook_stats(HADAMARD4)
    assert cb["min_pairwise"] == 2 and cb["mean_pairwise"] == pytest.approx(2.0) and cb["max_pairwise"] == 2
    h = diagnostics.hamming_intra_inter(q, d, ql, dl)
    assert h["exact"]
    assert h["mean_intra"] == 0 and h["hist_intra"][0] == pytest.approx(1.0)
    assert h["mean_inter"] == pytest.approx(cb["mean_pairwise"])
    assert h["gap"] == pytest.approx(cb["mean_pairwise"])
    assert h["n_intra_pairs"] == 12 * 5 and h["n_inter_pairs"] == 12 * 20 - 60
    assert h["hist_inter"].sum() == pytest.approx(1.0)


def test_hamming_non_hadamard_codebook_inter_is_mean_pairwise():
    rng = np.random.default_rng(3)
    codebook = np.where(rng.random((6, 16)) > 0.5, 1.0, -1.0)
    classes = np.repeat(np.arange(6), 4)
    h = diagnostics.hamming_intra_inter(codebook[classes], codebook[classes], one_hot(classes, 6),
                                        one_hot(classes, 6))
    cb = diagnostics.codebook_stats(codebook, codebook[classes], one_hot(classes, 6))
    assert h["mean_intra"] == 0 and h["gap"] == pytest.approx(cb["mean_pairwise"])
    assert cb["nearest_is_own_class"] == 1.0


def test_hamming_sampled_matches_exact():
    """Above max_pairs pairs are sampled; intra pairs through labels, reweighted: close to exact."""
    rng = np.random.default_rng(0)
    n_cls, bits = 12, 32
    centres = np.where(rng.random((n_cls, bits)) > 0.5, 1, -1)

    def make(n, multi):
        sizes = rng.zipf(1.6, n) % n_cls  # unequal class sizes: rare classes
        lab = one_hot(sizes, n_cls)
        if multi:
            lab |= (rng.random((n, n_cls)) < 0.12).astype(np.uint8)
        codes = centres[sizes] * np.where(rng.random((n, bits)) < 0.2, -1, 1)
        return codes, lab

    for multi in (False, True):
        q, ql = make(300, multi)
        d, dl = make(1500, multi)
        exact = diagnostics.hamming_intra_inter(q, d, ql, dl)
        sampled = diagnostics.hamming_intra_inter(q, d, ql, dl, max_pairs=200_000, seed=1)
        assert exact["exact"] and not sampled["exact"]
        assert sampled["n_intra_pairs"] == 100_000
        for k in ("mean_intra", "mean_inter", "gap"):
            assert sampled[k] == pytest.approx(exact[k], abs=0.08), (multi, k)
        np.testing.assert_allclose(sampled["hist_intra"], exact["hist_intra"], atol=0.01)
        # the codebook case stays exact under sampling: intra distances are all 0
    q, d, ql, dl = codebook_codes(30, 40)
    s = diagnostics.hamming_intra_inter(q, d, ql, dl, max_pairs=2000, seed=0)
    assert not s["exact"] and s["mean_intra"] == 0 and s["mean_inter"] == pytest.approx(2.0)


# ------------------------------------------------------------------------------------ write_report
def synthetic(seed, flip, n_q=60, n_db=400, n_cls=5, bits=16):
    rng = np.random.default_rng(seed)
    codebook = np.where(rng.random((n_cls, bits)) > 0.5, 1.0, -1.0)

    def part(n):
        cls = rng.integers(0, n_cls, n)
        b = codebook[cls] * np.where(rng.random((n, bits)) < flip, -1, 1)
        return (b * rng.uniform(0.2, 2.0, (n, bits))).astype(np.float32), one_hot(cls, n_cls)

    q, ql = part(n_q)
    d, dl = part(n_db)
    return q, d, ql, dl, codebook


def test_write_report_files_and_numbers(tmp_path):
    q, d, ql, dl, cb = synthetic(0, 0.1)
    (tmp_path / "train_log.csv").write_text("epoch,lr,loss,map,map_tie_aware,seconds\n1,0.1,2.5,,,3\n"
                                            "2,0.1,1.9,0.41,0.40,3\n3,0.1,1.5,,,3\n4,0.01,1.2,0.55,0.54,3\n")
    m = write_report(str(tmp_path), q, d, ql, dl, topk=50, method="orthohash", bit=16, codebook=cb,
                     dataset="synthetic", extra={"epoch": 4})
    rdir = tmp_path / "report"
    on_disk = json.loads((rdir / "metrics.json").read_text())
    assert on_disk == m
    assert m["map"] == pytest.approx(retrieval.mean_average_precision(q, d, ql, dl, topk=50))
    assert m["map_tie_aware"] == pytest.approx(retrieval.mean_average_precision(q, d, ql, dl, topk=50,
                                                                                tie_aware=True))
    p, r = retrieval.precision_recall_at_k(q, d, ql, dl, [1, 10, 50, 100])
    assert [m["precision_at_k"][k] for k in ("1", "10", "50", "100")] == pytest.approx(list(p))
    assert m["recall_at_topk"] == pytest.approx(r[2]) and m["precision_at_topk"] == pytest.approx(p[2])
    dg = m["diagnostics"]
    assert dg["codebook"]["num_codes"] == 5 and dg["codebook"]["nearest_is_own_class"] > 0.9
    assert dg["hamming"]["gap"] > 3 and dg["quantization_error"]["normalized"] > 0
    assert len(dg["bit_balance"]["per_bit"]) == 16
    assert m["extra"] == {"epoch": 4}
    for name in ("pr_curve.png", "radius_curve.png", "hamming_hist.png", "bit_balance.png", "training_curves.png"):
        assert_png(str(rdir / name))
    # the radius / R-based metrics are utils.retrieval.metrics' on the binary codes
    s = retrieval.rank_stats(q, d, ql, dl)
    assert m["precision_at_radius_2"] == pytest.approx(s.precision_at_radius(2))
    assert m["precision_at_radius_2_nonempty"] == pytest.approx(s.precision_at_radius(2, empty="exclude"))
    assert m["recall_at_radius_2"] == pytest.approx(s.recall_at_radius(2))
    assert m["map_at_r"] == pytest.approx(retrieval.map_at_r(q, d, ql, dl))
    assert m["r_precision"] == pytest.approx(retrieval.r_precision(q, d, ql, dl))
    assert m["open_set"] is None and m["cost"]["bytes_per_item"] == 2 and m["cost"]["query_ms"] > 0
    pr = json.loads((rdir / "pr_curve.json").read_text())
    assert len(pr["precision"]) == len(pr["recall"]) == 17 and pr["recall"][-1] == pytest.approx(1.0)
    md = (rdir / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert set(links) == {"pr_curve.png", "radius_curve.png", "hamming_hist.png", "bit_balance.png",
                          "training_curves.png"}
    for link in links:
        assert not os.path.isabs(link) and (rdir / link).is_file()
    assert f"{m['map']:.4f}" in md and "gap" in md and f"| MAP@R | {m['map_at_r']:.4f} |" in md


def test_write_report_binary_codes_and_given_map(tmp_path):
    q, d, ql, dl, _ = synthetic(1, 0.3)
    m = write_report(str(tmp_path), np.sign(q), np.sign(d), ql, dl, topk=-1, method="hashnet", continuous=False,
                     map_value=0.5, map_tie_aware=0.25)
    assert m["map"] == 0.5 and m["map_tie_aware"] == 0.25 and m["topk"] == -1
    assert m["diagnostics"]["quantization_error"] is None and m["diagnostics"]["codebook"] is None
    assert str(len(d)) in m["precision_at_k"]
    assert not (tmp_path / "report" / "training_curves.png").exists()
    assert "quantisation" not in (tmp_path / "report" / "report.md").read_text().split("## Pictures")[0]


def test_write_report_layout_is_compute_report_plus_files(tmp_path):
    """metrics.json: the keys (and their order) that write_report wrote before it was split into
    compute_report and the writing; the numbers are compute_report's, timings one entry per step."""
    q, d, ql, dl, cb = synthetic(2, 0.2, n_q=30, n_db=120)
    kw = dict(topk=20, method="orthohash", bit=16, codebook=cb, dataset="synthetic", max_pairs=1000)
    m = write_report(str(tmp_path), q, d, ql, dl, **kw)
    assert list(m) == ["method", "bit", "dataset", "topk", "num_query", "num_database", "num_classes", "multi_label",
                       "map", "map_tie_aware", "map_random_codes", "precision_at_k", "recall_at_k",
                       "precision_at_topk", "recall_at_topk", "precision_at_radius_2",
                       "precision_at_radius_2_nonempty", "queries_retrieving_at_radius_2", "recall_at_radius_2",
                       "map_at_r", "r_precision", "queries_without_relevant", "open_set", "cost", "lists_sha256",
                       "diagnostics", "extra", "timings_seconds", "files"]
    assert list(m["diagnostics"]) == ["bit_balance", "bit_correlation", "quantization_error", "distinct_codes",
                                      "hamming", "codebook", "labels_per_database_item"]
    assert list(m["timings_seconds"]) == ["map", "map_random_codes", "rank_stats", "query_time", "bit_balance",
                                          "bit_correlation", "quantization_error", "distinct_codes",
                                          "hamming_intra_inter", "codebook", "plots", "total"]
    assert m["files"] == ["bit_balance.png", "hamming_hist.png", "pr_curve.png", "radius_curve.png",
                          "hamming_hist.json", "pr_curve.json", "report.md"]
    assert sorted(os.listdir(tmp_path / "report")) == sorted(m["files"] + ["metrics.json"])
    computed, curves = compute_report(q, d, ql, dl, **kw)
    assert list(computed["timings_seconds"]) == list(m["timings_seconds"])[:-2]
    strip = {"timings_seconds", "files", "cost"}  # cost holds a measured query time
    assert json.loads(json.dumps(_clean({k: v for k, v in computed.items() if k not in strip}))) == \
        {k: v for k, v in m.items() if k not in strip}
    hist = json.loads((tmp_path / "report" / "hamming_hist.json").read_text())
    assert hist["hist_intra"] == pytest.approx(list(curves["hamming_hist"]["hist_intra"]))
    assert curves["bit_correlation"].shape == (16, 16)


def test_plot_training_curves_without_evaluated_epochs(tmp_path):
    log = tmp_path / "train_log.csv"
    log.write_text("epoch,lr,loss,map,map_tie_aware,seconds\n1,0.1,2.0,,,1\n2,0.1,nan,,,1\n")
    assert_png(plot_training_curves(str(log), str(tmp_path / "t.png")))


# ------------------------------------------------------------------------------------ compare_runs
def fake_run(directory, method, bit, map_, tie, dataset="cifar10", with_report=True):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "metrics.json"), "w") as f:
        json.dump({"method": method, "bit": bit, "topk": 1000, "dataset": dataset, "map": map_,
                   "map_tie_aware": tie, "best_map": map_}, f)
    if with_report:
        os.makedirs(os.path.join(directory, "report"), exist_ok=True)
        r = np.linspace(0, 1, bit + 1)
        with open(os.path.join(directory, "report", "pr_curve.json"), "w") as f:
            json.dump({"radius": list(range(bit + 1)), "precision": [None] + list(1 - 0.8 * r[1:] ** 2),
                       "recall": list(r)}, f)


def test_compare_runs_table_and_plot(tmp_path):
    fake_run(tmp_path / "h16", "hashnet", 16, 0.61234, 0.6)
    fake_run(tmp_path / "o32", "orthohash", 32, 0.8, 0.79)
    fake_run(tmp_path / "o16", "orthohash", 16, 0.75, 0.745)
    png = tmp_path / "pr.png"
    out = run_cli(["scripts/compare_runs.py", tmp_path / "h16", tmp_path / "o32", tmp_path / "o16",
                   "--plot", png]).stdout
    assert "mAP@1000 at each run's last evaluation, tie-aware mAP in parentheses" in out
    assert "| method (dataset) | 16 bits | 32 bits |" in out
    assert "| hashnet (cifar10) | 0.6123 (0.6000) | – |" in out
    assert "| orthohash (cifar10) | 0.7500 (0.7450) | 0.8000 (0.7900) |" in out
    assert_png(str(png))
    out = run_cli(["scripts/compare_runs.py", tmp_path / "h16", tmp_path / "o16", "--tie-aware", "table"]).stdout
    assert "| hashnet (cifar10) | 0.6123 |" in out and "| hashnet (cifar10) | 0.6000 |" in out


def test_compare_runs_random_codes_row_from_reports(tmp_path):
    for name, method, bit, chance in (("h16", "hashnet", 16, 0.101), ("o32", "orthohash", 32, 0.102)):
        fake_run(tmp_path / name, method, bit, 0.5, 0.5)
        with open(tmp_path / name / "report" / "metrics.json", "w") as f:
            json.dump({"map_random_codes": chance}, f)
    fake_run(tmp_path / "o16", "orthohash", 16, 0.6, 0.6, with_report=False)
    out = run_cli(["scripts/compare_runs.py", tmp_path / "h16", tmp_path / "o32", tmp_path / "o16",
                   "--tie-aware", "none"]).stdout
    rows = [line for line in out.splitlines() if line.startswith("| ") and "bits" not in line]
    assert rows[-1] == "| random codes (cifar10) | 0.1010 | 0.1020 |", out


def seeded_run(directory, method, seed, map_, bit=16, lr=1e-3, extra=None):
    """A run folder as training leaves it: run.json (the resolved configuration) and metrics.json."""
    fake_run(directory, method, bit, map_, map_, dataset="lite_single", with_report=False)
    m = json.loads((directory / "metrics.json").read_text())
    m.update(seed=seed, **(extra or {}))
    (directory / "metrics.json").write_text(json.dumps(m))
    (directory / "run.json").write_text(json.dumps({"method": method, "bit": bit, "dataset": "lite_single",
                                                    "lr": lr, "seed": seed, "output": str(directory),
                                                    "num_workers": 2}))


def test_compare_runs_groups_seeds_by_run_json(tmp_path):
    """Folders named anyhow: runs differing only in seed (and output / workers) form one group; a run with
    another lr is another group; mean ± sample std (n), per-seed values, paired differences."""
    a = [0.50, 0.60, 0.40]
    b = [0.30, 0.35, 0.20]
    for i, seed in enumerate((0, 1, 2)):
        seeded_run(tmp_path / f"x{i}", "orthohash", seed, a[i])
        seeded_run(tmp_path / f"y{i}", "hashnet", seed, b[i])
    seeded_run(tmp_path / "z", "hashnet", 0, 0.9, lr=1e-2)
    out = run_cli(["scripts/compare_runs.py", *(tmp_path / f"x{i}" for i in range(3)),
                   *(tmp_path / f"y{i}" for i in range(3)), tmp_path / "z"]).stdout
    sd = np.std(a, ddof=1)
    assert f"| orthohash (lite_single) | {np.mean(a):.4f} ± {sd:.4f} (3) |" in out, out
    assert f"| hashnet (lite_single) [lr=0.001] | {np.mean(b):.4f} ± {np.std(b, ddof=1):.4f} (3) |" in out
    assert "| hashnet (lite_single) [lr=0.01] | 0.9000 |" in out
    assert "| orthohash (lite_single), 16 | 0.5000 | 0.6000 | 0.4000 |" in out
    diff = np.subtract(a, b)
    assert (f"| orthohash (lite_single) − hashnet (lite_single) [lr=0.001] | 16 | {diff.mean():.4f} ± "
            f"{np.std(diff, ddof=1):.4f} (3) | +0.2000, +0.2500, +0.2000 |") in out
    assert "[lr=0.01] | 16 |" not in out.split("paired difference")[1]  # one common seed: no difference


def test_compare_runs_open_set_and_cost_columns(tmp_path):
    for i, (seen, unseen) in enumerate(((0.6, 0.2), (0.5, 0.3))):
        seeded_run(tmp_path / f"r{i}", "orthohash", i, 0.5, extra={
            "map_at_r": 0.4 + i / 10, "open_set": {"seen": {"map": seen}, "unseen": {"map": unseen}},
            "cost": {"bytes_per_item": 2, "encode_images_per_second": 100.0 + i, "query_ms": 0.01}})
    out = run_cli(["scripts/compare_runs.py", tmp_path / "r0", tmp_path / "r1", "--metrics", "map_at_r",
                   "--cost"]).stdout
    assert "| method (dataset), bits | map | map_seen | map_unseen |" in out
    assert f"| orthohash (lite_single), 16 | 0.5000 ± 0.0000 (2) | 0.5500 ± {np.std([.6, .5], ddof=1):.4f} (2) |" in out
    assert "| method (dataset), bits | map_at_r | bytes_per_item | encode_images_per_second | query_ms |" in out
    assert "| 2 ± 0 (2) | 100.5 ± 0.7 (2) | 0.010 ± 0.000 (2) |" in out


def test_random_code_map_is_the_chance_level():
    rng = np.random.default_rng(0)
    c, n_q, n_db = 5, 60, 500
    ql = np.eye(c)[rng.integers(0, c, n_q)]
    dl = np.eye(c)[rng.integers(0, c, n_db)]
    chance = diagnostics.random_code_map(ql, dl, 32, topk=None, repeats=3, seed=1)
    share = float((ql @ dl.T > 0).mean())  # expected AP of a random ranking over the whole database ≈ share
    assert abs(chance - share) < 0.03
    assert diagnostics.random_code_map(ql, dl, 32, seed=1) == chance  # seeded
    perfect = retrieval.mean_average_precision(np.sign(ql - 0.5), np.sign(dl - 0.5), ql, dl)
    assert perfect > chance + 0.5


def test_compare_runs_errors(tmp_path):
    fake_run(tmp_path / "ok", "hashnet", 16, 0.6, 0.59)
    os.makedirs(tmp_path / "broken")
    (tmp_path / "broken" / "metrics.json").write_text('{"method": "hashnet", "bit": 16, ')
    p = run_cli(["scripts/compare_runs.py", tmp_path / "ok", tmp_path / "broken"], check=False)
    assert p.returncode == 2 and p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "broken/metrics.json" in lines[0]
    p = run_cli(["scripts/compare_runs.py", tmp_path / "missing"], check=False)
    assert p.returncode == 2 and "missing/metrics.json: not found" in p.stderr
    (tmp_path / "broken" / "metrics.json").write_text('{"method": "hashnet", "bit": 16}')
    p = run_cli(["scripts/compare_runs.py", tmp_path / "broken"], check=False)
    assert p.returncode == 2 and "missing map" in p.stderr
    fake_run(tmp_path / "noreport", "hashnet", 32, 0.6, 0.59, with_report=False)
    p = run_cli(["scripts/compare_runs.py", tmp_path / "noreport", "--plot", tmp_path / "x.png"], check=False)
    assert p.returncode == 2 and "pr_curve.json: not found" in p.stderr


def test_report_open_set_cost_and_lists(tmp_path):
    """Unseen classes → seen / unseen mAP equal to the mean per-query AP of each group; cost and the list
    hashes are stored as given and shown in report.md."""
    q, d, ql, dl, _ = synthetic(3, 0.2)
    m = write_report(str(tmp_path), q, d, ql, dl, topk=-1, method="hashnet", bit=16, unseen_classes=[1, 3],
                     unseen_names=["bee", "dove"],
                     cost={"encode_images_per_second": 123.4, "encode_runtime": "dygraph", "query_ms": 0.5,
                           "query_k": 10, "query_backend": "numba"},
                     lists_sha256={"train": "ab" * 32, "database": "cd" * 32, "test": "ef" * 32})
    _, ap = retrieval.mean_average_precision(np.sign(q), np.sign(d), ql, dl, return_per_query=True)
    unseen = (ql[:, [1, 3]] > 0).any(axis=1)
    os_ = m["open_set"]
    assert os_["unseen_classes"] == [1, 3] and os_["unseen_class_names"] == ["bee", "dove"]
    assert os_["unseen"]["num_query"] == int(unseen.sum()) and os_["seen"]["num_query"] == int((~unseen).sum())
    assert os_["unseen"]["map"] == pytest.approx(ap[unseen].mean())
    assert os_["seen"]["map"] == pytest.approx(ap[~unseen].mean())
    assert m["cost"] == {"bytes_per_item": 2, "encode_images_per_second": 123.4, "encode_runtime": "dygraph",
                         "query_ms": 0.5, "query_k": 10, "query_backend": "numba"}
    md = (tmp_path / "report" / "report.md").read_text()
    assert "## Open set" in md and "bee (column 1), dove (column 3)" in md
    assert f"{os_['unseen']['map']:.4f}" in md and "123.4" in md and "ab" * 32 in md
