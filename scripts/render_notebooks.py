"""Execute the notebooks and write their rendered HTML copies to docs/ (the copies are committed; tests never write
them).

    python scripts/render_notebooks.py                     # every notebooks/*.ipynb -> docs/<name>.html
    python scripts/render_notebooks.py notebooks/tour.ipynb --out /tmp --image-scale 1

Each notebook runs top to bottom in a fresh kernel of this interpreter, from its directory, outputs cleared first,
as `tests/test_notebooks.py` runs it; the notebook file itself is left as it is (stored without outputs). The copy
keeps every figure as PNG at its on-screen size, but stores the pixels at `--image-scale` (default 2/3: the 384-px
panels as 256 px, the whole copy about a third of its full-resolution size); `--image-scale 1` keeps them all.
Prints the copy's size and how long the notebook ran.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbconvert import HTMLExporter
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
KERNEL = "fgviz-render-python"


def kernel_manager(tmp: Path) -> AsyncKernelManager:
    """A kernel of this very interpreter, from a kernel spec in `tmp` (nothing registered on the machine)."""
    spec = tmp / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "fgviz render", "language": "python"}))
    return AsyncKernelManager(kernel_name=KERNEL, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(tmp)]))


def shrink_images(html: str, scale: float) -> str:
    """Every embedded PNG stored at `scale` times its pixels (Lanczos), lossless; the page lays it out as before (the
    figures' <img> take their width from the style, not from the pixels)."""
    if scale >= 1:
        return html

    def one(match: re.Match) -> str:
        im = Image.open(io.BytesIO(base64.b64decode(match.group(1)))).convert("RGB")
        size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
        buf = io.BytesIO()
        im.resize(size, Image.LANCZOS).save(buf, "PNG", optimize=True)
        return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")

    return re.sub(r"data:image/png;base64,([A-Za-z0-9+/=]+)", one, html)


def render(path: Path, out_dir: Path, image_scale: float = 2 / 3, timeout: int = 600) -> Path:
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # the kernel's torch threads, as tests/test_notebooks.py runs it
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    with tempfile.TemporaryDirectory() as tmp:
        client = NotebookClient(nb, km=kernel_manager(Path(tmp)), timeout=timeout, record_timing=False,
                                resources={"metadata": {"path": str(path.parent)}}, allow_errors=False)
        start = time.monotonic()
        client.execute()
        took = time.monotonic() - start
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb, resources={"metadata": {"name": path.stem}})
    out = out_dir / f"{path.stem}.html"
    out.write_text(shrink_images(body, image_scale), encoding="utf-8")
    print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: executed in {took:.1f} s -> {out} "
          f"({out.stat().st_size / 1e6:.2f} MB)")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="*", type=Path, help="default: every notebooks/*.ipynb")
    ap.add_argument("--out", type=Path, default=ROOT / "docs", help="folder of the HTML copies (default docs/)")
    ap.add_argument("--image-scale", type=float, default=2 / 3, help="pixels stored per figure pixel (default 2/3)")
    args = ap.parse_args(argv)
    paths = [p.resolve() for p in args.notebooks] or sorted((ROOT / "notebooks").glob("*.ipynb"))
    args.out.mkdir(parents=True, exist_ok=True)
    for p in paths:
        render(p, args.out, args.image_scale)


if __name__ == "__main__":
    main()
