"""App-level benchmarks, run by `python -m fgviz.bench` in a subprocess (fgviz itself never imports gradio).

Measures, with the demo models from the registry and HF_HUB_OFFLINE=1:
- `python app.py` start to the first /explain answer;
- /explain end to end through gradio_client on distinct images (no cache hits), median and p95;
- the sum of the three methods' `explain` on the same images, in-process, for the ratio.
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=10)
    args = ap.parse_args()
    from gradio_client import Client, handle_file
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
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    server = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--device", "cpu"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = None
        while client is None:
            if server.poll() is not None:
                raise SystemExit(f"app.py exited with {server.returncode}")
            if time.perf_counter() - t0 > 120:
                raise SystemExit("app.py did not answer within 120 s")
            try:
                client = Client(f"http://127.0.0.1:{port}/", verbose=False)
            except Exception:
                time.sleep(0.2)
        client.predict(handle_file(str(images[0])), "birds", api_name="/explain")
        startup = time.perf_counter() - t0
        e2e = []
        for path in images[1:]:
            t = time.perf_counter()
            client.predict(handle_file(str(path)), "birds", api_name="/explain")
            e2e.append(time.perf_counter() - t)
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
                           "ratio": statistics.median(e2e) / statistics.median(sums)}}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
