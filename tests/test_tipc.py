"""TIPC scripts (test_tipc/): config parsing, every config's consistency, a deliberately broken step
and whole_infer without a checkpoint. The full lite run of hashnet_lite is run by scripts/run_tests.sh
after pytest, so it is not repeated here."""
import os
import re
import subprocess

import pytest

from tests.helpers import ROOT

CONFIGS = os.path.join(ROOT, "test_tipc", "configs")
MODELS = [f"{m}_{b}" for m in ("hashnet", "orthohash") for b in (16, 32, 48, 64)] + [
    "hashnet_lite", "relahash_64", "dpsh_64", "csq_64"] + [
    f"{m}_64" for m in ("dsh", "dhn", "dch", "dfh", "dpn", "greedyhash", "dshsd", "lcdsh", "greedyhash_unsup",
                        "bihalf", "lsh", "itq")] + ["orthohash_vit_s_16"]
# configs whose name is not <method>_<bits>: their method and code length
NAMED = {"orthohash_vit_s_16": ("orthohash", "64")}


def bash(script, env=None, timeout=300):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TIPC_")}  # no outside TIPC_ settings
    full_env.update(FLAGS_use_mkldnn="0", PYTHONUNBUFFERED="1", **(env or {}))
    return subprocess.run(["bash", "-c", script], cwd=ROOT, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


def common(expr):
    """Evaluate shell code with test_tipc/common_func.sh sourced; return stdout without the last newline."""
    proc = bash(f"source test_tipc/common_func.sh; {expr}")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.rstrip("\n")


def read_config(path):
    """{section: {key: value}} the way common_func.sh reads it (first ':' splits; first key wins)."""
    sections, cur = {}, None
    for line in open(path, encoding="utf-8").read().splitlines():
        m = re.fullmatch(r"=+([A-Za-z0-9_]+)=+\s*", line)
        if m:
            cur = m.group(1)
            sections.setdefault(cur, {})
        elif cur and line.find(":") > 0:
            key, value = line.split(":", 1)
            sections[cur].setdefault(key, value)
    return sections


def test_parser_picks_the_value_of_the_mode():
    v = "lite_train_lite_infer=2|whole_train_whole_infer=90"
    assert common(f"func_parser_params '{v}' lite_train_lite_infer") == "2"
    assert common(f"func_parser_params '{v}' whole_train_whole_infer") == "90"
    assert common(f"func_parser_params '{v}' whole_infer") == "null"
    assert common("func_parser_params 'True|False' whole_infer") == "True|False"  # no mode named: a list
    assert common("func_parser_params 'lite_train_lite_infer=-lr 3e-4 --x a=b' lite_train_lite_infer") == \
        "-lr 3e-4 --x a=b"
    assert common("func_parser_key '-ee:lite_train_lite_infer=1'") == "-ee"
    assert common("func_parser_value 'cmd:python a.py --url http://x:1'") == "python a.py --url http://x:1"


def test_lookup_is_by_key_and_section(tmp_path):
    cfg = tmp_path / "c.txt"
    cfg.write_text("===========================train_params===========================\n"
                   "model_name:m\n--pretrained:null\n--epochs:lite_train_lite_infer=2|whole_train_whole_infer=9\n"
                   "--seed:7\n"
                   "===========================export_params===========================\n"
                   "--pretrained:ckpt.pdparams\n--bit:16\n")
    assert common(f"func_cfg {cfg} --pretrained export_params") == "ckpt.pdparams"
    assert common(f"func_cfg {cfg} --pretrained train_params") == "null"
    assert common(f"func_cfg {cfg} missing_key") == "null"
    assert common(f"func_flags {cfg} train_params lite_train_lite_infer --pretrained") == "--epochs 2 --seed 7"
    assert common(f"func_flags {cfg} train_params whole_infer") == "--seed 7"


def test_infer_combinations_cover_every_list_value(tmp_path):
    cfg = tmp_path / "c.txt"
    cfg.write_text("===========================infer_params===========================\n"
                   "inference:infer.py\n--model_dir:null\n--use_gpu:True|False\n--batch_size:1|8\n"
                   "--benchmark:lite_train_lite_infer=True|whole_infer=False\n")
    lines = common(f"func_infer_combinations {cfg} infer_params lite_train_lite_infer").splitlines()
    assert lines == ["--use_gpu True --batch_size 1 --benchmark True", "--use_gpu True --batch_size 8 --benchmark True",
                     "--use_gpu False --batch_size 1 --benchmark True",
                     "--use_gpu False --batch_size 8 --benchmark True"]


@pytest.mark.parametrize("model", MODELS)
def test_every_config_is_consistent(model):
    method, bit = NAMED.get(model) or model.rsplit("_", 1)
    bit = "16" if bit == "lite" else bit
    train = read_config(os.path.join(CONFIGS, model, "train_infer_python.txt"))
    onnx = read_config(os.path.join(CONFIGS, model, "paddle2onnx_infer_python.txt"))
    assert train["train_params"]["model_name"] == model == onnx["paddle2onnx_params"]["model_name"]
    for line in (train["train_params"]["norm_train"], train["train_params"]["dist_train"],
                 train["export_params"]["norm_export"], onnx["paddle2onnx_params"]["2onnx"]):
        assert f"--method {method} --bit {bit}" in line, line
    assert "main_multi_gpu.py" in train["train_params"]["dist_train"]
    assert "0,1" in train["train_params"]["gpu_list"].split("|")  # the multi-process training is covered
    assert "--onnx" in onnx["paddle2onnx_params"]["2onnx"]
    assert onnx["infer_params"]["--runtime"] == "onnx"
    assert "lite_train_lite_infer=0" in train["data_params"]["--num-workers"]
    assert onnx["paddle2onnx_params"]["train_config"] == f"test_tipc/configs/{model}/train_infer_python.txt"
    for key in ("--data-path", "--list-dir"):  # lite data stays under the git-ignored output folder
        lite = common(f"func_parser_params '{train['data_params'][key]}' lite_train_lite_infer")
        assert lite.startswith("test_tipc/output/data/"), lite


def test_whole_infer_without_checkpoint_says_so_and_fails(tmp_path):
    cfg = "test_tipc/configs/hashnet_lite/train_infer_python.txt"
    proc = bash(f"bash test_tipc/test_train_inference_python.sh {cfg} whole_infer",
                env={"TIPC_OUTPUT": str(tmp_path)}, timeout=120)
    assert proc.returncode != 0
    assert "TIPC_PRETRAINED" in proc.stderr and "checkpoint" in proc.stderr
    log = (tmp_path / "hashnet_lite" / "whole_infer" / "results_python.log").read_text()
    assert log.startswith("Run failed with command - ") and "Run successfully" not in log


def test_unknown_mode_is_rejected():
    proc = bash("bash test_tipc/test_train_inference_python.sh test_tipc/configs/hashnet_lite/train_infer_python.txt "
                "lite_train", timeout=60)
    assert proc.returncode == 2 and "unknown MODE" in proc.stderr


def test_broken_export_is_logged_as_failed_and_infer_is_not_run(tmp_path):
    """A real pipeline with a wrong export flag (--bit 999 contradicts the 16-bit checkpoint, so
    export_model.py exits 2): training really runs and succeeds, export really runs and fails, infer
    is logged as failed without running, and the script exits non-zero. Only the single-process
    training is run (TIPC_STEPS) to keep the test short; the data is generated by the automatic
    prepare.sh into tmp_path, which exercises that path too."""
    src = open(os.path.join(CONFIGS, "hashnet_lite", "train_infer_python.txt"), encoding="utf-8").read()
    assert "norm_export:export_model.py --method hashnet --bit 16\n" in src
    text = src.replace("norm_export:export_model.py --method hashnet --bit 16\n",
                       "norm_export:export_model.py --method hashnet --bit 16 --bit 999\n")
    text = text.replace("test_tipc/output/data/", f"{tmp_path}/data/")
    cfg = tmp_path / "broken" / "train_infer_python.txt"
    cfg.parent.mkdir()
    cfg.write_text(text)
    out = tmp_path / "out"
    proc = bash(f"bash test_tipc/test_train_inference_python.sh {cfg} lite_train_lite_infer",
                env={"TIPC_OUTPUT": str(out), "TIPC_STEPS": "norm_train,export,infer"}, timeout=400)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    log_dir = out / "hashnet_lite" / "lite_train_lite_infer"
    lines = (log_dir / "results_python.log").read_text().splitlines()
    assert lines[0].startswith("Run successfully with command - bash test_tipc/prepare.sh"), lines
    assert lines[1].startswith("Run successfully with command - python main_single_gpu.py"), lines
    assert "--dataset lite_single" in lines[1]
    assert lines[2].startswith("Run failed with command - python export_model.py") and "--bit 999" in lines[2]
    infer = [ln for ln in lines if "infer.py" in ln]
    assert infer and all(ln.startswith("Run failed") and "# not run:" in ln for ln in infer)
    assert not any("main_multi_gpu.py" in ln or "--eval" in ln for ln in lines)  # TIPC_STEPS honoured
    export_log = (log_dir / "norm_train_nproc1_export.log").read_text()
    assert "999" in export_log  # export_model.py really ran and explained why it refused
    assert (log_dir / "norm_train_nproc1" / "best.pdparams").is_file()
    assert "2 succeeded" in proc.stdout  # the summary line counts prepare + training
