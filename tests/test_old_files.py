"""Files written by an earlier release still open and give the same answers: an index
(tests/fixtures/old_index, written by release 1037647's own Index code, with expected.json holding what
that release read back) and an export (tests/fixtures/old_export: release 1037647's export_model.py of
the old-release checkpoint in tests/fixtures/old_release, static Paddle + ONNX). Each fixture folder's
make_fixture.py / README says how it was made. The checkpoint itself is tested in tests/test_trust.py."""
import json
import lzma
import os
import tarfile

import numpy as np
import pytest
import yaml

from tests.helpers import ROOT, run_cli

FIXTURES = os.path.join(ROOT, "tests", "fixtures")


def extract(archive, dest):
    with tarfile.open(archive, "r:xz") as tar:
        tar.extractall(dest, filter="data")


@pytest.fixture
def old_index(tmp_path):
    extract(os.path.join(FIXTURES, "old_index", "index.tar.xz"), tmp_path)
    with open(os.path.join(FIXTURES, "old_index", "expected.json")) as f:
        return tmp_path / "idx", json.load(f)


def test_an_index_of_the_previous_release_opens_reads_and_writes(old_index, tmp_path):
    from utils.index import Index

    path, expected = old_index
    root = tmp_path / "moved_root"
    root.mkdir()
    with Index(path, data_path=str(root)) as index:
        snap = index.snapshot()
        assert snap.ids.tolist() == expected["ids"]
        assert snap.packed.tobytes().hex() == expected["packed"]
        items = index.describe(snap.ids)
        assert {str(int(i)): list(items[int(i)]) for i in snap.ids} == expected["items"]
        queries = np.frombuffer(bytes.fromhex(expected["queries"]), np.uint8).reshape(-1, 3)
        dist, ids = snap.search(queries, 5)
        assert dist.tolist() == expected["top5"]["dist"] and ids.tolist() == expected["top5"]["ids"]
        info = index.info()
        for key in ("count", "tombstones", "bit", "backend", "fingerprint", "source", "next_id", "segments"):
            assert info[key] == expected["info"][key], key
        assert index.fingerprint == expected["fingerprint"]
        # and it takes writes: ids continue after the old ones, a remove and a compaction
        new = index.add(np.full((1, 3), 0xAB, np.uint8), [str(root / "new.png")])
        assert new.tolist() == [expected["info"]["next_id"]]
        assert index.remove([0])[0] == [0]
        kept, dropped = index.compact()
        assert kept == len(expected["ids"]) and dropped == expected["info"]["tombstones"] + 1
        assert index.snapshot().ids.tolist() == expected["ids"][1:] + new.tolist()


@pytest.mark.slow
def test_an_export_of_the_previous_release_gives_todays_codes(lite_single, tmp_path):
    extract(os.path.join(FIXTURES, "old_export", "export.tar.xz"), tmp_path)
    old = tmp_path / "export"
    ckpt = tmp_path / "best.pdparams"
    ckpt.write_bytes(lzma.decompress(open(os.path.join(FIXTURES, "old_release", "last.pdparams.xz"), "rb").read()))
    new = tmp_path / "new_export"
    run_cli(["export_model.py", "--pretrained", ckpt, "--output-dir", new])
    images = os.path.join(lite_single["root"], "test")
    codes = {}
    for name, model_dir, runtime in (("old paddle", old, "paddle"), ("old onnx", old, "onnx"),
                                     ("new paddle", new, "paddle")):
        out = tmp_path / f"{name.replace(' ', '_')}.npy"
        run_cli(["deploy/inference_python/infer.py", "--model-dir", model_dir, "--img", images, "--backend", runtime,
                 "--save-codes", out])
        codes[name] = np.load(out)
    assert len(codes["new paddle"]) == len(os.listdir(images))
    for name in ("old paddle", "old onnx"):
        np.testing.assert_array_equal(codes[name], codes["new paddle"], err_msg=name)
    old_yml, new_yml = (yaml.safe_load(open(d / "inference.yml")) for d in (old, new))
    assert old_yml["model"] == new_yml["model"]
    for key, value in old_yml["preprocess"].items():
        assert new_yml["preprocess"][key] == value, key
    assert old_yml["weights_fingerprint"] == new_yml["weights_fingerprint"]
