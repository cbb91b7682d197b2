"""App-level benchmarks, run by `python -m fgviz.bench` in a subprocess (fgviz itself never imports gradio).

Measures, with the demo models from the registry and HF_HUB_OFFLINE=1:
- `python app.py` start to the first /explain answer;
- /explain end to end through gradio_client on distinct images (no cache hits), median and p95;
- the sum of the three methods' `explain` on the same images, in-process, for the ratio;
- Gradio's own floor: the same request (an image in; three 384-px PNGs and a JSON out, same queue settings, same
  raw inputs) against a server whose handler runs no model (`--floor-server`), i.e. what any /explain costs on top
  of its work, and /explain's median over the floor's (`floor_ratio`, target <= 1.5), both from the same run.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def p95(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(0.95 * (len(xs) - 1)))]


def floor_server(port: int) -> None:
    """A Gradio app with /explain's signature (image -> three 384-px PNGs + JSON) whose handler runs no model."""
    import gradio as gr
    import numpy as np

    import app

    views = [np.random.default_rng(i).integers(0, 256, (384, 384, 3), dtype=np.uint8) for i in range(3)]

    def explain(image, domain):
        return *views, {"domain": domain, "upload": str(image)}, {}

    with gr.Blocks() as demo:  # the app's components and event settings: inputs as sent, PNG image outputs
        image = app.COMPONENTS["upload"]()
        domain = gr.Radio(["birds", "cars"], value="birds")
        outs = [gr.Image(format="png") for _ in range(3)]
        numbers, keys = gr.JSON(), gr.State()
        gr.Button().click(explain, [image, domain], [*outs, numbers, keys], api_name="explain", preprocess=False)
    app.launch(demo, host="127.0.0.1", port=port)


def serve(argv: list[str], port: int) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, *argv, "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def connect(server: subprocess.Popen, port: int, t0: float):
    from gradio_client import Client

    while True:
        if server.poll() is not None:
            raise SystemExit(f"server exited with {server.returncode}")
        if time.perf_counter() - t0 > 120:
            raise SystemExit("server did not answer within 120 s")
        try:
            return Client(f"http://127.0.0.1:{port}/", verbose=False)
        except Exception:
            time.sleep(0.2)


def timed_requests(client, images: list[Path]) -> list[float]:
    from gradio_client import handle_file

    times = []
    for path in images:
        t = time.perf_counter()
        client.predict(handle_file(str(path)), "birds", api_name="/explain")
        times.append(time.perf_counter() - t)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=10)
    ap.add_argument("--floor-server", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.floor_server:
        floor_server(args.port)
        return
    from PIL import Image

    import fgviz
    from fgviz.data import synthetic

    tmp = Path(tempfile.mkdtemp(prefix="fgviz-bench-"))
    images = []
    for i in range(args.requests + 1):
        sample = synthetic.make_sample("birds", 1000 + i, seed=77, size=256)
        path = tmp / f"bird_{i}.png"
        Image.fromarray(sample.image).save(path)
        images.append(path)

    port = free_port()
    t0 = time.perf_counter()
    server = serve(["app.py", "--device", "cpu"], port)
    try:
        client = connect(server, port, t0)
        timed_requests(client, images[:1])
        startup = time.perf_counter() - t0
        e2e = timed_requests(client, images[1:])
    finally:
        server.terminate()
        server.wait(timeout=30)

    port = free_port()
    server = serve([__file__, "--floor-server"], port)
    try:
        client = connect(server, port, time.perf_counter())
        timed_requests(client, images[:1])  # warm-up
        floor = timed_requests(client, images[1:])
    finally:
        server.terminate()
        server.wait(timeout=30)

    models = [fgviz.load(f"{m}-birds-demo", device="cpu") for m in ("transfg", "rams_trans", "tasn")]
    sums = []
    for path in images[1:]:
        img = Image.open(path).convert("RGB")
        t = time.perf_counter()
        for m in models:
            m.explain(img)
        sums.append(time.perf_counter() - t)
    out = {"startup_s": startup,
           "explain_e2e": {"median": statistics.median(e2e), "p95": p95(e2e), "n": len(e2e),
                           "sum_explains": statistics.median(sums),
                           "ratio": statistics.median(e2e) / statistics.median(sums),
                           "floor_ratio": statistics.median(e2e) / statistics.median(floor),
                           "gradio_floor": {"median": statistics.median(floor), "p95": p95(floor)}}}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
