"""The writes of an index, each one catalogue transaction around its store's part (utils.index.store:
the order of the steps and their crash points). Used by the facade (`Index`), generic over the backends.
"""
import sqlite3

import numpy as np

from utils.errors import UserError
from utils.index.catalogue import Catalogue
from utils.index.store import crash_point


def add(catalogue, store, packed, keys, labels, hashes, replaces=(), delta=False, merge_fanout=8, where=""):
    """Append items (packed codes, stored paths, labels, content hashes) with new consecutive ids;
    `replaces`: ids tombstoned in the same commit. → the new ids."""
    n = len(keys)
    if n == 0:
        return np.zeros(0, np.int64)
    token = None
    try:
        with catalogue.transaction() as db:  # holds the write lock: ids cannot collide
            store.recover(db)
            first = int(Catalogue.read(db, "next_id", 0))
            ids = np.arange(first, first + n, dtype=np.int64)
            token = store.write(ids, packed, db, delta)
            crash_point("add:stored")
            if replaces:
                Catalogue.tombstone(db, replaces)
            Catalogue.insert_items(db, zip(ids, keys, labels, hashes))
            Catalogue.put(db, "next_id", first + n)
            store.commit(db, token)
    except BaseException as exc:
        if token is not None:
            store.abandon(token)
        if isinstance(exc, sqlite3.IntegrityError):
            raise UserError(f"--index {where}: a path is already in the index ({exc}); "
                            "remove it first or use scripts/index.py add, which skips known images")
        raise
    store.after_commit(token)
    crash_point("add:committed")
    if replaces:
        store.delete([int(i) for i in replaces])
    store.merge_small(merge_fanout)
    return ids


def remove(catalogue, store, targets):
    """Tombstone the items `targets` (ids) → those this call removed (another process may have removed
    some meanwhile: those are not ours to report)."""
    if not targets:
        return []
    with catalogue.transaction() as db:
        store.recover(db)
        targets = Catalogue.tombstone(db, targets)
    crash_point("remove:committed")
    store.delete(targets)
    crash_point("remove:applied")
    return targets


def recovered(catalogue, store):
    """Let the store clear what a crashed write left, under the write lock."""
    with catalogue.transaction() as db:
        store.recover(db)
