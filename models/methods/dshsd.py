"""DSHSD (Yu et al., IEEE Access 2019, Deep Supervised Hashing Based on Stable Distribution), as
swuxyj/DeepHash-pytorch `DSHSD.py` trains it and PaddleClas `ppcls/loss/deephashloss.py` DSHSDLoss
ports it: tanh of the hash layer, a bias-free Linear(bit, classes) classifier on it (PaddleClas's FC
head has a bias), α 0.05, Adam lr 1e-5, no weight decay, batch 64, 250 epochs, constant lr (PaddleClas's
DSHSD.yaml: 150 epochs, ×0.1 at 200). The classification term is softmax CE on the label row, or with
`--classifier-loss bce` the sigmoid cross-entropy summed over classes, which DeepHash-pytorch uses for
NUS-WIDE (and PaddleClas with `multi_label`); its COCO runs use softmax CE on the multi-hot row."""
import paddle
import paddle.nn.functional as F

from models.heads import LinearHead, TrainExtrasHead, split_extras, torch_linear
from models.losses import HashLoss
from models.methods.base import Method, Option, Recipe, Rule, deephash_rules, register
from models.methods.dsh import squared_distances


def _logits(head, feat, u):
    return head.classifier(paddle.tanh(u))


def build_head(in_dim, cfg, codebook):
    """The hash layer; in training its output carries the classifier's logits of tanh(u)."""
    return TrainExtrasHead(LinearHead(in_dim, cfg["bit"]).fc, _logits,
                           classifier=torch_linear(cfg["bit"], cfg["num_labels"], bias=False))


class DSHSDLoss(HashLoss):
    """h = tanh(u), pairs within the batch, m = 2·bit, o the classifier's logits of h:

        L_d = α·mean_ij [s_ij/2·‖h_i − h_j‖² + (1 − s_ij)/2·max(m − ‖h_i − h_j‖², 0)],  s_ij = [y_i·y_j > 0]
        L_c = mean_i −Σ_k y_ik·log softmax(o_i)_k            ("softmax")
           or mean_i Σ_k [o_ik − y_ik·o_ik + log(1 + e^{−o_ik})]   ("bce")
        loss = L_c + L_d
    """

    def __init__(self, bit, alpha=0.05, classifier_loss="softmax"):
        super().__init__()
        if classifier_loss not in ("softmax", "bce"):
            raise ValueError(f"classifier_loss must be 'softmax' or 'bce', not {classifier_loss!r}")
        self.bit, self.alpha, self.kind, self.margin = bit, alpha, classifier_loss, 2.0 * bit

    def loss(self, out, y, indices=None):
        u, o = split_extras(out, self.bit)
        h = paddle.tanh(u)
        dist = squared_distances(h, h)
        s = (paddle.matmul(y, y, transpose_y=True) > 0).astype("float32")
        ld = (s / 2 * dist + (1 - s) / 2 * F.relu(self.margin - dist)).mean()
        if self.kind == "bce":
            lc = (o - y * o + F.softplus(-o)).sum(axis=1).mean()
        else:
            lc = -(y * F.log_softmax(o, axis=1)).sum(axis=1).mean()
        return lc + self.alpha * ld


register(Method(
    name="dshsd",
    summary="DSHSD (IEEE Access 2019): contrastive margin loss on tanh codes plus a classifier on them",
    build_head=build_head,
    build_loss=lambda cfg, head, num_train, gather=None: DSHSDLoss(cfg["bit"], alpha=cfg["alpha"],
                                                                   classifier_loss=cfg["classifier_loss"]),
    recipe=Recipe(
        rules=(*deephash_rules("DSHSD.py", optimizer="adam", lr=1e-5, weight_decay=0.0, epochs=250, batch_size=64,
                               alpha=0.05, classifier_loss="softmax"),
               Rule(dict(dataset="nuswide"), dict(classifier_loss="bce"),
                    "official code: DeepHash-pytorch DSHSD.py ('nuswide' in the data-set name)")),
        # from random init its paper's Adam lr 1e-5 learns and 1e-3/1e-4 collapse to about chance (64 bits,
        # lite_single, 8 epochs, batch 16: 0.4914 at 1e-5, 0.1299 at 1e-4, 0.1122 at 1e-3; chance 0.1129)
        scratch=dict(lr=1e-5, batch_size=32),
    ),
    options=(Option("alpha", float, "DSH/DSHSD/GreedyHash: weight α of the regulariser"),
             Option("classifier-loss", str, "DSHSD: 'softmax' CE on the label row or per-class sigmoid 'bce'",
                    ("softmax", "bce"))),
))
