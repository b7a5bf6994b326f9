"""DHN (Zhu et al., AAAI 2016, Deep Hashing Network), as swuxyj/DeepHash-pytorch `DHN.py` trains it:
RMSprop (PyTorch's update) lr 1e-5, weight decay 1e-5, batch 128, 90 epochs, constant lr, quantisation
weight 0.1 (the code's "alpha", the paper's λ), AlexNet + Linear(4096, bit)."""
import paddle

from models.heads import LinearHead
from models.losses import PairwiseBankLoss
from models.methods.base import Method, Option, Recipe, deephash_rules, register, RMSPROP_SCRATCH


def log_cosh(x):
    """log(cosh x) without overflow: |x| + log(1 + e^{−2|x|}) − log 2."""
    a = paddle.abs(x)
    return a + paddle.log1p(paddle.exp(-2 * a)) - 0.6931471805599453


class DHNLoss(PairwiseBankLoss):
    """Pairwise cross-entropy of σ(θ_ij), θ_ij = ½·u_i·U_j against the memory bank (raw outputs u), plus the
    smooth quantisation loss λ·mean log cosh(|u| − 1) (DeepHash-pytorch `DHN.py` DHNLoss):

        loss = mean over (batch, seen bank) pairs of [log(1 + e^{θ_ij}) − s_ij·θ_ij] + λ·mean log cosh(|u| − 1)
    """

    def __init__(self, num_train, bit, num_labels, lam=0.1, gather=None):
        super().__init__(num_train, bit, num_labels, gather)
        self.lam = lam

    def loss(self, u, labels, indices):
        return self.mean_pair_nll(u, labels, indices) + self.lam * log_cosh(paddle.abs(u) - 1).mean()


register(Method(
    name="dhn",
    summary="DHN (AAAI 2016): pairwise cross-entropy plus a log-cosh quantisation loss",
    build_head=lambda in_dim, cfg, codebook: LinearHead(in_dim, cfg["bit"]),
    build_loss=lambda cfg, head, num_train, gather=None: DHNLoss(num_train, cfg["bit"], cfg["num_labels"],
                                                                 lam=cfg["lambda"], gather=gather),
    recipe=Recipe(
        rules=deephash_rules("DHN.py", optimizer="rmsprop", lr=1e-5, weight_decay=1e-5, epochs=90, batch_size=128,
                             **{"lambda": 0.1}),
        scratch=RMSPROP_SCRATCH,
    ),
    options=(Option("lambda", float, "DHN/DCH/LCDSH: weight λ of the quantisation (LCDSH: binary-consistency) term"),),
))
