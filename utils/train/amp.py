"""Mixed-precision training (`--amp {off,fp16,bf16}`), as PaddleClas's AMP config does it: the network's
forward pass under `paddle.amp.auto_cast` (level O1: white-listed ops such as matmul and conv in half
precision, the rest in FP32), and for fp16 a dynamic loss scaler (`paddle.amp.GradScaler`) whose state
is saved in last.pdparams and restored by --resume.

The network's output is cast back to FP32 before the loss, so every loss (log-sum-exp, HashNet's
memory-bank inner products, the codebook cosines) is computed in full precision.

Paddle runs auto_cast and GradScaler only on GPU / XPU / custom devices: elsewhere (CPU) `--amp` says
once that it has no effect and training runs in FP32, unchanged.

    amp = Amp(cfg["amp"], env.device, log)
    with amp.autocast():
        out = net(img)
    loss = criterion(amp.float32(out), label, idx)
    amp.step(loss, optimizer)        # backward (scaled for fp16), optimizer step, clear_grad
    ckpt["amp"] = amp.state_dict()   # ... amp.set_state_dict(ckpt.get("amp"))
"""
import contextlib

import paddle

CHOICES = ("off", "fp16", "bf16")
DTYPES = {"fp16": "float16", "bf16": "bfloat16"}
# PaddleClas's AMP defaults (ppcls/configs/*: AMP.scale_loss 65536, use_dynamic_loss_scaling True)
INIT_LOSS_SCALING = 65536.0


def supported(mode, device):
    """Whether Paddle runs `mode` on `device` ("cpu" / "gpu" ...): auto_cast needs a GPU / XPU / custom place."""
    if mode == "off" or device == "cpu" or paddle.device.get_device() == "cpu":
        return False
    if mode == "fp16":
        return paddle.amp.is_float16_supported()
    return paddle.amp.is_bfloat16_supported()


class Amp:
    def __init__(self, mode, device, log=None):
        mode = mode or "off"
        if mode not in CHOICES:
            raise ValueError(f"amp mode {mode!r} not in {CHOICES}")
        self.mode = mode
        self.enabled = supported(mode, device)
        if mode != "off" and not self.enabled and log is not None:
            log.warning("--amp %s has no effect on %s (Paddle's auto_cast and GradScaler run on GPU/XPU only): "
                        "training in FP32", mode, paddle.device.get_device())
        self.scaler = None
        if self.enabled and mode == "fp16":
            self.scaler = paddle.amp.GradScaler(init_loss_scaling=INIT_LOSS_SCALING, use_dynamic_loss_scaling=True)

    def autocast(self):
        if not self.enabled:
            return contextlib.nullcontext()
        return paddle.amp.auto_cast(enable=True, dtype=DTYPES[self.mode], level="O1")

    @staticmethod
    def float32(tensor):
        return tensor if tensor.dtype == paddle.float32 else tensor.astype("float32")

    def step(self, loss, optimizer):
        """Backward, optimizer step (skipped by the scaler when fp16 gradients overflowed), clear_grad."""
        if self.scaler is None:
            loss.backward()
            optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()
        optimizer.clear_grad()

    def state_dict(self):
        """{"mode": ..., "scaler": the loss scaler's state}, or None without a scaler (FP32, bf16, CPU): the
        checkpoint then keeps the layout it had before --amp (the mode is in its cfg either way)."""
        if self.scaler is None:
            return None
        return {"mode": self.mode, "scaler": self.scaler.state_dict()}

    def set_state_dict(self, state):
        if self.scaler is not None and state and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
