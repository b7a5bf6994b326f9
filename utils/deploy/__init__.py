"""Deployment: export, the runtimes, INT8, search over a database or an index, and the service's logic.

Modules: encoders.py (inference.yml, DygraphEncoder, encode_images, Timer), runtimes.py (the runtime
registry: exporters and encoders of Paddle Inference and ONNX Runtime, `open_exported`), quantize.py
(ONNX Runtime INT8), searcher.py (query-by-image over a database list), indexing.py (images in and out of
an index), service.py + server.py (the retrieval service), options.py (the CLI option groups). This facade
re-exports encoders.py's names; the modules import each other, never this file.
"""
from utils.deploy.encoders import (PREFIX, YML, DygraphEncoder, Timer, encode_images, max_diff_and_bit_agreement,
                                   read_inference_yml, write_inference_yml)

__all__ = ["PREFIX", "YML", "DygraphEncoder", "Timer", "encode_images", "max_diff_and_bit_agreement",
           "read_inference_yml", "write_inference_yml"]
