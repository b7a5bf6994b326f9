"""DSH (Liu et al., CVPR 2016, Deep Supervised Hashing), as swuxyj/DeepHash-pytorch `DSH.py` trains it:
RMSprop (PyTorch's update) lr 1e-5, weight decay 1e-5, batch 64, 250 epochs, constant lr, α 0.1,
margin 2·bit, AlexNet + Linear(4096, bit) (`network.py`). The paper's regulariser weight is α 0.01;
the code's 0.1 is the default here (`--alpha 0.01` selects the paper's)."""
import paddle
import paddle.nn.functional as F

from models.heads import LinearHead
from models.losses import PairwiseBankLoss
from models.methods.base import Method, Option, Recipe, deephash_rules, register, RMSPROP_SCRATCH


def squared_distances(a, b):
    """‖a_i − b_j‖² for every row pair, (len(a), len(b))."""
    return (a * a).sum(axis=1, keepdim=True) + (b * b).sum(axis=1).unsqueeze(0) - 2 * paddle.matmul(
        a, b, transpose_y=True)


class DSHLoss(PairwiseBankLoss):
    """Contrastive loss on squared Euclidean distances to the memory bank (raw outputs u), margin m = 2·bit,
    plus α·mean|1 − |u|| (DeepHash-pytorch `DSH.py` DSHLoss):

        ℓ_ij = s_ij/2 · ‖u_i − U_j‖² + (1 − s_ij)/2 · max(m − ‖u_i − U_j‖², 0),  s_ij = [y_i·Y_j > 0]
        loss = mean over (batch, seen bank) pairs of ℓ_ij + α · mean over batch elements |1 − |u||
    """

    def __init__(self, num_train, bit, num_labels, alpha=0.1, gather=None):
        super().__init__(num_train, bit, num_labels, gather)
        self.alpha, self.margin = alpha, 2.0 * bit

    def loss(self, u, labels, indices):
        similar, seen = self.update_bank(u, labels, indices)
        dist = squared_distances(u, self.U)
        pair = similar / 2 * dist + (1 - similar) / 2 * F.relu(self.margin - dist)
        contrastive = (pair * seen).sum() / paddle.clip(seen.sum() * u.shape[0], min=1.0)
        return contrastive + self.alpha * paddle.abs(1 - paddle.abs(u)).mean()


register(Method(
    name="dsh",
    summary="DSH (CVPR 2016): contrastive Hamming-margin loss (margin 2·bit) plus a |1 − |u|| regulariser",
    build_head=lambda in_dim, cfg, codebook: LinearHead(in_dim, cfg["bit"]),
    build_loss=lambda cfg, head, num_train, gather=None: DSHLoss(num_train, cfg["bit"], cfg["num_labels"],
                                                                 alpha=cfg["alpha"], gather=gather),
    recipe=Recipe(
        rules=deephash_rules("DSH.py", optimizer="rmsprop", lr=1e-5, weight_decay=1e-5, epochs=250, batch_size=64,
                             alpha=0.1),
        scratch=RMSPROP_SCRATCH,
    ),
    options=(Option("alpha", float, "DSH/DSHSD/GreedyHash: weight α of the regulariser"),),
))
