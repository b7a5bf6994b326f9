"""DFH (Li et al., BMVC 2019, Push for Quantization: Deep Fisher Hashing), as swuxyj/DeepHash-pytorch
`DFH.py` trains it: m 3, μ 0.1, vul 1, nta 1, η 0.5 (option names as in its get_config), RMSprop
(PyTorch's update) lr 1e-5, weight decay 1e-5, batch 64, 150 epochs, constant lr, AlexNet +
Linear(4096, bit)."""
import numpy as np
import paddle
import paddle.nn.functional as F

from models.heads import LinearHead
from models.losses import PairwiseBankLoss
from models.methods.base import Method, Option, Recipe, deephash_rules, register, RMSPROP_SCRATCH

CENTRE_STEPS = 200  # gradient steps on the class centres per batch, lr 0.03 (×0.1 at steps 149 and 179)


def centre_objective_grad(V, Y, B, vul, nta, TK):
    """Gradient of intra + vul·inter + nta·quant with respect to the centres V (bit, C), where
    intra = mean((V·Yᵀ − B)²), inter = mean((VᵀV − TK)²), quant = mean((V − sign V)²) and sign has no
    gradient (as in PyTorch). Y: (n, C) labels, B: (bit, n) target bits."""
    E1 = V @ Y.T - B
    E2 = V.T @ V - TK
    return (2 * E1 @ Y / E1.size + vul * 4 * V @ E2 / E2.size + nta * 2 * (V - np.sign(V)) / V.size)


def update_centres(V, Y, B, vul, nta):
    """DFH.py Center_gradient: 200 plain gradient steps on V, lr 0.03, then 0.003 from step 149 and
    0.0003 from step 179 (the code lowers the rate before the update of those steps)."""
    C = V.shape[1]
    TK = V.shape[0] * (2 * np.eye(C, dtype=V.dtype) - 1)
    lr = 0.03
    for i in range(CENTRE_STEPS):
        if i in (149, 179):
            lr *= 0.1
        V = V - lr * centre_objective_grad(V, Y, B, vul, nta, TK)
    return V


class DFHLoss(PairwiseBankLoss):
    """Margin pairwise likelihood against the memory bank plus quantisation to class-centre bits:

        b_i  = sign(μ·C·y_i + u_i),  C = sign(V) the class centres (bit, classes), V from zeros
        θ_ij = clip(½·u_i·U_j, −100, 50)
        loss = mean over (batch, seen bank) pairs of [(1 − s_ij)·log(1 + e^{m + θ_ij}) + s_ij·log(1 + e^{m − θ_ij})]
               + η·mean((b − u)²)

    after which V takes `update_centres` on the batch (labels and b of every process, so that all
    processes keep the same centres). DeepHash-pytorch `DFH.py` DFHLoss.
    """

    def __init__(self, num_train, bit, num_labels, margin=3.0, mu=0.1, vul=1.0, nta=1.0, eta=0.5, gather=None):
        super().__init__(num_train, bit, num_labels, gather)
        self.m, self.mu, self.vul, self.nta, self.eta = margin, mu, vul, nta, eta
        self.register_buffer("V", paddle.zeros([bit, num_labels], "float32"))

    def loss(self, u, y, indices):
        with paddle.no_grad():
            centres = paddle.sign(self.V)
            b = paddle.sign(self.mu * paddle.matmul(y, centres, transpose_y=True) + u)
            y_all = self.gather(y).numpy()
            b_all = paddle.sign(self.mu * paddle.matmul(self.gather(y), centres, transpose_y=True)
                                + self.gather(u.detach())).numpy()
            self.V.set_value(update_centres(self.V.numpy(), y_all, b_all.T, self.vul, self.nta))
        similar, seen = self.update_bank(u, y, indices)
        theta = paddle.clip(0.5 * paddle.matmul(u, self.U, transpose_y=True), -100, 50)
        pair = (1 - similar) * F.softplus(self.m + theta) + similar * F.softplus(self.m - theta)
        metric = (pair * seen).sum() / paddle.clip(seen.sum() * u.shape[0], min=1.0)
        return metric + self.eta * ((b - u) ** 2).mean()


register(Method(
    name="dfh",
    summary="DFH (BMVC 2019): margin pairwise likelihood, quantisation to learned class-centre bits",
    build_head=lambda in_dim, cfg, codebook: LinearHead(in_dim, cfg["bit"]),
    build_loss=lambda cfg, head, num_train, gather=None: DFHLoss(
        num_train, cfg["bit"], cfg["num_labels"], margin=cfg["margin"], mu=cfg["mu"], vul=cfg["vul"], nta=cfg["nta"],
        eta=cfg["eta"], gather=gather),
    recipe=Recipe(
        rules=deephash_rules("DFH.py", optimizer="rmsprop", lr=1e-5, weight_decay=1e-5, epochs=150, batch_size=64,
                             margin=3.0, mu=0.1, vul=1.0, nta=1.0, eta=0.5),
        scratch=RMSPROP_SCRATCH,
    ),
    options=(Option("margin", float, "DFH m / DPN m: margin of the pairwise likelihood / the polarisation"),
             Option("mu", float, "DFH: weight μ of the class centres in the target bits"),
             Option("vul", float, "DFH: weight of the centres' inter-class term"),
             Option("nta", float, "DFH: weight of the centres' quantisation term"),
             Option("eta", float, "DFH: weight η of the quantisation loss")),
))
