"""The runtime registry: every way to run an exported model, by its `--backend` name.

    RUNTIMES["onnx"].export(model, crop, directory, opset=11)  # writes the artefacts, -> inference.yml `files`
    RUNTIMES["onnx"].open(directory, use_gpu, threads, mkldnn)  # -> encoder, .run(batch) -> continuous codes

export_model.py exports to every registered runtime (those with an `export_flag` only when that flag is
given) in registration order, so a runtime may build on the artefacts of one registered before it (ONNX
converts the static Paddle model). infer.py, predict.py, the service and scripts/bench_inference.py take
their choices from RUNTIMES. Adding a runtime: an encoder class and an export function (here or in a new
module imported here; the engine itself imported lazily, inside them) and one `register_runtime(...)`.
"""
import contextlib
import hashlib
import io
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

from utils.deploy import quantize
from utils.deploy.encoders import PREFIX
from utils.errors import UserError
from utils.registry import Registry


@dataclass(frozen=True)
class Runtime:
    name: str  # the --backend value
    summary: str  # what runs the model, for help texts
    files: tuple  # the artefacts its export writes into the model directory
    export: Callable  # (dygraph model, crop, directory, log=print, **options) -> {inference.yml files role: name}
    open: Callable  # (directory, use_gpu=False, threads=None, mkldnn=True) -> encoder with .run(batch)
    export_flag: str = ""  # export_model.py flag that asks for this export ("": always exported)
    exact: bool = True  # codes equal to dygraph's (False: quantised; the code cache then keys on its files too)


RUNTIMES = Registry("runtime")
register_runtime = RUNTIMES.add


def get_runtime(backend):
    if backend not in RUNTIMES:
        raise UserError(f"--backend {backend}: choose one of {', '.join(RUNTIMES)}")
    return RUNTIMES[backend]


def open_exported(model_dir, backend="paddle", use_gpu=False, threads=None, mkldnn=True):
    """The encoder of an export_model.py directory in the runtime `backend`."""
    return get_runtime(backend).open(model_dir, use_gpu, threads, mkldnn)


def codes_fingerprint(backend, model_dir, weights_fingerprint):
    """What the codes of `model_dir` in `backend` depend on, for the database code cache: the weights, and
    for a runtime that is not exact (quantised) also its model files, so FP32 and INT8 caches never mix."""
    runtime = get_runtime(backend)
    if runtime.exact:
        return weights_fingerprint
    h = hashlib.sha256(f"{weights_fingerprint}|{runtime.name}".encode())
    for name in runtime.files:
        with open(os.path.join(model_dir, name), "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------------------- Paddle Inference
def paddle_model_files(directory):
    """(model file, params file) of a Paddle static model: `inference.json` (Paddle 3, PIR) or
    `inference.pdmodel` (Paddle 2.x)."""
    params = os.path.join(directory, PREFIX + ".pdiparams")
    for ext in (".json", ".pdmodel"):
        model = os.path.join(directory, PREFIX + ext)
        if os.path.isfile(model) and os.path.isfile(params):
            return model, params
    raise UserError(f"--model-dir {directory}: no {PREFIX}.json/.pdmodel + {PREFIX}.pdiparams there; "
                    "run export_model.py --pretrained CKPT --output-dir DIR")


def export_paddle(model, crop, directory, log=print, **_options):
    """paddle.jit.save of the model with a dynamic batch: `inference.json` (`.pdmodel`) + `.pdiparams`."""
    import paddle

    model.eval()
    spec = [paddle.static.InputSpec([None, 3, crop, crop], "float32", "x")]
    paddle.jit.save(model, os.path.join(directory, PREFIX), input_spec=spec)
    model_file, params_file = paddle_model_files(directory)
    log(f"----- static Paddle model: {model_file} + {params_file}")
    return {"model": os.path.basename(model_file), "params": os.path.basename(params_file)}


class PaddleInferenceEncoder:
    """An exported static model in Paddle Inference."""

    def __init__(self, model_dir, use_gpu=False, threads=None, mkldnn=True):
        import paddle.inference as pi

        model_file, params_file = paddle_model_files(model_dir)
        config = pi.Config(model_file, params_file)
        if use_gpu:
            config.enable_use_gpu(256, 0)
        else:
            config.disable_gpu()
            # oneDNN: about 4x faster for AlexNet on CPU; export_model.py checks the exported graph
            # against dygraph with it. Turn it off if a model misbehaves (some ops do in Paddle 3.3).
            if mkldnn:
                config.enable_mkldnn()
            else:
                config.disable_mkldnn()
            config.set_cpu_math_library_num_threads(threads or os.cpu_count() or 1)
        config.disable_glog_info()
        config.switch_ir_optim(True)
        self.predictor = pi.create_predictor(config)
        self.input = self.predictor.get_input_handle(self.predictor.get_input_names()[0])
        self.output = self.predictor.get_output_handle(self.predictor.get_output_names()[0])

    def run(self, batch):
        batch = np.ascontiguousarray(batch, np.float32)
        self.input.reshape(batch.shape)
        self.input.copy_from_cpu(batch)
        self.predictor.run()
        return self.output.copy_to_cpu()


# ----------------------------------------------------------------------------------------- ONNX Runtime
def export_onnx(model, crop, directory, log=print, opset=11, **_options):
    """paddle2onnx of the static Paddle model already in `directory`: `inference.onnx`."""
    try:
        import paddle2onnx
    except ImportError:
        raise UserError("--onnx needs paddle2onnx: pip install paddle2onnx onnxruntime")
    model_file, params_file = paddle_model_files(directory)
    onnx_file = os.path.join(directory, PREFIX + ".onnx")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        paddle2onnx.export(model_file, params_file, onnx_file, opset_version=opset, enable_onnx_checker=True,
                           optimize_tool="None")
    if not os.path.isfile(onnx_file):
        raise UserError(f"paddle2onnx wrote no {onnx_file}:\n{out.getvalue()[-2000:]}")
    log(f"----- ONNX model (opset {opset}): {onnx_file}")
    return {"onnx": PREFIX + ".onnx"}


class OnnxEncoder:
    """An exported ONNX model in ONNX Runtime (`mkldnn` concerns Paddle Inference only)."""

    FILE, EXPORT_FLAGS = PREFIX + ".onnx", "--onnx"

    def __init__(self, model_dir, use_gpu=False, threads=None, mkldnn=True):
        try:
            import onnxruntime as ort
        except ImportError:
            raise UserError("--backend onnx needs onnxruntime: pip install onnxruntime")
        path = os.path.join(model_dir, self.FILE)
        if not os.path.isfile(path):
            raise UserError(f"--model-dir {model_dir}: no {self.FILE} there; export with "
                            f"python export_model.py --pretrained CKPT --output-dir DIR {self.EXPORT_FLAGS}")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # paddle2onnx leaves unused initializers: ORT warns about each
        if threads:
            options.intra_op_num_threads = threads
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if use_gpu else ["CPUExecutionProvider"]
        providers = [p for p in providers if p in ort.get_available_providers()]
        self.session = ort.InferenceSession(path, options, providers=providers)
        self.input_name = self.session.get_inputs()[0].name

    def run(self, batch):
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, np.float32)})[0]


class OnnxInt8Encoder(OnnxEncoder):
    """The INT8 (QDQ) ONNX model of export_model.py --int8 in ONNX Runtime (utils/deploy/quantize.py)."""

    FILE, EXPORT_FLAGS = quantize.INT8_ONNX, "--onnx --int8 --calib-list data/<dataset>/train.txt"


register_runtime(Runtime("paddle", "Paddle Inference", (PREFIX + ".json", PREFIX + ".pdiparams"),
                         export_paddle, PaddleInferenceEncoder))
register_runtime(Runtime("onnx", "ONNX Runtime, converted by paddle2onnx", (PREFIX + ".onnx",),
                         export_onnx, OnnxEncoder, export_flag="onnx"))
register_runtime(Runtime("onnx-int8", "ONNX Runtime, INT8 post-training quantisation of the ONNX model",
                         (quantize.INT8_ONNX,), quantize.export_onnx_int8, OnnxInt8Encoder, export_flag="int8",
                         exact=False))
