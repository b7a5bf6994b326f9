"""GreedyHash (Su et al., NeurIPS 2018), supervised, as swuxyj/DeepHash-pytorch `GreedyHash.py` trains
it: sign in the forward pass with the gradient passed straight through (its `Hash` autograd Function),
a bias-free Linear(bit, classes) classifier on the binary codes trained with the network, α 0.1, SGD
momentum 0.9 lr 1e-3 ×0.1 every 30 epochs, weight decay 5e-4, batch 64, 200 epochs (ImageNet: α 1,
×0.1 every 80 epochs), AlexNet + Linear(4096, bit). Multi-label data: CE on each image's first label
(`onehot_y.argmax(axis=1)`, as the code does)."""
import paddle
import paddle.nn.functional as F

from models.heads import LinearHead, TrainExtrasHead, split_extras, torch_linear
from models.losses import HashLoss, sign_straight_through
from models.methods.base import Method, Option, Recipe, Rule, deephash_rules, register


def cubic_penalty(u):
    """GreedyHash's mean | |u| − 1 |³."""
    return paddle.abs((paddle.abs(u) - 1) ** 3).mean()


def _logits(head, feat, u):
    return head.classifier(sign_straight_through(u))


def build_head(in_dim, cfg, codebook):
    """The hash layer; in training its output carries the classifier's logits of sign(u) (straight-through)."""
    return TrainExtrasHead(LinearHead(in_dim, cfg["bit"]).fc, _logits,
                           classifier=torch_linear(cfg["bit"], cfg["num_labels"], bias=False))


class GreedyHashLoss(HashLoss):
    """CE(W·sign(u), first label) + α·mean | |u| − 1 |³, where the classifier W sees the binary code and
    its gradient reaches u unchanged (straight-through). DeepHash-pytorch `GreedyHash.py` GreedyHashLoss."""

    def __init__(self, bit, alpha=0.1):
        super().__init__()
        self.bit, self.alpha = bit, alpha

    def loss(self, out, labels, indices=None):
        u, logits = split_extras(out, self.bit)
        return F.cross_entropy(logits, paddle.argmax(labels, axis=1)) + self.alpha * cubic_penalty(u)


register(Method(
    name="greedyhash",
    summary="GreedyHash (NeurIPS 2018): sign forward, straight-through backward, CE on the binary codes",
    build_head=build_head,
    build_loss=lambda cfg, head, num_train, gather=None: GreedyHashLoss(cfg["bit"], alpha=cfg["alpha"]),
    recipe=Recipe(
        rules=(*deephash_rules("GreedyHash.py", optimizer="sgd", lr=1e-3, weight_decay=5e-4, epochs=200,
                               batch_size=64, lr_step=30, lr_gamma=0.1, alpha=0.1),
               Rule(dict(dataset="imagenet"), dict(alpha=1.0, lr_step=80),
                    "official code: DeepHash-pytorch GreedyHash.py get_config (imagenet)")),
        scratch=dict(lr=1e-2, batch_size=32),
    ),
    options=(Option("alpha", float, "DSH/DSHSD/GreedyHash: weight α of the regulariser"),),
))
