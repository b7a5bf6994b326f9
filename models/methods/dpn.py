"""DPN (Fan et al., IJCAI 2020, Deep Polarized Network), as swuxyj/DeepHash-pytorch `DPN.py` trains it
(its default: fixed random targets, the "-T"/"-A" variants off): m 1, p 0.5, RMSprop (PyTorch's update)
lr 1e-5, weight decay 1e-5, batch 32, 150 epochs, constant lr, AlexNet + Linear(4096, bit). The class
targets are a buffer of the head (head.codebook), so that they travel with the checkpoint."""
import numpy as np
import paddle
import paddle.nn.functional as F

from models.heads import LinearHead
from models.losses import HashLoss
from models.methods.base import Method, Option, Recipe, deephash_rules, register, RMSPROP_SCRATCH


def target_vectors(num_classes, bit, p=0.5, seed=0):
    """DPN.py get_target_vectors: per class a ±1 code with int(bit·p) randomly placed −1 bits."""
    rng = np.random.default_rng(seed)
    out = np.ones((num_classes, bit), np.float32)
    for k in range(num_classes):
        out[k, rng.choice(bit, int(bit * p), replace=False)] = -1
    return out


class DPNLoss(HashLoss):
    """Bit-wise polarisation towards the image's target t: mean over batch and bits of max(m − u·t, 0).

    t = sign(Σ_k y_k·T_k) over the image's labels; bits where that sum is 0 take the bits of one fixed
    random code (DPN.py label2center's multi-label branch — for one-hot labels it is the class's row,
    its single-label branch). DeepHash-pytorch `DPN.py` DPNLoss.
    """

    def __init__(self, targets, margin=1.0, seed=0):
        super().__init__()
        targets = np.asarray(targets, np.float32)
        rnd = np.where(np.random.default_rng(seed + 1).random(targets.shape[1]) < 0.5, -1.0, 1.0).astype(np.float32)
        self.m = margin
        self.register_buffer("targets", paddle.to_tensor(targets), persistable=False)
        self.register_buffer("random_centre", paddle.to_tensor(rnd), persistable=False)

    def centres(self, y):
        """Each image's target from its float32 label row `y`."""
        total = paddle.matmul(y, self.targets)
        return paddle.where(total == 0, self.random_centre.unsqueeze(0).expand_as(total), paddle.sign(total))

    def loss(self, u, labels, indices=None):
        return F.relu(self.m - u * self.centres(labels)).mean()


register(Method(
    name="dpn",
    summary="DPN (IJCAI 2020): bit-wise hinge polarisation towards random class target codes",
    build_head=lambda in_dim, cfg, codebook: LinearHead(
        in_dim, cfg["bit"], codebook=target_vectors(cfg["num_labels"], cfg["bit"], cfg["p"], cfg["seed"])),
    build_loss=lambda cfg, head, num_train, gather=None: DPNLoss(head.codebook.numpy(), margin=cfg["margin"],
                                                                 seed=cfg["seed"]),
    recipe=Recipe(
        rules=deephash_rules("DPN.py", optimizer="rmsprop", lr=1e-5, weight_decay=1e-5, epochs=150, batch_size=32,
                             margin=1.0, p=0.5),
        scratch=RMSPROP_SCRATCH,
    ),
    options=(Option("margin", float, "DFH m / DPN m: margin of the pairwise likelihood / the polarisation"),
             Option("p", float, "DPN: fraction p of −1 bits in each class's random target code")),
))
