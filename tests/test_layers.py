"""The layers of the code, read from the imports (ast), one direction only:

    0  utils.errors, utils.fileio, utils.safe_pickle,  leaves
       utils.rundir, utils.registry, utils.cache_file,
       utils.stop_signal, utils.weight_files, utils.cli
    1  utils.retrieval, utils.report, utils.data       numpy / PIL libraries (data: also Paddle datasets)
       utils.index                                     the living index of codes (SQLite, segments, Milvus)
       utils.code_cache                                the cached database codes of a run (uses binarize)
    2  models                                          backbones, heads, losses, codebooks, checkpoints
    3  utils.train, utils.deploy                       training engine; export, runtimes, search
    4  entry points: *.py at the top, scripts/, deploy/, test_tipc/

A module may import its own package, any lower layer, or another package of its own layer as long as
the packages form no cycle; and no two modules (files) may import each other, directly or through
others, even inside one package (a package's `__init__.py` is a facade over its modules, which import
each other, never the facade that imports them). `utils.retrieval`, `utils.report` and `utils.index`
never import Paddle or models, not even indirectly.
"""
import ast
import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT

LAYERS = {
    "utils.errors": 0, "utils.fileio": 0, "utils.rundir": 0, "utils.registry": 0, "utils.safe_pickle": 0,
    "utils.cache_file": 0, "utils.stop_signal": 0, "utils.weight_files": 0, "utils.cli": 0,
    "utils.retrieval": 1, "utils.report": 1, "utils.data": 1, "utils.index": 1, "utils.code_cache": 1,
    "models": 2,
    "utils.train": 3, "utils.deploy": 3,
}
ENTRY = 4
SKIP_DIRS = {".git", ".venv", "output", "datasets", "tests", "__pycache__", "node_modules"}


def package_of(module):
    """The layer package a dotted module name belongs to, or None for third-party modules."""
    parts = module.split(".")
    for n in (2, 1):
        name = ".".join(parts[:n])
        if name in LAYERS:
            return name
    if parts[0] in ("utils", "models"):
        return parts[0]  # utils/__init__ itself
    return None


def module_name(path):
    rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
    return rel[:-len(".__init__")] if rel.endswith(".__init__") else rel


def project_files():
    for base, dirs, files in os.walk(ROOT):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for f in sorted(files):
            if f.endswith(".py"):
                yield os.path.join(base, f)


def imports_of(path):
    """Dotted names of the modules `path` imports (all of them, also those inside functions)."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, node.lineno))
            out += [(f"{node.module}.{a.name}", node.lineno) for a in node.names]  # from utils import retrieval
    return out


def edges():
    """(source package or ENTRY, target package, where) for every import between project packages."""
    for path in project_files():
        mod = module_name(path)
        src = package_of(mod) if mod.split(".")[0] in ("utils", "models") else "entry"
        for name, line in imports_of(path):
            dst = package_of(name)
            if dst and dst != src:
                yield src, dst, f"{os.path.relpath(path, ROOT)}:{line} imports {name}"


def layer(pkg):
    return ENTRY if pkg == "entry" else LAYERS.get(pkg, 0)


def test_every_project_package_has_a_layer():
    for path in project_files():
        mod = module_name(path)
        if mod.split(".")[0] in ("utils", "models") and mod not in ("utils", "models"):
            assert package_of(mod) in LAYERS, f"{mod}: put it in a layer package (or add the package to LAYERS)"


def test_no_import_goes_up_a_layer():
    bad = [where for src, dst, where in edges() if layer(dst) > layer(src)]
    assert not bad, "lower layer imports a higher one:\n" + "\n".join(bad)


def test_no_cycle_between_packages():
    graph = {}
    for src, dst, _ in edges():
        if src != "entry":
            graph.setdefault(src, set()).add(dst)

    def reach(start):
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    cycles = [p for p in graph if p in reach(p)]
    assert not cycles, f"import cycle through {cycles}"


def module_graph():
    """module -> {imported project module: line}: `from a.b import c` is an edge to the module a.b.c when
    that is a file, else to a.b (its __init__); imports inside functions count too."""
    mods = {module_name(p): p for p in project_files()}

    def resolve(name):
        while name:
            if name in mods:
                return name
            name = name.rpartition(".")[0]
        return None

    graph = {}
    for mod, path in mods.items():
        for name, line in imports_of(path):
            target = resolve(name)
            if target and target != mod:
                graph.setdefault(mod, {}).setdefault(target, f"{os.path.relpath(path, ROOT)}:{line}")
    return graph


def module_cycles(graph):
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_cycle_between_modules():
    graph = module_graph()
    cycles = module_cycles(graph)
    detail = ["; ".join(f"{graph[a][b]} imports {b}" for a in c for b in graph.get(a, {}) if b in c) for c in cycles]
    assert not cycles, "import cycle between modules:\n" + "\n".join(detail)


def test_the_module_cycle_checker_sees_a_cycle(tmp_path, monkeypatch):
    pkg = tmp_path / "utils" / "index"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("from utils.index.store import Store\n")
    (pkg / "store.py").write_text("def f():\n    from utils.index import helper\n")
    (pkg / "other.py").write_text("from utils.index.store import Store\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", str(tmp_path))
    assert module_cycles(module_graph()) == [["utils.index", "utils.index.store"]]


def test_the_checker_sees_a_violation(tmp_path, monkeypatch):
    """The checks above can fail: a retrieval module importing models is reported."""
    fake = tmp_path / "utils" / "retrieval"
    fake.mkdir(parents=True)
    (fake / "bad.py").write_text("from models import build_model\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", str(tmp_path))
    assert {(s, d) for s, d, _ in edges()} == {("utils.retrieval", "models")}
    with pytest.raises(AssertionError, match="lower layer imports a higher one"):
        test_no_import_goes_up_a_layer()


@pytest.mark.parametrize("module", ["utils.retrieval", "utils.report", "utils.code_cache", "utils.index",
                                    "utils.data.lists", "utils.data.transforms", "utils.safe_pickle",
                                    "utils.weight_files", "utils.cli", "utils.data.split", "utils.data.sources"])
def test_numpy_layers_do_not_load_paddle(module):
    code = (f"import sys, {module}; bad = [m for m in ('paddle', 'models', 'torch') if m in sys.modules]; "
            "print(','.join(bad)); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"importing {module} loaded {proc.stdout.strip()} {proc.stderr[-500:]}"


def test_package_init_files_are_facades():
    """A package's __init__.py holds a docstring, imports and __all__ only (and a warnings filter): no
    function, class or other statement (the implementation lives in modules named by concern)."""
    bad = []
    for path in project_files():
        if os.path.basename(path) != "__init__.py":
            continue
        tree = ast.parse(open(path, encoding="utf-8").read(), path)
        for i, node in enumerate(tree.body):
            if i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
                continue  # the docstring
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["__all__"]:
                continue
            if isinstance(node, ast.Expr) and ast.unparse(node).startswith("warnings.filterwarnings("):
                continue  # utils/__init__.py silences Paddle's import-time ccache warning for every entry point
            bad.append(f"{os.path.relpath(path, ROOT)}:{node.lineno} {type(node).__name__}")
    assert not bad, "package __init__.py beyond a facade:\n" + "\n".join(bad)
