"""DCH (Cao et al., CVPR 2018, Deep Cauchy Hashing), as swuxyj/DeepHash-pytorch `DCH.py` trains it (and
PaddleClas `ppcls/loss/deephashloss.py` DCHLoss ports it): pairs within the batch, γ 20, λ 0.1, RMSprop
(PyTorch's update) lr 1e-5, weight decay 1e-5, batch 128, 150 epochs, constant lr, AlexNet +
Linear(4096, bit). PaddleClas's DCH.yaml trains with SGD lr 0.005 (×0.1 at epoch 200) and L2 1e-5
instead; PaddleClas takes s = y_i·y_j (one-hot labels only), DeepHash-pytorch [y_i·y_j > 0], which is
the same for single-label data and is what this follows for multi-label data."""
import paddle

from models.heads import LinearHead
from models.losses import HashLoss, batch_similar
from models.methods.base import Method, Option, Recipe, deephash_rules, register, RMSPROP_SCRATCH


def cauchy_distance(a, b, bit):
    """DCH's normalised Hamming-like distance d = bit/2·(1 − min(cos(a_i, b_j), 0.99)), norms clipped at 1e-4."""
    norm = paddle.matmul(paddle.sqrt((a * a).sum(axis=1, keepdim=True)),
                         paddle.sqrt((b * b).sum(axis=1, keepdim=True)), transpose_y=True)
    cos = paddle.matmul(a, b, transpose_y=True) / paddle.clip(norm, min=1e-4)
    return (1 - paddle.clip(cos, max=0.99)) * bit / 2


class DCHLoss(HashLoss):
    """Cauchy cross-entropy over the batch's pairs plus the Cauchy quantisation loss:

        w_ij = s_ij·|S|/Σs + (1 − s_ij)·|S|/Σ(1 − s)   (1 when the batch has only one kind of pair)
        ℓ_ij = w_ij·[s_ij·log(d_ij/γ) + log(1 + γ/d_ij)],   d_ij = cauchy_distance(u_i, u_j)
        q_i  = log(1 + cauchy_distance(|u_i|, 1)/γ)
        loss = mean_ij ℓ_ij + λ·mean_i q_i
    """

    def __init__(self, bit, gamma=20.0, lam=0.1):
        super().__init__()
        self.bit, self.gamma, self.lam = bit, gamma, lam

    def loss(self, u, labels, indices=None):
        s = batch_similar(labels)
        n_pos, n = s.sum(), float(s.numel())
        if 0 < float(n_pos) < n:
            w = s * n / n_pos + (1 - s) * n / (n - n_pos)
        else:
            w = paddle.ones_like(s)
        d = cauchy_distance(u, u, self.bit)
        cauchy = w * (s * paddle.log(d / self.gamma) + paddle.log(1 + self.gamma / d))
        quant = paddle.log(1 + cauchy_distance(paddle.abs(u), paddle.ones([1, u.shape[1]], u.dtype), self.bit)
                           / self.gamma)
        return cauchy.mean() + self.lam * quant.mean()


register(Method(
    name="dch",
    summary="DCH (CVPR 2018): Cauchy pairwise likelihood and Cauchy quantisation (gamma)",
    build_head=lambda in_dim, cfg, codebook: LinearHead(in_dim, cfg["bit"]),
    build_loss=lambda cfg, head, num_train, gather=None: DCHLoss(cfg["bit"], gamma=cfg["gamma"], lam=cfg["lambda"]),
    recipe=Recipe(
        rules=deephash_rules("DCH.py", optimizer="rmsprop", lr=1e-5, weight_decay=1e-5, epochs=150, batch_size=128,
                             gamma=20.0, **{"lambda": 0.1}),
        scratch=RMSPROP_SCRATCH,
    ),
    options=(Option("gamma", float, "DCH: scale γ of the Cauchy distribution"),
             Option("lambda", float, "DHN/DCH/LCDSH: weight λ of the quantisation (LCDSH: binary-consistency) term")),
))
