"""The papers' tables, so that our runs can be printed next to them (`scripts/compare_runs.py --paper NAME`)
and their grid trained by `scripts/reproduce.sh NAME DATASET`.

    table = PAPER_TABLES["orthohash-table1"]
    table.grid("coco")                 # [GridCell(row="HashNet", method="hashnet", bit=16, flags=()), ...]
    table.row_of("orthohash", cfg)     # "OrthoCos+BN" (cfg["loss"] == "cos"), "OrthoArc+BN" for "arc"
    compare(table, runs)               # [Comparison(row, dataset, bit, paper, ours, run_dir)]

Tables (values copied from the seed documents of this project, which quote the papers):
- `orthohash-table1`: Hoe et al., "One Loss for All: Deep Hashing with a Single Cosine Similarity based
  Learning Objective", NeurIPS 2021, Table 1 — 14 methods × 16/32/64/128 bits on ImageNet-100 (mAP@1000),
  NUS-WIDE (mAP@5000) and MS COCO (mAP@5000), all run by the authors (kamwoh/orthohash). The rows we train
  are HashNet, GreedyHash, DPN, CSQ, OrthoCos+BN (our `orthohash`, `--loss cos`) and OrthoArc+BN
  (`--loss arc`); DTSH, SDH-C, JMLH, CE, CE+BN, CE+Bihalf and OrthoCos+Bihalf are printed for reference
  only (no method of ours is the same model).
- `hashnet-coco`: paddle_hashnet's README §2 — HashNet on MS COCO (mAP@5000) at 16/32/48/64 bits, the
  paper's PyTorch numbers (Cao et al., ICCV 2017) and the Paddle reproduction.

A run matches a row by its method and, where a row is one setting of a method, its configuration (run.json).
No Paddle here.
"""
from dataclasses import dataclass, field

_OURS_DATASET = {"imagenet": "ImageNet-100", "nuswide": "NUS-WIDE", "coco": "MS COCO"}


@dataclass(frozen=True)
class GridCell:
    row: str
    method: str
    bit: int
    flags: tuple = ()  # extra training flags that make the method this row's setting


@dataclass(frozen=True)
class Comparison:
    row: str
    dataset: str
    bit: int
    paper: float
    ours: float
    run_dir: str

    @property
    def diff(self):
        return self.ours - self.paper


@dataclass(frozen=True)
class PaperTable:
    name: str
    title: str
    source: str
    metric: dict  # our dataset name -> the column's metric, e.g. "mAP@1000"
    bits: tuple
    values: dict  # row -> {our dataset: (value per bit, in `bits` order; None where the paper has none)}
    ours: dict = field(default_factory=dict)  # row -> (method, {cfg key: value}) for the rows we train

    def value(self, row, dataset, bit):
        per_bit = self.values.get(row, {}).get(dataset)
        if per_bit is None or bit not in self.bits:
            return None
        return per_bit[self.bits.index(bit)]

    def row_of(self, method, cfg=None):
        """The row a run of `method` with configuration `cfg` (its run.json) reproduces, or None. A row that
        fixes a cfg key matches only runs with that value; a key the cfg lacks counts as the row's value
        (the rows fix a method's default first: OrthoCos+BN before OrthoArc+BN)."""
        cfg = cfg or {}
        for row, (m, fixed) in self.ours.items():
            if m == method and all(cfg.get(k, v) == v for k, v in fixed.items()):
                return row
        return None

    def grid(self, dataset):
        """Every (row, bits) cell of `dataset`'s column that one of our methods trains."""
        if dataset not in self.metric:
            raise KeyError(dataset)
        cells = []
        for row, (method, fixed) in self.ours.items():
            flags = tuple(x for k, v in fixed.items() for x in (f"--{k.replace('_', '-')}", str(v)))
            for bit in self.bits:
                if self.value(row, dataset, bit) is not None:
                    cells.append(GridCell(row, method, bit, flags))
        return cells


def compare(table, runs):
    """runs: [(run dir, metrics dict, cfg dict or None)] → [Comparison] for each run that matches a row and
    a data set of the table, in table order (row, data set, bits). Runs that match nothing are left out."""
    out = []
    for run_dir, m, cfg in runs:
        dataset, bit = m.get("dataset"), m.get("bit")
        row = table.row_of(m.get("method"), cfg)
        if row is None or dataset not in table.metric:
            continue
        paper = table.value(row, dataset, bit)
        if paper is not None:
            out.append(Comparison(row, dataset, bit, paper, float(m["map"]), run_dir))
    rows, datasets = list(table.values), list(table.metric)
    out.sort(key=lambda c: (rows.index(c.row), datasets.index(c.dataset), c.bit))
    return out


def _t1(*cols):
    """Table 1's 12 numbers of a row → {dataset: 4 values}, columns ImageNet-100, NUS-WIDE, MS COCO."""
    assert len(cols) == 12
    return {"imagenet": cols[0:4], "nuswide": cols[4:8], "coco": cols[8:12]}


ORTHOHASH_TABLE1 = PaperTable(
    name="orthohash-table1",
    title="OrthoHash (NeurIPS 2021) Table 1",
    source="Hoe et al., NeurIPS 2021, Table 1 (all results run by the authors; kamwoh/orthohash)",
    metric={"imagenet": "mAP@1000", "nuswide": "mAP@5000", "coco": "mAP@5000"},
    bits=(16, 32, 64, 128),
    values={
        "HashNet": _t1(0.343, 0.480, 0.573, 0.612, 0.814, 0.831, 0.842, 0.847, 0.663, 0.693, 0.713, 0.727),
        "DTSH": _t1(0.442, 0.528, 0.581, 0.612, 0.816, 0.836, 0.851, 0.862, 0.699, 0.732, 0.753, 0.770),
        "SDH-C": _t1(0.584, 0.649, 0.664, 0.662, 0.763, 0.792, 0.816, 0.832, 0.671, 0.710, 0.733, 0.742),
        "GreedyHash": _t1(0.570, 0.639, 0.659, 0.659, 0.771, 0.797, 0.815, 0.832, 0.677, 0.722, 0.740, 0.746),
        "JMLH": _t1(0.517, 0.621, 0.662, 0.678, 0.791, 0.825, 0.836, 0.843, 0.689, 0.733, 0.758, 0.768),
        "DPN": _t1(0.592, 0.670, 0.703, 0.714, 0.783, 0.818, 0.838, 0.842, 0.668, 0.721, 0.752, 0.773),
        "CSQ": _t1(0.586, 0.666, 0.693, 0.700, 0.797, 0.824, 0.835, 0.839, 0.693, 0.762, 0.781, 0.789),
        "CE": _t1(0.350, 0.379, 0.406, 0.445, 0.744, 0.770, 0.796, 0.813, 0.602, 0.639, 0.658, 0.676),
        "CE+BN": _t1(0.533, 0.586, 0.612, 0.617, 0.801, 0.814, 0.823, 0.825, 0.697, 0.721, 0.729, 0.726),
        "CE+Bihalf": _t1(0.541, 0.630, 0.661, 0.662, 0.802, 0.825, 0.836, 0.839, 0.674, 0.728, 0.755, 0.757),
        "OrthoCos": _t1(0.583, 0.660, 0.702, 0.714, 0.795, 0.826, 0.842, 0.851, 0.690, 0.745, 0.772, 0.784),
        "OrthoCos+Bihalf": _t1(0.562, 0.656, 0.698, 0.711, 0.804, 0.834, 0.846, 0.852, 0.690, 0.746, 0.775, 0.782),
        "OrthoCos+BN": _t1(0.606, 0.679, 0.711, 0.717, 0.804, 0.836, 0.850, 0.856, 0.709, 0.762, 0.787, 0.797),
        "OrthoArc+BN": _t1(0.614, 0.681, 0.709, 0.714, 0.806, 0.833, 0.850, 0.856, 0.708, 0.762, 0.785, 0.794),
    },
    ours={
        "HashNet": ("hashnet", {}),
        "GreedyHash": ("greedyhash", {}),
        "DPN": ("dpn", {}),
        "CSQ": ("csq", {}),
        "OrthoCos+BN": ("orthohash", {"loss": "cos"}),
        "OrthoArc+BN": ("orthohash", {"loss": "arc"}),
    },
)

HASHNET_COCO = PaperTable(
    name="hashnet-coco",
    title="HashNet on MS COCO (paddle_hashnet README)",
    source="paddle_hashnet README §2: HashNet (Cao et al., ICCV 2017) paper results (PyTorch) and the "
           "PaddlePaddle reproduction, MS COCO mAP@5000",
    metric={"coco": "mAP@5000"},
    bits=(16, 32, 48, 64),
    values={
        "HashNet (paper, PyTorch)": {"coco": (0.622, 0.682, 0.715, 0.727)},
        "HashNet (paddle_hashnet)": {"coco": (0.619, 0.682, 0.715, 0.734)},
    },
    ours={"HashNet (paper, PyTorch)": ("hashnet", {})},
)

PAPER_TABLES = {t.name: t for t in (ORTHOHASH_TABLE1, HASHNET_COCO)}


def dataset_title(dataset):
    return _OURS_DATASET.get(dataset, dataset)


def format_comparison(table, comparisons, digits=3):
    """Markdown: one line per matched cell (row, data set, bits, the paper's value, ours, ours − paper),
    then the table's source. Empty comparisons say that no run matched."""
    lines = [f"{table.title} beside our runs ({table.source})", "",
             "| row | dataset | bits | paper | ours | ours − paper |", "|---|---|---:|---:|---:|---:|"]
    for c in comparisons:
        lines.append(f"| {c.row} | {dataset_title(c.dataset)} ({table.metric[c.dataset]}) | {c.bit} | "
                     f"{c.paper:.{digits}f} | {c.ours:.{digits}f} | {c.diff:+.{digits}f} |")
    if not comparisons:
        lines.append("| (no run matches a row and data set of this table) | | | | | |")
    return "\n".join(lines) + "\n"
