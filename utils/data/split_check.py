"""The split invariants every list builder checks before it writes (scripts/build_lists.py,
scripts/build_coco_lists.py, scripts/build_cifar10_lists.py): queries and database are disjoint, and
the training images are all in the database (train ⊆ database) or, for protocols that exclude them,
none is. No Paddle here."""
from utils.errors import UserError


def check_split(train, database, test, train_in_database=True):
    """Paths (or any hashable ids) of the three lists → one line with the counts; UserError naming the
    first offending item when an invariant fails."""
    q, d, t = set(test), set(database), set(train)
    for name, items, unique in (("train", train, t), ("database", database, d), ("test", test, q)):
        if len(unique) != len(items):
            raise UserError(f"{name}.txt would list {len(items) - len(unique)} image(s) twice")
    both = q & d
    if both:
        raise UserError(f"test.txt and database.txt would share {len(both)} image(s) (e.g. {sorted(both)[0]}): "
                        "queries must not be in the database")
    if train_in_database:
        out = t - d
        if out:
            raise UserError(f"{len(out)} training image(s) are not in database.txt (e.g. {sorted(out)[0]}): "
                            "this protocol draws train.txt from the database")
        rule = f"train ⊆ database ({len(t)} of {len(d)})"
    else:
        inside = t & d
        if inside:
            raise UserError(f"{len(inside)} training image(s) are also in database.txt (e.g. {sorted(inside)[0]}): "
                            "this protocol keeps the training images out of the database")
        rule = f"train ∩ database = ∅ ({len(t)} train, {len(d)} database)"
    in_queries = t & q
    return (f"checked: queries ∩ database = ∅ ({len(q)} queries, {len(d)} database), {rule}"
            + (f", {len(in_queries)} training image(s) also queries" if in_queries else ", train ∩ queries = ∅"))
