"""The training CLI: a few steps of each method, under torchrun with 2 CPU processes, and exact resumption."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fgviz.methods import METHODS
from fgviz.training.recipe import Recipe, lr_at
from fgviz.training.train import main
from fgviz.weights.hub import load_folder

ROOT = Path(__file__).resolve().parent.parent


def _run(method: str, out: Path, *extra: str) -> None:
    main(["--method", method, "--data", "synth-birds", "--preset", "tiny", "--out", str(out), "--quiet",
          "--threads", "1", *extra])


@pytest.mark.parametrize("method", ["transfg", "rams_trans", "tasn", "vit"])
def test_few_steps_write_a_loadable_model_with_a_card(method, tmp_path):
    _run(method, tmp_path)
    log = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 7))
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in log)
    assert "eval_acc" in log[2] and "eval_acc" in log[5]
    model = load_folder(tmp_path)
    assert model.method == method and model.config.num_classes == 16
    prov = json.loads((tmp_path / "config.json").read_text())["provenance"]
    assert prov["command"].startswith("python -m fgviz.train --method " + method)
    assert 0.0 <= prov["metrics"]["eval_accuracy"]["value"] <= 1.0
    assert "eval_accuracy" in (tmp_path / "README.md").read_text()


@pytest.mark.parametrize("method", ["transfg", "tasn"])
def test_resumed_run_matches_uninterrupted_run(method, tmp_path):
    _run(method, tmp_path / "straight")
    _run(method, tmp_path / "resumed", "--stop-after", "3")
    assert not (tmp_path / "resumed" / "model.safetensors").exists()
    _run(method, tmp_path / "resumed", "--resume")
    a = load_file(str(tmp_path / "straight" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    logs = [(tmp_path / d / "metrics.jsonl").read_text().splitlines() for d in ("straight", "resumed")]
    strip = lambda lines: [{k: v for k, v in json.loads(x).items() if k != "time_s"} for x in lines]  # noqa: E731
    assert strip(logs[0]) == strip(logs[1])
    # the clock continues across the resume: step 4 is not timed from zero, and the card counts the whole run
    times = [json.loads(x)["time_s"] for x in logs[1]]
    assert times[3] >= times[2] and times == sorted(times)
    config = json.loads((tmp_path / "resumed" / "config.json").read_text())
    assert config["provenance"]["train_time_s"] >= times[2]


def test_torchrun_two_cpu_processes(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "fgviz.training.train", "--method", "transfg", "--data", "synth-cars", "--preset", "tiny",
           "--out", str(tmp_path), "--quiet"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert load_folder(tmp_path).config.num_classes == 16
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 6  # rank 0 logs once per step


def test_schedule_warmup_then_cosine_and_steps():
    r = Recipe(warmup_steps=10, steps=110)
    assert lr_at(0, r) == pytest.approx(0.1) and lr_at(9, r) == pytest.approx(1.0)
    assert lr_at(60, r) == pytest.approx(0.5) and lr_at(110, r) == pytest.approx(0.0)
    s = Recipe(warmup_steps=0, steps=300, schedule="step")
    assert [lr_at(i, s) for i in (0, 99, 100, 199, 200)] == pytest.approx([1, 1, 0.1, 0.1, 0.01])


def test_real_dataset_layout_trains(tmp_path):
    """The CUB-200-2011 reader feeds the training loop (files exported in the real layout by fgviz.data)."""
    from fgviz.data.export import export

    export("birds", 32, tmp_path / "cub", size=40, seed=3, layout="cub")
    main(["--method", "transfg", "--data", "cub", "--data-dir", str(tmp_path / "cub"), "--preset", "tiny",
          "--out", str(tmp_path / "run"), "--quiet", "--threads", "1", "--steps", "2", "--eval-every", "2"])
    model = load_folder(tmp_path / "run")
    assert model.config.num_classes == 16
    assert json.loads((tmp_path / "run" / "config.json").read_text())["provenance"]["dataset"] == "cub"


@pytest.mark.parametrize(("kind", "methods"), [("vit", ("transfg", "rams_trans", "vit")), ("resnet", ("tasn",))])
def test_pretrained_backbone_initialises_every_method_that_shares_it(kind, methods, tmp_path):
    """`--pretrain` writes a timm-layout checkpoint (rebuilt by timm from its config alone) on a seed range of its
    own; `--init <folder>` copies its trunk into each method, and the card says where the initialisation came from."""
    from fgviz.training.pretrain import PRETRAIN_SEED
    from fgviz.weights.timm_backbones import build_timm_model, read_timm_folder

    pre = tmp_path / f"pretrain-{kind}"
    main(["--pretrain", kind, "--preset", "tiny", "--out", str(pre), "--quiet", "--threads", "1"])
    config = json.loads((pre / "config.json").read_text())
    assert config["num_classes"] == 32  # every class of both domains
    assert config["fgviz_pretraining"]["recipe"]["seed"] == PRETRAIN_SEED
    assert PRETRAIN_SEED not in (0, 10_000, 424242)  # fine-tuning streams (recipe seed, + 10000) and evaluation
    src = build_timm_model(read_timm_folder(pre))  # strict load into the architecture timm builds
    for method in methods:
        _run(method, tmp_path / method, "--init", str(pre), "--steps", "1", "--eval-every", "1", "--lr", "1e-12",
             "--warmup-steps", "1")
        model = load_folder(tmp_path / method)
        fresh = type(model)(model.config, model.pretrained_cfg)
        left = set(METHODS[method].init_from_timm(fresh, src))  # what the method's own init leaves (heads, ...)
        copied = [k for k, v in fresh.state_dict().items() if k not in left and v.is_floating_point()
                  and "running_" not in k]  # batch statistics move in the training step
        assert len(copied) > len(left)
        own = model.state_dict()
        for k in copied:  # an lr of 1e-12 for one step: the weights are the pretrained ones
            torch.testing.assert_close(own[k].float(), fresh.state_dict()[k].float(), atol=1e-6, rtol=0,
                                       msg=f"{method} {k}")
        prov = json.loads((tmp_path / method / "config.json").read_text())["provenance"]
        assert prov["init"]["source"] == str(pre)
        assert prov["init"]["pretraining"][0]["task"].startswith("fgviz synthetic birds+cars, 32 classes")
        assert prov["data_version"] == 2


def test_data_version_reaches_the_stream_and_the_card(tmp_path):
    from fgviz.data import synthetic
    from fgviz.training.evaluate import data_version

    _run("tasn", tmp_path, "--data-version", "1")
    model = load_folder(tmp_path)
    assert data_version(model) == 1
    model.provenance.pop("data_version")
    assert data_version(model) == 1  # cards from before version 2 mean version 1
    images, labels = synthetic.make_batch("birds", range(2), 0, (48, 48), 1)
    from fgviz.training.train import SyntheticStream

    got, got_labels = SyntheticStream("birds", (48, 48), 0, 1).batch(0, 2, 0, 1)
    assert (got == images).all() and (got_labels == labels).all()
