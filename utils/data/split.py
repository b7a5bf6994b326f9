"""The seeded stratified split of a hashing data set's label matrix: queries, database and training images
per class (scripts/build_lists.py's split; its --help text describes the flags).

    plan = Plan(query_fraction=0.1, train_fraction=0.5)            # or query_per_class / train_per_class
    test, train, database = split(labels, plan, seed=0, classes=names)   # sorted index arrays
    unseen = choose_unseen("2", names, seed=0)                     # open set: column indices kept out of train
    train, database, removed = hold_out(labels, train, database, unseen, plan.excludes_train, names)

Per class, as in the standard protocols (COCO, NUS-WIDE, CIFAR-10): `plan.queries(n)` queries of a class of
n images (a count, or a fraction rounded to the nearest whole image, at least one), the database holds
every image that is not a query, and `plan.training(rest)` training images are drawn from the database
(train ⊆ database), or with `excludes_train` kept out of it.

Multi-label stratification (greedy per-label quotas): every class j gets a quota (N, or F × the number of
images carrying j). Classes are served rarest first; each takes its not yet chosen images in seeded random
order, preferring images whose other labels are still under their quota and never taking one that would leave
some label with too few images for the next step. So every class gets at least its quota (exactly it, unless
its images always carry another label that forces more); per-class numbers count images carrying the label,
and a multi-label query counts for each of its labels. Training images are then drawn from the non-queries the
same way, with quotas from each class's non-query count. For single-label data this is a plain random draw
per class. A class that would end up without a query, a training image or a database image (e.g. a tag that
occurs in one image) is a UserError, never a silent empty class. The same labels, plan and seed give the same
indices on every machine (numpy's default_rng; tests/test_build_lists.py pins them).

numpy only: no Paddle, no images.
"""
from dataclasses import dataclass

import numpy as np

from utils.errors import UserError


def plural(n, word, many=None):
    """'1 image', '2 images' ('query' → 'queries' with many='queries')."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


@dataclass(frozen=True)
class Plan:
    """How many queries and training images a class gets (per-class counts or fractions)."""

    query_per_class: int = None
    query_fraction: float = None
    train_per_class: int = None
    train_fraction: float = None
    excludes_train: bool = False

    def __post_init__(self):
        if (self.query_per_class is None) == (self.query_fraction is None):
            raise ValueError("give exactly one of query_per_class and query_fraction")
        if (self.train_per_class is None) == (self.train_fraction is None):
            raise ValueError("give exactly one of train_per_class and train_fraction")

    def queries(self, n):
        if self.query_per_class is not None:
            return self.query_per_class
        return max(1, int(self.query_fraction * n + 0.5))

    def training(self, rest):
        if self.train_per_class is not None:
            return self.train_per_class
        return max(1, int(self.train_fraction * rest + 0.5))

    def rest_ok(self, rest):
        """Can `rest` non-query images of a class give its training images and a non-empty database?"""
        return rest >= 1 and self.training(rest) <= rest - (1 if self.excludes_train else 0)

    def ok(self, n):
        return self.rest_ok(n - self.queries(n))

    def min_images(self):
        n = 1
        while not self.ok(n):
            n += 1
        return n

    def min_rest(self):
        r = 1
        while not self.rest_ok(r):
            r += 1
        return r

    def describe(self, defaults=()):
        def flag(name, value):
            return f"--{name} {value}" + (" (default)" if name in defaults else "")

        q = (flag("query-per-class", self.query_per_class) if self.query_per_class is not None
             else flag("query-fraction", self.query_fraction))
        t = (flag("train-per-class", self.train_per_class) if self.train_per_class is not None
             else flag("train-fraction", self.train_fraction))
        return f"{q} and {t}" + (" with --database-excludes-train" if self.excludes_train else "")

    def breakdown(self, n):
        q = self.queries(n)
        t = self.training(n - q)
        qs = plural(q, "query", "queries")
        if self.excludes_train:
            return f"{qs}, {plural(t, 'training image')} and {n - q - t} for the database"
        return f"{qs} and a database of {n - q} holding the {plural(t, 'training image')}"


def check_class_sizes(classes, counts, plan, kind="class", defaults=()):
    """UserError naming the first class with fewer images than `plan` needs."""
    need = plan.min_images()
    for name, n in zip(classes, counts):
        if n < need:
            raise UserError(f"{kind} '{name}' has {plural(int(n), 'image')}; {plan.describe(defaults)} need at least "
                            f"{need} per class ({plan.breakdown(need)}); add images, lower the numbers, or pass "
                            "--drop-small-classes to leave it out")


def split(labels, plan, seed=0, classes=None, kind="class", defaults=()):
    """Seeded stratified split of a 0/1 label matrix (N × C): (test, train, database) sorted index arrays.

    Greedy per-label quotas, rarest class first (see the module docstring); single-label data gets an exact
    per-class random draw.
    """
    labels = np.asarray(labels, dtype=np.uint8)
    n, num_classes = labels.shape
    classes = list(classes) if classes is not None else [str(j) for j in range(num_classes)]
    counts = labels.sum(0).astype(np.int64)
    check_class_sizes(classes, counts, plan, kind, defaults)
    order = np.argsort(np.random.default_rng(seed).permutation(n), kind="stable")  # items in random order
    members = [order[labels[order, j] == 1].tolist() for j in range(num_classes)]
    item_labels = [np.flatnonzero(row).tolist() for row in labels]

    quota = [plan.queries(int(c)) for c in counts]
    cap = [int(c) - plan.min_rest() for c in counts]
    is_query, n_query = _greedy(members, item_labels, quota, cap, np.ones(n, bool), counts)
    for j in range(num_classes):
        if n_query[j] < quota[j]:
            raise UserError(f"{kind} '{classes[j]}': only {n_query[j]} of its {counts[j]} images can be queries, "
                            f"{plan.describe(defaults)} ask for {quota[j]}: they also carry labels that need "
                            "their images for training and the database; lower the numbers")
    rest = [int(c) - q for c, q in zip(counts, n_query)]
    quota = [plan.training(r) for r in rest]
    cap = [r - (1 if plan.excludes_train else 0) for r in rest]
    is_train, n_train = _greedy(members, item_labels, quota, cap, ~is_query, rest)
    for j in range(num_classes):
        if n_train[j] < quota[j]:
            what = "no training image (it would be a label unseen in training)" if n_train[j] == 0 else \
                f"only {n_train[j]} training images"
            raise UserError(f"{kind} '{classes[j]}' would get {what}; {plan.describe(defaults)} ask for "
                            f"{quota[j]} of its {rest[j]} non-queries, but they also carry labels that need "
                            "them in the database; lower the numbers")
    in_database = ~is_query & ~is_train if plan.excludes_train else ~is_query
    test, train, database = (np.flatnonzero(m) for m in (is_query, is_train, in_database))
    assert (labels[database].sum(0) > 0).all() and (labels[train].sum(0) > 0).all()
    return test, train, database


def _greedy(members, item_labels, quota, cap, available, counts):
    """Choose items so that class j has ≥ quota[j] (and never more than cap[j]) chosen items, rarest first."""
    chosen = np.zeros(len(item_labels), bool)
    count = [0] * len(members)
    for j in sorted(range(len(members)), key=lambda c: (counts[c], c)):
        if count[j] >= quota[j]:
            continue
        candidates = [i for i in members[j] if available[i]]
        for soft in (True, False):  # first only images whose labels all stay within quota, then within cap
            for i in candidates:
                if count[j] >= quota[j]:
                    break
                if chosen[i]:
                    continue
                labs = item_labels[i]
                if any(count[c] >= cap[c] for c in labs) or (soft and any(count[c] >= quota[c] for c in labs)):
                    continue
                chosen[i] = True
                for c in labs:
                    count[c] += 1
            if count[j] >= quota[j]:
                break
    return chosen, count


def choose_unseen(spec, classes, seed, kind="class"):
    """--unseen-classes: N (a seeded choice of N classes) or comma-separated names → sorted column indices."""
    if spec is None or str(spec).strip() == "":
        return []
    spec = str(spec).strip()
    if spec.isdigit():
        n = int(spec)
        if not 1 <= n < len(classes):
            raise UserError(f"--unseen-classes {n}: choose between 1 and {len(classes) - 1} of the "
                            f"{len(classes)} {kind}es (at least one must stay seen)")
        return sorted(int(j) for j in np.random.default_rng([seed, 1]).choice(len(classes), n, replace=False))
    names = [x.strip() for x in spec.split(",") if x.strip()]
    column = {c: j for j, c in enumerate(classes)}
    unknown = [x for x in names if x not in column]
    if unknown:
        raise UserError(f"--unseen-classes: no {kind} named {unknown[0]!r} (the {kind}es are "
                        f"{', '.join(classes[:10])}{' ...' if len(classes) > 10 else ''})")
    chosen = sorted({column[x] for x in names})
    if len(chosen) >= len(classes):
        raise UserError(f"--unseen-classes names all {len(classes)} {kind}es; at least one must stay seen")
    return chosen


def hold_out(labels, train, database, unseen, excludes_train, classes, kind="class"):
    """Remove every training image carrying an unseen class → (train, database, removed count)."""
    if not unseen:
        return train, database, 0
    held = labels[train][:, unseen].any(axis=1)
    removed = train[held]
    train = train[~held]
    if excludes_train:  # those images were only in train.txt: give them to the database
        database = np.sort(np.concatenate([database, removed]))
    seen = [j for j in range(labels.shape[1]) if j not in set(unseen)]
    empty = [classes[j] for j in seen if labels[train, j].sum() == 0]
    if empty:
        raise UserError(f"--unseen-classes: seen {kind} '{empty[0]}' has no training image left (its images all "
                        "carry an unseen class too); choose other unseen classes")
    return train, database, len(removed)
