"""INT8 encoders: post-training static quantisation of the exported ONNX model with ONNX Runtime's
quantisation tools.

    calib = calibration_from_list(list_file, data_path, preprocess, n)   # n images of the training list
    export_onnx_int8(model, crop, directory, calibration=calib)            # -> inference_int8.onnx

QDQ format, int8 weights per output channel, uint8 activations with MinMax ranges observed on the
calibration images (read through the same Preprocess as training, evaluation and inference). The hash
layer (the last MatMul/Gemm/Conv and what follows it up to the output) stays FP32: what a hash code
keeps is the sign, and quantising the output snaps small values to exactly 0 (on a lite OrthoHash
model 1.1% of the outputs, halving the agreement with FP32); in FP32 that layer costs a 4096 x bit
product.

The quantised model is kept only when its binary codes agree with the FP32 model's on at least
`min_bit_agreement` of the bits, measured on held-out images of the same list (those not used for
calibration); otherwise a UserError gives the numbers and nothing is written. The default, 0.98, is
set from what was measured on the lite sets (scripts/bench_inference.py, AlexNet 64 bits trained 8
epochs, 100 calibration images; agreement on the query + database images): OrthoHash 99.76% / 99.77%
of the bits identical (mAP -0.0003 on lite_single and lite_multi), HashNet 98.37% (mAP -0.0039, 1.2%
relative, on lite_single). At 98% a 64-bit code has 1.3 flipped bits on average, so a query-database
Hamming distance moves by about two steps at most on average: a model under that changes the ranking
more than any model we measured, and is refused rather than deployed silently.

Transformer backbones (a graph with TRANSFORMER_OPS: Softmax, Erf, LayerNormalization) quantise only the
MatMul/Gemm products with a constant weight, i.e. the attention (qkv, output) and MLP projections, and
leave their outputs FP32 (`OpTypesToExcludeOutputQuantization`): LayerNorm, Softmax, GELU, the residual
Adds, the attention's two activation-by-activation MatMuls (excluded by name: QDQ ignores
`MatMulConstBOnly`) and the Conv (patch embedding, ConvNeXt's depthwise convolutions) stay FP32. Chosen by
measurement: OrthoHash 64 bits on a frozen random-init backbone (no ImageNet weights here), 10 epochs
from the feature cache on lite_single (200 train images, 64 px), 96 calibration images, agreement on 96
held-out training images; ORT's default op types (what AlexNet/ResNet use) → this choice:

    vit_s_16 68.95% → 99.30%   clip_vit_b32 61.93% → 99.25%   dinov2_vits14 50.02% → 99.84%
    swin_t   98.21% → 99.40%   convnext_tiny 99.07% → 100.00%

On vit_s_16, what each step gives: MatMul/Gemm/Conv with quantised outputs 98.54%, without the
attention's MatMuls 98.73%, outputs FP32 98.96%, Conv FP32 too 99.30% (clip_vit_b32: Conv FP32 +0.04,
swin_t +0.25; only the Conv quantised: 99.22%, so the patch embedding alone costs 0.8% of the bits).
Percentile calibration gave 98.84% against MinMax's 98.61% (MatMul/Gemm/Conv, outputs quantised), Entropy
98.54%, symmetric int8 activations 98.65%, reduce_range 98.05%, per-tensor weights 98.57%: MinMax stays
(the histogram methods also keep every calibration batch's activations in memory, gigabytes at 224 px,
and need equal batch sizes). The patch embedding is about 1.4% of a ViT-S/16's multiply-adds, so keeping
it FP32 costs little speed. Measured on random-init backbones only: with ImageNet weights the activation
ranges differ (not measured here), which is one more reason the agreement check runs on every export.
"""
import os
import tempfile

import numpy as np

from utils.deploy.encoders import PREFIX
from utils.errors import UserError
from utils.fileio import atomic_path

INT8_ONNX = PREFIX + "_int8.onnx"
MIN_BIT_AGREEMENT = 0.98
QDQ_OPSET = 13  # per-channel DequantizeLinear (its `axis`) needs opset 13
BATCH = 16
# ops that only a transformer-style graph has (paddle2onnx writes LayerNorm as ReduceMean/Sub/Pow/..., a
# newer exporter as LayerNormalization; GELU as Erf); AlexNet and ResNet have none of them
TRANSFORMER_OPS = frozenset({"Softmax", "Erf", "Gelu", "FastGelu", "LayerNormalization"})
WEIGHT_PRODUCTS = ("MatMul", "Gemm")


class Calibration:
    """Float32 NCHW batches to calibrate on, and held-out batches to measure bit agreement on."""

    def __init__(self, batches, check_batches, source):
        self.batches, self.check_batches, self.source = list(batches), list(check_batches), source


def calibration_from_list(list_file, data_path, preprocess, n, seed=0, flag="--calib-list"):
    """A seeded sample of `n` images of a list (the training list) for calibration, and up to `n` other
    images of it for the agreement check (the calibration images themselves when the list has no others)."""
    from utils.data.lists import read_list
    from utils.data.images import ImageError, open_image

    if n <= 0:
        raise UserError(f"--calib-num must be positive, got {n}")
    lst = read_list(list_file)
    order = np.random.default_rng(seed).permutation(len(lst))
    calib, held_out = order[:n], order[n:2 * n]
    if len(calib) < n:
        print(f"warning: {flag} {list_file} has {len(lst)} images, fewer than --calib-num {n}: calibrating on all")

    def batches(indices):
        out = []
        for start in range(0, len(indices), BATCH):
            arrays = []
            for i in indices[start:start + BATCH]:
                try:
                    arrays.append(preprocess(open_image(os.path.join(data_path, lst.paths[i]))))
                except ImageError as exc:
                    raise UserError(f"{lst.where(i)}: {os.path.join(data_path, lst.paths[i])}: {exc}")
            out.append(np.stack(arrays))
        return out

    cal = batches(calib)
    check = batches(held_out) if len(held_out) else cal
    what = f"{len(held_out)} held-out images" if len(held_out) else "the calibration images (no others in the list)"
    return Calibration(cal, check, f"{len(calib)} images of {list_file}, agreement on {what}")


def hash_layer_nodes(graph):
    """Names of the nodes from the graph output back to (and including) the last MatMul/Gemm/Conv."""
    producer = {out: node for node in graph.node for out in node.output}
    names, tensor = [], graph.output[0].name
    while tensor in producer:
        node = producer[tensor]
        names.append(node.name)
        if node.op_type in ("MatMul", "Gemm", "Conv"):
            break
        tensor = node.input[0]
    return names


def quantization_settings(graph, exclude):
    """quantize_static's op choice for a graph (the hash layer's nodes `exclude`d either way), and a phrase
    for the log. A graph with a transformer's ops (TRANSFORMER_OPS: attention's Softmax, GELU's Erf, a
    LayerNormalization) quantises only the MatMul/Gemm products with a constant weight (the attention and
    MLP projections), with their outputs left FP32; every other graph (AlexNet, ResNet) keeps ORT's default
    op types. The reasons and the measurements are in the module docstring."""
    ops = {node.op_type for node in graph.node}
    if not ops & TRANSFORMER_OPS:
        return dict(nodes_to_exclude=list(exclude)), "ORT's default op types"
    constant = {t.name for t in graph.initializer}
    constant |= {out for n in graph.node if n.op_type == "Constant" for out in n.output}
    activation_products = [n.name for n in graph.node if n.op_type == "MatMul" and n.input[1] not in constant]
    return (dict(op_types_to_quantize=list(WEIGHT_PRODUCTS), nodes_to_exclude=list(exclude) + activation_products,
                 extra_options={"OpTypesToExcludeOutputQuantization": list(WEIGHT_PRODUCTS)}),
            "transformer graph: MatMul/Gemm weights and inputs only")


def bit_agreement(session_a, session_b, batches):
    name_a, name_b = session_a.get_inputs()[0].name, session_b.get_inputs()[0].name
    a = np.concatenate([session_a.run(None, {name_a: b})[0] for b in batches])
    b = np.concatenate([session_b.run(None, {name_b: b})[0] for b in batches])
    return float(np.mean((a > 0) == (b > 0))), a.size


def quantize_onnx(fp32_file, int8_file, calibration, min_bit_agreement=MIN_BIT_AGREEMENT, log=print):
    """Quantise `fp32_file` into `int8_file` (written atomically, and only when the agreement is enough).
    Returns the share of identical code bits on the held-out batches."""
    try:
        import onnx
        import onnxruntime as ort
        from onnx import version_converter
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as exc:
        raise UserError(f"--int8 needs onnx, onnxruntime and ml_dtypes ({exc}): "
                        "pip install -r requirements.txt -c constraints.txt")

    class Reader(CalibrationDataReader):
        def __init__(self, name):
            self.batches = iter({name: b} for b in calibration.batches)

        def get_next(self):
            return next(self.batches, None)

    ort.set_default_logger_severity(3)  # paddle2onnx leaves unused initializers: ORT warns about each
    model = onnx.load(fp32_file)
    if model.opset_import[0].version < QDQ_OPSET:
        model = version_converter.convert_version(model, QDQ_OPSET)
    exclude = hash_layer_nodes(model.graph)
    with tempfile.TemporaryDirectory() as work, atomic_path(int8_file) as tmp:
        pre = os.path.join(work, "fp32_opset13.onnx")
        onnx.save(model, pre)
        # shape inference + graph optimisation, as ORT recommends (paddle2onnx graphs defeat the symbolic one)
        quant_pre_process(pre, pre, skip_symbolic_shape=True)
        input_name = model.graph.input[0].name
        settings, what = quantization_settings(onnx.load(pre).graph, exclude)
        quantize_static(pre, tmp, Reader(input_name), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, **settings)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        fp32 = ort.InferenceSession(fp32_file, options, providers=["CPUExecutionProvider"])
        int8 = ort.InferenceSession(tmp, options, providers=["CPUExecutionProvider"])
        same, n_bits = bit_agreement(fp32, int8, calibration.check_batches)
        if same < min_bit_agreement:
            raise UserError(f"--int8: the quantised model's codes agree with FP32 on {100 * same:.2f}% of "
                            f"{n_bits} bits, under --min-bit-agreement {100 * min_bit_agreement:.2f}% "
                            f"(calibration: {calibration.source}); {os.path.basename(int8_file)} not written — "
                            "calibrate on more images (--calib-num) or keep the FP32 model")
    log(f"----- INT8 ONNX model: {int8_file} (QDQ, per-channel weights, {what}, hash layer FP32; calibration: "
        f"{calibration.source}): identical code bits vs FP32 {100 * same:.2f}% of {n_bits}")
    return same


def export_onnx_int8(model, crop, directory, log=print, calibration=None, min_bit_agreement=MIN_BIT_AGREEMENT,
                     **_options):
    """The runtime registry's export for `onnx-int8`: quantise the `inference.onnx` already in `directory`."""
    fp32_file = os.path.join(directory, PREFIX + ".onnx")
    if calibration is None:
        raise UserError("--int8 needs calibration images: --calib-list data/<dataset>/train.txt "
                        "(and --calib-num N)")
    if not os.path.isfile(fp32_file):
        raise UserError(f"--int8 quantises {fp32_file}, which is missing: pass --onnx too")
    quantize_onnx(fp32_file, os.path.join(directory, INT8_ONNX), calibration, min_bit_agreement, log)
    return {"onnx_int8": INT8_ONNX}
