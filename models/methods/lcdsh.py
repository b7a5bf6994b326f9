"""LCDSH (Zhu et al., IJCAI 2017, Locality-Constrained Deep Supervised Hashing), as swuxyj/DeepHash-pytorch
`LCDSH.py` trains it and PaddleClas `ppcls/loss/deephashloss.py` LCDSHLoss ports it: pairs within the
batch, λ 3, RMSprop (PyTorch's update) lr 1e-5, weight decay 1e-5, batch 128, 350 epochs, constant lr,
AlexNet + Linear(4096, bit) (PaddleClas's LCDSH.yaml: Adam lr 1e-5, ×0.1 at epoch 200)."""
import paddle
import paddle.nn.functional as F

from models.heads import LinearHead
from models.losses import HashLoss
from models.methods.base import Method, Option, Recipe, deephash_rules, register, RMSPROP_SCRATCH


class LCDSHLoss(HashLoss):
    """With s_ij = ±1 (share a label or not), θ_ij = clip(½·u_i·u_j, −50, 50) and θ'_ij = ½·sign(u_i)·sign(u_j):

        loss = mean_ij log(1 + e^{−s_ij·θ_ij}) + λ·mean_ij (σ(θ_ij) − σ(θ'_ij))²
    """

    def __init__(self, lam=3.0):
        super().__init__()
        self.lam = lam

    def loss(self, u, y, indices=None):
        s = 2 * (paddle.matmul(y, y, transpose_y=True) > 0).astype("float32") - 1
        theta = paddle.clip(0.5 * paddle.matmul(u, u, transpose_y=True), -50, 50)
        b = paddle.sign(u)
        theta_b = 0.5 * paddle.matmul(b, b, transpose_y=True)
        return F.softplus(-s * theta).mean() + self.lam * ((F.sigmoid(theta) - F.sigmoid(theta_b)) ** 2).mean()


register(Method(
    name="lcdsh",
    summary="LCDSH (IJCAI 2017): pairwise likelihood plus consistency of real and binary similarities",
    build_head=lambda in_dim, cfg, codebook: LinearHead(in_dim, cfg["bit"]),
    build_loss=lambda cfg, head, num_train, gather=None: LCDSHLoss(lam=cfg["lambda"]),
    recipe=Recipe(
        rules=deephash_rules("LCDSH.py", optimizer="rmsprop", lr=1e-5, weight_decay=1e-5, epochs=350, batch_size=128,
                             **{"lambda": 3.0}),
        scratch=RMSPROP_SCRATCH,
    ),
    options=(Option("lambda", float, "DHN/DCH/LCDSH: weight λ of the quantisation (LCDSH: binary-consistency) term"),),
))
