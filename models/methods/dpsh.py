"""DPSH (Li et al., IJCAI 2016), as swuxyj/DeepHash-pytorch `DPSH.py` trains it: RMSprop (PyTorch's
update, utils/train/optim.py) lr 1e-5, weight decay 1e-5, batch 128, 150 epochs, constant lr, η 0.1,
the last partial batch kept, Resize(256) + RandomCrop(224) + flip (`DeepHash-pytorch:utils/tools.py`)."""
import paddle

from models.heads import LinearHead
from models.losses import PairwiseBankLoss
from models.methods.base import (DEEPHASH_CIFAR, DEEPHASH_CIFAR_SOURCE, OFFICIAL, QUANT_OPTION, RMSPROP_SCRATCH,
                                 SHORTER_CROP, Method, Recipe, Rule, always, register)


class DPSHLoss(PairwiseBankLoss):
    """Pairwise negative log-likelihood with p(s_ij = 1) = σ(θ_ij), θ_ij = ½·u_i·u_j, plus the
    quantization penalty η·‖u − sign(u)‖²:

        loss = mean over pairs (i in batch, j in bank) of [log(1 + e^{θ_ij}) − s_ij·θ_ij]
               + η · mean over batch elements of (u − sign(u))².

    The bank keeps the raw outputs u. Means instead of the paper's sums (as in DeepHash-pytorch), so η
    does not depend on batch and bank size.
    """

    def __init__(self, num_train, bit, num_labels, quant_weight=0.1, gather=None):
        super().__init__(num_train, bit, num_labels, gather)
        self.eta = quant_weight

    def loss(self, u, labels, indices):
        quantization = ((u - paddle.sign(u)) ** 2).mean()
        return self.mean_pair_nll(u, labels, indices) + self.eta * quantization


register(Method(
    name="dpsh",
    summary="DPSH (IJCAI 2016): pairwise likelihood of sigmoid(u_i.u_j / 2) plus quantization penalty",
    build_head=lambda in_dim, cfg, codebook: LinearHead(in_dim, cfg["bit"]),
    build_loss=lambda cfg, head, num_train, gather=None: DPSHLoss(num_train, cfg["bit"], cfg["num_labels"],
                                                                  quant_weight=cfg["quant_weight"], gather=gather),
    recipe=Recipe(
        rules=(
            always(dict(optimizer="rmsprop", lr=1e-5, weight_decay=1e-5, epochs=150, batch_size=128, lr_step=None,
                        lr_gamma=1.0, backbone_lr_mult=1.0, head_lr_mult=1.0, quant_weight=0.1, drop_last=False,
                        **SHORTER_CROP),
                   f"{OFFICIAL}: DeepHash-pytorch DPSH.py get_config, DeepHash-pytorch:utils/tools.py"),
            Rule(dict(dataset="cifar10"), DEEPHASH_CIFAR, DEEPHASH_CIFAR_SOURCE),
        ),
        scratch=RMSPROP_SCRATCH,
    ),
    options=(QUANT_OPTION,),
))
