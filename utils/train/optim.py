"""Optimizers whose update is the one the reference code (PyTorch) applies.

`paddle.optimizer.RMSProp` divides by √(v + ε); PyTorch's `torch.optim.RMSprop`, which DeepHash-pytorch's
DPSH uses, divides by √v + ε. With lr 1e-5 and gradients of ~1e-6 the two differ by orders of magnitude
(../shared notes: 600× over five steps), so reference recipes need PyTorch's form:

    g ← g + wd·θ                      (L2 weight decay, as both frameworks add it)
    v ← α·v + (1 − α)·g²              (α = rho = 0.99, v₀ = 0)
    θ ← θ − lr·g / (√v + ε)           (ε = 1e-8)

`TorchRMSProp` keeps Paddle's optimizer machinery (accumulators in the state dict, lr schedulers, the
per-parameter lr multipliers of `optimize_attr`) and replaces only the update. Paddle's Momentum (SGD)
and Adam already equal PyTorch's SGD(momentum) and Adam (tests/test_recipes.py checks all three).
"""
import paddle

RMSPROP_FORMS = ("pytorch", "paddle")


class TorchRMSProp(paddle.optimizer.RMSProp):
    """RMSProp with PyTorch's update (no momentum, not centered)."""

    def _append_optimize_op(self, block, param_and_grad):
        if isinstance(param_and_grad, dict):
            param_and_grad = self._update_param_group(param_and_grad)
        param, grad = param_and_grad
        v = self._get_accumulator_master(self._mean_square_acc_str, param)
        lr = self._create_param_lr(param_and_grad)
        with paddle.no_grad():
            paddle.assign(self._rho * v + (1.0 - self._rho) * grad * grad, output=v)
            paddle.assign(param - lr * grad / (paddle.sqrt(v) + self._epsilon), output=param)
        return None


def rmsprop(form, learning_rate, parameters, weight_decay):
    """RMSProp with PyTorch's defaults (alpha 0.99, eps 1e-8); `form` "pytorch" (the reference update) or
    "paddle" (Paddle's built-in, which checkpoints written before this choice existed were trained with)."""
    cls = TorchRMSProp if form == "pytorch" else paddle.optimizer.RMSProp
    return cls(learning_rate, rho=0.99, epsilon=1e-8, parameters=parameters, weight_decay=weight_decay)
