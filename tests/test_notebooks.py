"""Every notebook in notebooks/ is stored without outputs, and runs top to bottom in a fresh kernel (this Python's, so
a clean CI machine needs nothing registered; one torch thread) with its outputs cleared first, each cell within its
stated time budget (the cell's metadata `fgviz.budget_s`, else the notebook's). It must draw a figure in every
section and for every method. Nothing is written into the repository: the executed copy lives in memory."""

from __future__ import annotations

import json
import re
import sys
import time
from datetime import datetime
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError

from fgviz.methods import METHODS

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
KERNEL = "fgviz-test-python"


def test_there_is_a_notebook() -> None:
    assert NOTEBOOKS, "notebooks/ holds no notebook"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"cell {i} stores outputs"
            assert "execution" not in cell.metadata, f"cell {i} stores timings"
        assert "attachments" not in cell, f"cell {i} stores attachments"
    budget = nb.metadata.get("fgviz", {}).get("budget_s")
    assert isinstance(budget, int | float) and budget > 0, "the notebook states no default cell budget"


def budget_of(nb: nbformat.NotebookNode):
    default = float(nb.metadata["fgviz"]["budget_s"])
    return lambda cell: float(cell.metadata.get("fgviz", {}).get("budget_s", default))


def kernel_manager(tmp: Path) -> AsyncKernelManager:
    """A kernel of this very interpreter (the test's virtual environment), from a kernel spec in `tmp`."""
    spec = tmp / "kernels" / KERNEL
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "fgviz test", "language": "python"}))
    specs = KernelSpecManager(kernel_dirs=[str(spec.parent)])
    return AsyncKernelManager(kernel_name=KERNEL, kernel_spec_manager=specs)


def seconds(cell: nbformat.NotebookNode) -> float:
    t = cell.metadata["execution"]
    start, end = (datetime.fromisoformat(t[k].replace("Z", "+00:00")) for k in ("iopub.execute_input",
                                                                               "shell.execute_reply"))
    return (end - start).total_seconds()


def figures(cell: nbformat.NotebookNode) -> list[str]:
    """The HTML of every figure a code cell displayed (an image inside a rich output)."""
    out = []
    for o in cell.get("outputs", []):
        data = o.get("data", {})
        if "image/png" in data or "data:image/png;base64," in data.get("text/html", ""):
            out.append(data.get("text/html", ""))
    return out


@pytest.fixture
def kernel_env(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.delenv("PYTHONPATH", raising=False)  # the notebook's first cell finds the checkout itself
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # one torch thread, as the other subprocess tests: a CPU shared with
    # other jobs makes two spinning threads per process many times slower, not the notebook
    return tmp_path


def run(nb: nbformat.NotebookNode, cwd: Path, tmp: Path) -> tuple[float, dict[int, float]]:
    """Execute `nb` (in place) from cleared outputs with each cell's budget as its timeout; fails the test on a cell
    over its budget. Returns the total seconds and each code cell's."""
    for cell in nb.cells:  # run from cleared outputs, whatever the file holds
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    budget = budget_of(nb)
    client = NotebookClient(nb, km=kernel_manager(tmp), timeout_func=budget, record_timing=True,
                            resources={"metadata": {"path": str(cwd)}}, allow_errors=False)
    start = time.monotonic()
    try:
        client.execute()
    except CellTimeoutError as exc:
        pytest.fail(f"a cell ran past its budget: {exc}")
    total = time.monotonic() - start
    took = {i: seconds(c) for i, c in enumerate(nb.cells) if c.cell_type == "code"}
    slow = [f"cell {i}: {t:.1f} s > {budget(nb.cells[i]):g} s" for i, t in took.items() if t > budget(nb.cells[i])]
    if slow:
        pytest.fail(f"cells over their budget: {slow}")
    return total, took


def test_the_runner_fails_a_cell_over_its_budget_and_an_error(kernel_env: Path) -> None:
    """The two ways the notebook test fails: a cell slower than its stated budget, a cell that raises."""
    slow = nbformat.v4.new_notebook(metadata={"fgviz": {"budget_s": 30}}, cells=[
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell("import time\ntime.sleep(5)", metadata={"fgviz": {"budget_s": 1}})])
    with pytest.raises(pytest.fail.Exception, match="budget"):
        run(slow, kernel_env, kernel_env / "a")
    broken = nbformat.v4.new_notebook(metadata={"fgviz": {"budget_s": 30}},
                                      cells=[nbformat.v4.new_code_cell("raise ValueError('on purpose')")])
    with pytest.raises(CellExecutionError, match="on purpose"):
        run(broken, kernel_env, kernel_env / "b")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_within_its_budgets_and_draws_every_section_and_method(path: Path, kernel_env: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    total, took = run(nb, path.parent, kernel_env)
    budget = budget_of(nb)
    print(f"\n{path.name}: {total:.1f} s in all, kernel start included; per code cell (s, budget):",
          ", ".join(f"{i}: {t:.1f}/{budget(nb.cells[i]):g}" for i, t in took.items()))

    sections: dict[str, list[str]] = {}
    current = None
    for cell in nb.cells:
        heading = re.match(r"##\s+(\d+\..*)", cell.source) if cell.cell_type == "markdown" else None
        if heading:
            current = heading.group(1)
            sections[current] = []
        elif cell.cell_type == "code" and current is not None:
            sections[current] += figures(cell)
    assert sections, f"{path.name} has no numbered sections"
    bare = [s for s, figs in sections.items() if not figs]
    assert not bare, f"sections without a figure: {bare}"
    drawn = " ".join(f for figs in sections.values() for f in figs)
    missing = [m.title for m in METHODS.values() if f"{m.title}:" not in drawn and f"{m.title} (" not in drawn]
    assert not missing, f"no figure of {missing}"
