"""Query-by-image search over a database list: a model (a checkpoint in dygraph, or an exported model
in one of the registered runtimes), the database codes (cached in `database_code_<bit>.npy`, rebuilt
when the weights, the list, the image root or the preprocessing change), and the retrieval engine.

    searcher = open_search(pretrained=..., model_dir=..., runtime=..., save_path=...)  # predict.py, the service
    code, hits = searcher.search(pil_image, k)  # hits: [Hit(rank, distance, id, path, labels)]
"""
import glob
import json
import os
from dataclasses import dataclass

import numpy as np

from utils.retrieval import binarize
from utils.code_cache import cache_paths, load_codes, make_fingerprint, save_codes
from utils.errors import UserError
from utils.data.lists import read_list
from utils.rundir import RunDir


@dataclass(frozen=True)
class Hit:
    """One search result."""

    rank: int  # position in the results, 1 = closest
    distance: int  # Hamming distance to the query
    id: int  # the item: its position in the database list, or an index's stable item id (utils.index)
    path: str  # the image file (image root joined with the list's path)
    labels: list  # the label indices of the database image
    stored: str = None  # an index's item: its path as the index stores it (relative to its image root)


@dataclass
class Model:
    """What a search needs of a model, whatever runs it."""

    encoder: object  # .run(batch) -> continuous codes
    preprocess: object  # utils.data.transforms.Preprocess
    bit: int
    weights_fingerprint: str  # of what the codes depend on (runtimes.codes_fingerprint), keys the code cache
    source: str  # the checkpoint or model directory, for messages
    trained_on: dict  # dataset / data_path / list_dir of training (defaults for the database)


def find_checkpoint(save_path, bit=None):
    """The checkpoint training left: `<save_path>/best.pdparams`, else the one run under `<save_path>/*/`
    (whose run.json has `bit`, when given)."""
    direct = RunDir(save_path).best
    candidates = [direct] if os.path.isfile(direct) else \
        sorted(glob.glob(os.path.join(save_path, "*", RunDir.BEST)))
    matching = []
    for path in candidates:
        try:
            with open(RunDir(os.path.dirname(path)).run_json, encoding="utf-8") as f:
                run_bit = json.load(f).get("bit")
        except (OSError, ValueError):
            run_bit = None
        if bit is None or run_bit in (None, bit):
            matching.append(path)
    if len(matching) == 1:
        return matching[0]
    what = f"{bit}-bit checkpoint" if bit else "checkpoint"
    if not matching:
        raise UserError(f"no {what} found in --save_path {save_path} (looked for {RunDir.BEST} there and "
                        f"in its sub-folders); train one (main_single_gpu.py --output {save_path}) "
                        "or pass --pretrained CKPT / --model-dir DIR")
    raise UserError(f"several {what}s under --save_path {save_path}: {', '.join(matching)}; "
                    "choose one with --pretrained" + ("" if bit else " or --bit"))


def load_model(pretrained=None, model_dir=None, runtime="paddle", use_gpu=False):
    """A Model from a checkpoint (dygraph) or from an export_model.py directory."""
    from utils import deploy
    from utils.deploy.runtimes import codes_fingerprint, open_exported

    if model_dir:
        meta = deploy.read_inference_yml(model_dir)
        encoder = open_exported(model_dir, runtime, use_gpu)
        fingerprint = codes_fingerprint(runtime, model_dir, meta["weights_fingerprint"])
        return Model(encoder, meta["preprocess_obj"], int(meta["model"]["bit"]), fingerprint, model_dir,
                     meta.get("trained_on") or {"dataset": meta["model"].get("dataset")})
    encoder = deploy.DygraphEncoder(pretrained, "--pretrained", use_gpu)
    cfg = encoder.cfg
    trained_on = {k: cfg.get(k) for k in ("dataset", "data_path", "list_dir")}
    return Model(encoder, encoder.preprocess, encoder.bit, encoder.weights_fingerprint, pretrained, trained_on)


class Database:
    """The database list, its image root, and its codes (from the cache or freshly encoded)."""

    def __init__(self, list_file, data_path, allow_absolute=False):
        if not os.path.isdir(data_path):
            raise UserError(f"--data_path {data_path}: directory not found; point it at the image root of {list_file}")
        self.list = read_list(list_file, allow_absolute=allow_absolute)
        self.data_path = data_path
        self.codes = None  # ±1 int8 (n_kept, bit)
        self.indices = None  # positions in the list of the rows of `codes`
        self.cache_file = None

    def path(self, i):
        return os.path.join(self.data_path, self.list.paths[i])

    def load_or_encode(self, model, cache_dir, batch_size=32, skip_bad=False, log=print):
        """Use `<cache_dir>/database_code_<bit>.npy` when it matches the model, list, image root and
        preprocessing; otherwise encode the database and rewrite the cache (saying why). Returns True
        when the cache was rebuilt."""
        from utils.deploy.encoders import encode_images

        fp = make_fingerprint(model.weights_fingerprint, self.list.list_file, self.data_path,
                              model.preprocess.to_dict())
        codes, indices, reason = load_codes(cache_dir, model.bit, fp)
        self.cache_file = cache_paths(cache_dir, model.bit)[0]
        if codes is not None:
            log(f"----- Load code of database from {self.cache_file}")
            self.codes, self.indices = codes, indices
            return False
        log(f"----- Encoding the database ({len(self.list)} images): {reason}")
        bad = []
        paths = [self.path(i) for i in range(len(self.list))]
        raw, kept = encode_images(model.encoder, paths, model.preprocess, batch_size,
                                  on_error=(lambda p, r: bad.append((p, r))) if skip_bad else None)
        if bad:
            log(f"----- skipped {len(bad)} unreadable database images (first: {bad[0][0]}: {bad[0][1]})")
        position = {p: i for i, p in enumerate(paths)}
        self.indices = np.array([position[p] for p in kept], dtype=np.int64)
        self.codes = binarize(raw)
        save_codes(cache_dir, model.bit, self.codes, fp, self.indices)
        log(f"----- Save code of database in {self.cache_file}")
        return True


def resolve_database(model, dataset=None, data_path=None, list_dir=None):
    """(database list file, image root): flags first, then what the model was trained on, then the
    defaults data/<dataset>/database.txt and datasets/<dataset>."""
    trained = model.trained_on or {}
    dataset = dataset or trained.get("dataset") or "coco"
    same = dataset == trained.get("dataset")
    list_dir = list_dir or (trained.get("list_dir") if same else None) or os.path.join("data", dataset)
    data_path = data_path or (trained.get("data_path") if same else None) or os.path.join("datasets", dataset)
    return os.path.join(list_dir, "database.txt"), data_path


class Searcher:
    """Encode a query image and rank the database by Hamming distance (ties by list order)."""

    def __init__(self, model, database):
        from utils.retrieval import HammingIndex

        if database.codes.shape[1] != model.bit:
            raise UserError(f"{database.cache_file}: codes have {database.codes.shape[1]} bits, the model {model.bit}")
        self.model, self.database = model, database
        self.index = HammingIndex(database.codes)
        self._radius = None  # utils.retrieval.radius.RadiusIndex, built on the first radius search

    def encode(self, images):
        """PIL images → ±1 int8 codes."""
        batch = np.stack([self.model.preprocess(img) for img in images])
        return binarize(self.model.encoder.run(batch))

    def search(self, image, k):
        """→ (code ±1 (bit,), [Hit], closest first)"""
        code = self.encode([image])
        dist, idx = self.index.search(code, k)
        return code[0], self._hits(dist[0], idx[0])

    def search_radius(self, image, radius, max_results=None):
        """→ (code ±1 (bit,), [Hit] of every database image within Hamming distance `radius`, by (distance,
        list order), at most `max_results`; RadiusHits with the total, whether capped, the algorithm)."""
        from utils.retrieval.radius import RadiusIndex

        if self._radius is None:
            self._radius = RadiusIndex(self.database.codes)
        code = self.encode([image])
        found = self._radius.search(code, radius, max_results)[0]
        return code[0], self._hits(found.distances, found.indices), found

    def _hits(self, dist, idx):
        hits = []
        for rank, (d, j) in enumerate(zip(dist, idx), start=1):
            pos = int(self.database.indices[j])
            labels = [int(c) for c in np.flatnonzero(self.database.list.labels[pos])]
            hits.append(Hit(rank, int(d), pos, self.database.path(pos), labels))
        return hits


def open_search(pretrained=None, model_dir=None, runtime="paddle", use_gpu=False, bit=None, save_path="./output",
                dataset=None, data_path=None, list_dir=None, batch_size=32, skip_bad=False,
                model_line="----- Model: {source} ({bit} bits)", log=print):
    """The start-up predict.py and the service share: the model (`model_dir` in `runtime`, else the
    checkpoint `pretrained`, else the one training left in `save_path`, see find_checkpoint), checked
    against `bit` when given and announced with `model_line`; the database (flags, else what the model
    was trained on) and its codes (the cache in `save_path`, or encoded now). An empty database (every
    image unreadable and skipped) is an error. → a Searcher."""
    pretrained = None if model_dir else (pretrained or find_checkpoint(save_path, bit))
    model = load_model(pretrained, model_dir, runtime, use_gpu)
    if bit is not None and model.bit != bit:
        raise UserError(f"--bit {bit} but {model.source} makes {model.bit}-bit codes; pass --bit {model.bit}")
    log(model_line.format(source=model.source, bit=model.bit))
    list_file, data_path = resolve_database(model, dataset, data_path, list_dir)
    database = Database(list_file, data_path)
    database.load_or_encode(model, save_path, batch_size, skip_bad, log=log)
    if not len(database.codes):
        raise UserError(f"{list_file}: no database image could be encoded")
    return Searcher(model, database)
