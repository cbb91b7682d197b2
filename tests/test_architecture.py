"""The layout the README draws: dependencies point one way, no import cycle, no module over 600 lines.

Imports are read from the source (ast), function-level imports included: a lazy import is a dependency too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "fgviz"
# Lowest first: a module may import its own layer and the layers before it, never a later one.
LAYERS = ("core", "viz", "data", "methods", "weights", "training", "explorer", "")  # "": fgviz/*.py (the CLIs)
MAX_LINES = 600


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (PKG / parts[1]).is_dir()) else ""


def fgviz_imports(path: Path) -> set[str]:
    """fgviz modules `path` imports (module or function level), resolved to existing modules."""
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for n in names:
            if n.split(".")[0] == "fgviz":
                while n not in MODULES and "." in n:
                    n = n.rsplit(".", 1)[0]
                if n in MODULES and n != "fgviz":
                    out.add(n)
    return out


MODULES = {module_name(p): p for p in PKG.rglob("*.py")}
GRAPH = {m: fgviz_imports(p) for m, p in MODULES.items()}


def test_every_module_is_in_a_layer() -> None:
    assert {layer_of(m) for m in MODULES if m != "fgviz"} <= set(LAYERS)


def test_imports_point_down_the_layers() -> None:
    bad = []
    for m, deps in GRAPH.items():
        if m == "fgviz":
            continue
        rank = LAYERS.index(layer_of(m))
        bad += [f"{m} -> {d}" for d in deps if LAYERS.index(layer_of(d)) > rank]
    assert not bad, "imports from a lower layer to a higher one:\n" + "\n".join(bad)


def test_no_import_cycle() -> None:
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    cycles = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for d in sorted(GRAPH[m]):
            if d == m:
                continue  # a package importing its own submodules (from fgviz.methods.tasn import views)
            if state.get(d) == 1:
                cycles.append(" -> ".join([*stack[stack.index(d):], d]))
            elif d not in state:
                visit(d, [*stack, d])
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_checker_finds_a_cycle_and_an_upward_import(monkeypatch) -> None:
    """The two tests above can fail: a planted upward import and a planted cycle are reported."""
    planted = {**GRAPH, "fgviz.core.geometry": {*GRAPH["fgviz.core.geometry"], "fgviz.methods.base"},
               "fgviz.methods.base": {*GRAPH["fgviz.methods.base"], "fgviz.core.geometry"}}
    monkeypatch.setattr(__import__(__name__), "GRAPH", planted)
    with pytest.raises(AssertionError, match=r"fgviz\.core\.geometry -> fgviz\.methods\.base"):
        test_imports_point_down_the_layers()
    with pytest.raises(AssertionError, match="cycles"):
        test_no_import_cycle()


def test_no_gradio_in_fgviz_and_no_torch_in_viz() -> None:
    for m, p in MODULES.items():
        roots = {n.split(".")[0] for n in _all_imports(p)}
        assert "gradio" not in roots, m
        if layer_of(m) == "viz":
            assert "torch" not in roots, m


def _all_imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


@pytest.mark.parametrize("path", [*sorted(PKG.rglob("*.py")), ROOT / "app.py"], ids=lambda p: str(p.relative_to(ROOT)))
def test_module_size(path: Path) -> None:
    n = len(path.read_text().splitlines())
    assert n <= (300 if path.name == "app.py" and path.parent == ROOT else MAX_LINES), f"{path.name}: {n} lines"


def test_a_method_is_one_folder_plus_a_registry_line() -> None:
    """Nothing above the methods layer names a method: every method-specific behaviour comes through the seam."""
    from fgviz.methods import METHODS

    names = [f'"{m}"' for m in METHODS] + [f"'{m}'" for m in METHODS]
    offenders = []
    for m, p in MODULES.items():
        if LAYERS.index(layer_of(m)) <= LAYERS.index("methods") or m in ("fgviz.bench", "fgviz.bench_real"):
            continue  # fgviz.bench times the published models by name at their paper sizes
        # lines about transformers' model_type ("vit", "deit"...) name another library's models, not fgviz methods
        text = "\n".join(line for line in p.read_text().splitlines() if "model_type" not in line)
        offenders += [f"{m}: {n}" for n in names if n in text]
    text = (ROOT / "app.py").read_text()
    offenders += [f"app.py: {n}" for n in names if n in text]
    assert not offenders, "method names above the methods layer:\n" + "\n".join(offenders)


def test_every_public_name_resolves() -> None:
    """`fgviz.<name>` for every name in `fgviz.__all__` (lazy imports: a moved module breaks this, not a user)."""
    import fgviz

    for name in fgviz.__all__:
        assert getattr(fgviz, name) is not None, name


def test_a_new_method_needs_nothing_outside_its_folder_and_registry_line(monkeypatch, tmp_path) -> None:
    """A method added at runtime (a renamed copy of the ViT baseline, as a new folder would define it) gets its
    Overview column, model box and Internals tab, loads from a weights folder, explains, renders and exports: no
    layer above fgviz.methods needed a change."""
    import numpy as np

    from fgviz.explorer import layout
    from fgviz.explorer.export import figure_set
    from fgviz.explorer.session import Explorer
    from fgviz.explorer.ui import UI
    from fgviz.methods import METHODS, MODEL_CLASSES
    from fgviz.methods.vit import ViT, ViTMethod
    from fgviz.viz.panels import Style
    from fgviz.weights.format import save_model
    from tests.conftest import make_tiny

    class Toy(ViT):
        method = "toy"

    class ToyMethod(ViTMethod):
        name, title, model_class, overview_default = "toy", "Toy", Toy, True

    monkeypatch.setitem(METHODS, "toy", ToyMethod())  # the registry line
    monkeypatch.setitem(MODEL_CLASSES, "toy", Toy)
    vit = make_tiny("vit")
    folder = save_model(Toy(vit.config, vit.pretrained_cfg), tmp_path / "toy-model")

    names: set[str] = set()

    def walk(nodes):
        for n in nodes:
            names.add(n.name or "")
            walk(n.children)

    walk(layout.page({m: ["auto"] for m in METHODS}, {}, ("birds", "cars")))
    assert {"overview.toy.main", "spec.toy", "overview.toy.gallery", "steps.toy.gallery"} <= names
    from fgviz.weights.hub import WEIGHTS_DIR

    explorer = Explorer(device="cpu", allowed_roots=(WEIGHTS_DIR, tmp_path))
    ui = UI(explorer)
    try:
        image = np.random.default_rng(0).integers(0, 255, (80, 100, 3), np.uint8)
        res = ui.explain(image, "birds", {"toy": str(folder)}, ["toy", "tasn"])
        assert res.notes == {}
        assert res.keys["toy"].spec == str(folder)
        shown = ui.render(res.keys, res.notes, ["toy", "tasn"], "toy", Style())
        assert shown["overview.toy.main"].ndim == 3
        assert shown["overview.toy.col"]["visible"]
        assert "Toy" in shown["status"]
        assert shown["layers.rollout"] is not None  # an attention method: the Layers tab takes it
        fs = figure_set({m: explorer.get(k) for m, k in res.keys.items()})
        assert "overview/toy.png" in fs.images
    finally:
        ui.close()
