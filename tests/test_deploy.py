"""Deployment: export_model.py, infer.py on Paddle Inference and ONNX Runtime, predict.py and its cache."""
import os
import shutil

import numpy as np
import pytest

from tests.helpers import ROOT, lite_flags, run_cli


@pytest.fixture(scope="module")
def trained(lite_single, tmp_path_factory):
    """A 1-epoch 16-bit HashNet run on lite data, exported with ONNX and INT8 ONNX (calibrated on the 24
    training images; the query and database images check the bit agreement below)."""
    out = tmp_path_factory.mktemp("deploy_run")
    run_cli(["main_single_gpu.py", *lite_flags(lite_single, "hashnet", out / "run", epochs=1)])
    export = run_cli(["export_model.py", "--pretrained", out / "run" / "best.pdparams", "--output-dir", out / "inf",
                      "--onnx", "--int8", "--calib-list", os.path.join(lite_single["list_dir"], "train.txt"),
                      "--calib-num", 24])
    return {"run": out / "run", "inf": out / "inf", "data": lite_single, "export_stdout": export.stdout,
            "tmp": out}


def test_export_writes_models_and_reports_agreement(trained):
    from utils.deploy.runtimes import RUNTIMES

    inf = trained["inf"]
    for name in ("inference.json", "inference.pdiparams", "inference.onnx", "inference.yml"):
        assert (inf / name).is_file(), name
    exact = [rt for rt in RUNTIMES.values() if rt.exact]
    for runtime in RUNTIMES.values():  # every runtime's artefacts, the exact ones checked against dygraph
        assert all((inf / name).is_file() for name in runtime.files), runtime.name
        assert (f"check {runtime.name:6s} vs dygraph" in trained["export_stdout"]) == runtime.exact
    assert trained["export_stdout"].count("identical code bits 100.00%") == len(exact)
    assert "INT8 ONNX model" in trained["export_stdout"] and "24 images of" in trained["export_stdout"]


def _lite_images(data, name):
    img_dir = os.path.join(data["root"], name)
    return [os.path.join(img_dir, f) for f in sorted(os.listdir(img_dir))]


def test_int8_codes_agree_with_fp32_on_at_least_the_threshold(trained):
    """The quantised model, run on the query and database images (none used in calibration), gives the
    FP32 model's bits on at least MIN_BIT_AGREEMENT of them."""
    from utils.deploy import encode_images, read_inference_yml
    from utils.deploy.quantize import MIN_BIT_AGREEMENT
    from utils.deploy.runtimes import open_exported

    paths = _lite_images(trained["data"], "test") + _lite_images(trained["data"], "database")
    preprocess = read_inference_yml(trained["inf"])["preprocess_obj"]
    fp32, _ = encode_images(open_exported(trained["inf"], "onnx"), paths, preprocess, 16)
    int8, _ = encode_images(open_exported(trained["inf"], "onnx-int8"), paths, preprocess, 16)
    assert not np.array_equal(fp32, int8)  # it is a different (quantised) model
    same = np.mean((fp32 > 0) == (int8 > 0))
    assert same >= MIN_BIT_AGREEMENT, f"{same:.4f} of {fp32.size} bits identical"


def test_int8_under_the_threshold_is_refused_and_not_written(trained, tmp_path):
    """A threshold no model meets (above 1): a one-line error with the measured agreement, no file."""
    from utils.deploy import read_inference_yml
    from utils.deploy.quantize import calibration_from_list, quantize_onnx
    from utils.errors import UserError

    data = trained["data"]
    calib = calibration_from_list(os.path.join(data["list_dir"], "train.txt"), data["root"],
                                  read_inference_yml(trained["inf"])["preprocess_obj"], 4)
    out = tmp_path / "int8.onnx"
    with pytest.raises(UserError, match=r"agree with FP32 on \d+\.\d\d% of 64 bits, under --min-bit-agreement "
                                        r"101\.00%.*not written"):
        quantize_onnx(str(trained["inf"] / "inference.onnx"), str(out), calib, min_bit_agreement=1.01)
    assert os.listdir(tmp_path) == []


@pytest.fixture(scope="module")
def vit_int8(lite_single, tmp_path_factory):
    """OrthoHash 64 bits on a frozen random-weight vit_s_16 (64 px lite images, 3 epochs from the feature
    cache), exported with INT8 ONNX calibrated on the 24 training images."""
    out = tmp_path_factory.mktemp("vit_int8")
    run_cli(["main_single_gpu.py", *lite_flags(lite_single, "orthohash", out / "run", epochs=3, bit=64,
                                               extra=["--backbone", "vit_s_16", "--freeze-backbone"])])
    export = run_cli(["export_model.py", "--pretrained", out / "run" / "best.pdparams", "--output-dir", out / "inf",
                      "--int8", "--calib-list", os.path.join(lite_single["list_dir"], "train.txt"),
                      "--calib-num", 24])
    return {"inf": out / "inf", "data": lite_single, "export_stdout": export.stdout}


def test_int8_vit_codes_agree_with_fp32_on_at_least_the_threshold(vit_int8):
    """A transformer graph quantises only its weight products (utils/deploy/quantize.py): the codes of the
    query and database images (none used in calibration) keep MIN_BIT_AGREEMENT of the FP32 bits."""
    from utils.deploy import encode_images, read_inference_yml
    from utils.deploy.quantize import MIN_BIT_AGREEMENT
    from utils.deploy.runtimes import open_exported

    assert "transformer graph: MatMul/Gemm weights and inputs only" in vit_int8["export_stdout"]
    paths = _lite_images(vit_int8["data"], "test") + _lite_images(vit_int8["data"], "database")
    preprocess = read_inference_yml(vit_int8["inf"])["preprocess_obj"]
    fp32, _ = encode_images(open_exported(vit_int8["inf"], "onnx"), paths, preprocess, 16)
    int8, _ = encode_images(open_exported(vit_int8["inf"], "onnx-int8"), paths, preprocess, 16)
    assert not np.array_equal(fp32, int8)  # it is a different (quantised) model
    same = np.mean((fp32 > 0) == (int8 > 0))
    assert same >= MIN_BIT_AGREEMENT, f"{same:.4f} of {fp32.size} bits identical"
    print(f"INT8 vit_s_16: {100 * same:.2f}% of {fp32.size} bits identical")


def test_int8_vit_with_the_convnet_settings_is_refused(vit_int8, tmp_path, monkeypatch):
    """The same model quantised as AlexNet/ResNet are (ORT's default op types: LayerNorm, Softmax, GELU, the
    residual Adds too) loses too many bits and is refused, so the test above can fail."""
    from utils.deploy import quantize, read_inference_yml
    from utils.deploy.quantize import calibration_from_list, quantize_onnx
    from utils.errors import UserError

    data = vit_int8["data"]
    calib = calibration_from_list(os.path.join(data["list_dir"], "train.txt"), data["root"],
                                  read_inference_yml(vit_int8["inf"])["preprocess_obj"], 12)
    monkeypatch.setattr(quantize, "TRANSFORMER_OPS", frozenset())
    with pytest.raises(UserError, match="not written") as refused:
        quantize_onnx(str(vit_int8["inf"] / "inference.onnx"), str(tmp_path / "int8.onnx"), calib)
    print(refused.value)


def test_int8_export_needs_a_calibration_list(trained, tmp_path):
    proc = run_cli(["export_model.py", "--pretrained", trained["run"] / "best.pdparams", "--output-dir", tmp_path,
                    "--int8"], check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error: --int8 needs --calib-list")


def test_runtime_registry_refuses_duplicates_and_unknown_backends():
    from utils.deploy.runtimes import RUNTIMES, open_exported, register_runtime
    from utils.errors import UserError

    with pytest.raises(ValueError, match="registered twice"):
        register_runtime(RUNTIMES["paddle"])
    with pytest.raises(UserError, match="--backend tensorrt: choose one of paddle, onnx"):
        open_exported("unused", "tensorrt")


@pytest.mark.parametrize("script", ["deploy/inference_python/infer.py", "predict.py", "deploy/serving/app.py"])
def test_every_registered_runtime_is_a_backend_choice(script):
    from utils.deploy.runtimes import RUNTIMES

    usage = run_cli([script, "-h"]).stdout
    choices = usage.split("--backend {")[1].split("}")[0]
    assert choices.split(",") == list(RUNTIMES)


def test_export_rejects_contradicting_flag(trained, tmp_path):
    proc = run_cli(["export_model.py", "--pretrained", trained["run"] / "best.pdparams", "--output-dir", tmp_path,
                    "--bit", "999"], check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: --bit 999 contradicts the checkpoint")
    assert "Traceback" not in proc.stderr


def test_codes_identical_across_dygraph_paddle_inference_and_onnx(trained, tmp_path):
    from utils.deploy import DygraphEncoder, encode_images
    from utils.deploy.runtimes import RUNTIMES
    from utils.retrieval import codes_to_hex

    img_dir = os.path.join(trained["data"]["root"], "test")
    paths = sorted(os.path.join(img_dir, f) for f in os.listdir(img_dir))
    dy = DygraphEncoder(str(trained["run"] / "best.pdparams"))
    raw, kept = encode_images(dy, paths, dy.preprocess, batch_size=5)
    assert kept == paths
    ref = np.where(raw > 0, 1, -1).astype(np.int8)
    for backend in (name for name, rt in RUNTIMES.items() if rt.exact):
        npy = tmp_path / f"{backend}.npy"
        proc = run_cli(["deploy/inference_python/infer.py", "--model-dir", trained["inf"], "--img", img_dir,
                        "--backend", backend, "--batch-size", 4, "--save-codes", npy])
        codes = np.load(npy)
        assert codes.dtype == np.int8 and codes.shape == ref.shape
        assert np.array_equal(codes, ref), f"{backend}: {np.mean(codes != ref):.4f} of bits differ from dygraph"
        lines = [ln.split("\t") for ln in proc.stdout.splitlines() if "\t" in ln]
        assert [p for p, _ in lines] == paths
        assert [h for _, h in lines] == codes_to_hex(ref)


def test_infer_bad_image_is_one_line_error_or_skipped(trained, tmp_path):
    src = os.path.join(trained["data"]["root"], "test")
    good = sorted(os.listdir(src))[:2]
    for f in good:
        shutil.copy(os.path.join(src, f), tmp_path / f)
    (tmp_path / "broken.jpg").write_text("not an image")
    proc = run_cli(["deploy/inference_python/infer.py", "--model-dir", trained["inf"], "--img", tmp_path], check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "broken.jpg" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = run_cli(["deploy/inference_python/infer.py", "--model-dir", trained["inf"], "--img", tmp_path,
                    "--skip-bad-images"])
    assert len([ln for ln in proc.stdout.splitlines() if "\t" in ln]) == 2
    assert "skipping" in proc.stderr and "broken.jpg" in proc.stderr


def test_infer_missing_model_dir(tmp_path):
    proc = run_cli(["deploy/inference_python/infer.py", "--model-dir", tmp_path, "--img", tmp_path], check=False)
    assert proc.returncode == 2
    assert "inference.yml" in proc.stderr and "export_model.py" in proc.stderr


def test_infer_benchmark_prints_timings(trained):
    img_dir = os.path.join(trained["data"]["root"], "test")
    proc = run_cli(["deploy/inference_python/infer.py", "--model-dir", trained["inf"], "--img", img_dir,
                    "--benchmark", "True"])
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("----- benchmark")]
    assert line and "preprocess" in line[0] and "inference" in line[0] and "images/s" in line[0]


def _predict(save_path, img, *extra, bit=16):
    bits = ["--bit", bit] if bit else []
    return run_cli(["predict.py", *bits, "--img", img, "--save_path", save_path, "--topk", 5, *extra])


def test_predict_takes_the_code_length_from_the_checkpoint(trained):
    """--bit is optional: the 16-bit run is found and used without it."""
    data = trained["data"]
    first = open(os.path.join(data["list_dir"], "database.txt")).readline().split()[0]
    proc = _predict(trained["run"], os.path.join(data["root"], first), bit=None)
    assert "----- Predicted Hamm_min: 0" in proc.stdout


def test_predict_reuses_the_cache_training_wrote(trained):
    """Training left database_code_16.npy next to best.pdparams: predict uses it as is."""
    data = trained["data"]
    first = open(os.path.join(data["list_dir"], "database.txt")).readline().split()[0]
    proc = _predict(trained["run"], os.path.join(data["root"], first))
    assert "----- Load code of database from" in proc.stdout
    assert "----- Predicted Hamm_min: 0" in proc.stdout


def test_predict_database_image_is_found_at_distance_0(trained, tmp_path):
    data = trained["data"]
    shutil.copy(trained["run"] / "best.pdparams", tmp_path / "best.pdparams")
    db_lines = open(os.path.join(data["list_dir"], "database.txt")).read().splitlines()
    target = os.path.join(data["root"], db_lines[7].split()[0])
    proc = _predict(tmp_path, target, "--show")
    out = proc.stdout
    assert "----- Pretrained: Load model state from" in out
    assert "----- Encoding the database" in out and "no cache" in out
    assert "----- Predicted Hamm_min: 0" in out
    rows = [ln.split() for ln in out.splitlines() if ln.strip() and ln.split()[0].isdigit()]
    assert rows[0][1] == "0"
    assert any(r[2] == target and r[1] == "0" for r in rows), "the query itself must be among the distance-0 results"
    matched = out.split("----- Found Matched Pic: ")[1].splitlines()[0]
    saved = out.split("----- Save Matched Pic in: ")[1].splitlines()[0]
    assert open(matched, "rb").read() == open(saved, "rb").read()
    montage = out.split("----- Save montage in: ")[1].splitlines()[0]
    assert os.path.getsize(montage) > 1000


def test_predict_cache_is_rebuilt_only_when_something_changed(trained, tmp_path):
    import paddle

    data = trained["data"]
    save = tmp_path / "save"
    save.mkdir()
    shutil.copy(trained["run"] / "best.pdparams", save / "best.pdparams")
    query = os.path.join(data["root"], open(os.path.join(data["list_dir"], "test.txt")).readline().split()[0])
    assert "Encoding the database" in _predict(save, query).stdout
    again = _predict(save, query).stdout
    assert "Load code of database" in again and "Encoding" not in again

    # a changed database list → rebuilt
    lists = tmp_path / "lists"
    shutil.copytree(data["list_dir"], lists)
    with open(lists / "database.txt", "a") as f:
        f.write(open(os.path.join(data["list_dir"], "test.txt")).readline())
    out = _predict(save, query, "--list-dir", lists).stdout
    assert "Encoding the database" in out and "database_list" in out
    assert "Load code of database" in _predict(save, query, "--list-dir", lists).stdout

    # changed weights → rebuilt
    ckpt = paddle.load(str(save / "best.pdparams"))
    ckpt["model"]["head.fc.bias"] = ckpt["model"]["head.fc.bias"] + 0.5
    paddle.save(ckpt, str(save / "best.pdparams"))
    out = _predict(save, query, "--list-dir", lists).stdout
    assert "Encoding the database" in out and "weights" in out

    # a truncated cache file → rebuilt, not trusted
    npy = save / "database_code_16.npy"
    npy.write_bytes(npy.read_bytes()[:-10])
    out = _predict(save, query, "--list-dir", lists).stdout
    assert "Encoding the database" in out and "checksum" in out


def test_predict_with_exported_model_shares_the_cache(trained, tmp_path):
    """Same weights, list, root and preprocessing → an exported model reuses the checkpoint's cache; a
    quantised one (other codes) rebuilds it, and the FP32 runtimes then rebuild it back."""
    from utils.deploy.runtimes import RUNTIMES

    data = trained["data"]
    shutil.copy(trained["run"] / "database_code_16.npy", tmp_path)
    shutil.copy(trained["run"] / "database_code_16.json", tmp_path)
    query = os.path.join(data["root"], open(os.path.join(data["list_dir"], "test.txt")).readline().split()[0])
    for backend in sorted(RUNTIMES, key=lambda name: not RUNTIMES[name].exact):  # the exact ones first
        out = _predict(tmp_path, query, "--model-dir", trained["inf"], "--backend", backend).stdout
        assert ("Load code of database" in out) == RUNTIMES[backend].exact, backend
    out = _predict(tmp_path, query, "--model-dir", trained["inf"], "--backend", "onnx-int8").stdout
    assert "Load code of database" in out
    out = _predict(tmp_path, query, "--model-dir", trained["inf"], "--backend", "onnx").stdout
    assert "Encoding the database" in out


def test_predict_errors_are_one_line(trained, tmp_path):
    proc = run_cli(["predict.py", "--bit", 16, "--img", tmp_path / "missing.jpg", "--save_path", trained["run"]],
                   check=False)
    assert proc.returncode == 2 and "missing.jpg" in proc.stderr and "Traceback" not in proc.stderr
    test_dir = os.path.join(trained["data"]["root"], "test")
    img = os.path.join(test_dir, sorted(os.listdir(test_dir))[0])
    proc = run_cli(["predict.py", "--bit", 32, "--img", img, "--save_path", trained["run"]], check=False)
    assert proc.returncode == 2 and "no 32-bit checkpoint" in proc.stderr
    proc = run_cli(["predict.py", "--bit", 32, "--img", img, "--pretrained", trained["run"] / "best.pdparams"],
                   check=False)
    assert proc.returncode == 2 and "--bit 32" in proc.stderr and "16-bit" in proc.stderr


def test_hit_fields():
    import dataclasses

    from utils.deploy.searcher import Hit

    assert [f.name for f in dataclasses.fields(Hit)] == ["rank", "distance", "id", "path", "labels", "stored"]
    hit = Hit(1, 0, 7, "root/a.jpg", [2])
    assert (hit.rank, hit.distance, hit.id, hit.path, hit.labels, hit.stored) == (1, 0, 7, "root/a.jpg", [2], None)
    assert not hasattr(hit, "index")  # the old name of `id` (a position in one mode, an id in the other) is gone


def test_entry_points_share_the_option_groups_of_the_registries(monkeypatch):
    """--runtime (old spelling --backend) in infer.py and predict.py, --engine and --backend in
    scripts/index.py: their choices are the registries', so a registered runtime reaches every entry point."""
    import importlib.util

    from utils.deploy.runtimes import RUNTIMES
    from utils.index import BACKENDS
    from utils.retrieval import SEARCH_ENGINES

    def load(rel):
        spec = importlib.util.spec_from_file_location(rel.replace("/", "_")[:-3], os.path.join(ROOT, rel))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    infer, predict, index = (load(f) for f in ("deploy/inference_python/infer.py", "predict.py", "scripts/index.py"))
    for runtime in RUNTIMES:
        for flag in ("--runtime", "--backend"):
            assert infer.parse_args(["--model_dir", "m", "--img", "x", flag, runtime]).runtime == runtime
            assert predict.parse_args(["--img", "x", flag, runtime]).runtime == runtime
    for engine in SEARCH_ENGINES:
        assert index.parse_args(["search", "--index", "i", "--img", "x", "--engine", engine]).engine == engine
    for backend in BACKENDS:
        assert index.parse_args(["build", "--out", "o", "--model", "m", "--images", "d",
                                 "--backend", backend]).backend == backend
    monkeypatch.setitem(RUNTIMES, "fake-runtime", RUNTIMES["onnx"])
    assert infer.parse_args(["--model-dir", "m", "--img", "x", "--runtime", "fake-runtime"]).runtime == "fake-runtime"


def test_predict_empty_database_is_one_line_error(trained, tmp_path):
    """Every database image unreadable and skipped: the same error as the service, not a traceback."""
    data = trained["data"]
    root, lists = tmp_path / "images", tmp_path / "lists"
    root.mkdir()
    lists.mkdir()
    (root / "broken.jpg").write_text("not an image")
    labels = open(os.path.join(data["list_dir"], "database.txt")).readline().split()[1:]
    (lists / "database.txt").write_text(" ".join(["broken.jpg", *labels]) + "\n")
    test_dir = os.path.join(data["root"], "test")
    query = os.path.join(test_dir, sorted(os.listdir(test_dir))[0])
    proc = run_cli(["predict.py", "--img", query, "--pretrained", trained["run"] / "best.pdparams", "--save_path",
                    tmp_path / "save", "--data_path", root, "--list-dir", lists, "--skip-bad-images"], check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip() == f"error: {lists / 'database.txt'}: no database image could be encoded"
