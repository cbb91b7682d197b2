"""The fgviz checkpoint format: a folder (or Hub repo) with `config.json`, `model.safetensors` and a model card.

`config.json` (format 2)::

    {"fgviz_format": 2, "method": "<a key of fgviz.methods.METHODS>", "architecture": {...ModelConfig...},
     "pretrained_cfg": {"labels": [...], "mean": [...], "std": [...], "crop_pct": ...}, "provenance": {...}}

Format 1 (fgviz 0.1: one "config" object mixing architecture, labels/mean/std/crop and training knobs) still loads:
`read_config` upgrades it in memory (`upgrade_config`), and `python -m fgviz.weights.format FOLDER...` rewrites
folders in format 2.

Loading is safe and strict: weights are read from safetensors only (no pickle is ever unpickled), configs are
validated (known method, known argument names, sizes within bounds, the parameter count checked on the meta device)
before anything is allocated, and a missing or unexpected key, or a shape mismatch, is an error naming the key.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from fgviz.methods import METHODS, FineGrainedModel, ModelConfig, PretrainedCfg
from fgviz.methods.base import MAX_CLASSES, PRETRAINED_FIELDS

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
FORMAT_VERSION = 2
MAX_CONFIG_BYTES = 1 << 20  # a config.json is a few kB; refuse anything absurd before parsing
MAX_PARAMS = 1_000_000_000  # a config describing more parameters is refused before allocation (paper models: ~87M)
# Format 1 stored these training knobs beside the architecture; they are loss arguments now (the recipe keeps them).
FORMAT1_TRAINING_KNOBS = frozenset({"contrastive_alpha", "smoothing", "distill_temperature"})


class WeightsError(RuntimeError):
    """A model could not be loaded; the message says which spec, from where, and why."""


# --------------------------------------------------------------------------------------------------------------------
# Saving


def save_model(
    model: FineGrainedModel,
    out_dir: str | Path,
    *,
    provenance: dict[str, Any] | None = None,
    half: bool = False,
    card: str | None = None,
) -> Path:
    """Write `config.json`, `model.safetensors` and a model card into `out_dir` (created).

    `provenance` (dataset, recipe, command, metrics...) goes into config.json and the card. `half` stores floating
    weights as float16 (the demo models; they are loaded back into the model's own dtype).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state, seen = {}, set()
    for k, v in model.state_dict().items():
        v = v.detach().cpu().contiguous()
        v = v.half() if half and v.is_floating_point() else v
        # One file tensor per key: a model made of one checkpoint's tensors in several places (TASN's two networks in
        # backbone mode) stores each place, and loads back strictly into a model of its own.
        state[k] = v.clone() if v.untyped_storage().data_ptr() in seen else v
        seen.add(v.untyped_storage().data_ptr())
    save_file(state, str(out / WEIGHTS_NAME), metadata={"format": "pt", "fgviz_method": model.method})
    config = {
        "fgviz_format": FORMAT_VERSION,
        "method": model.method,
        "architecture": model.config.to_dict(),
        "pretrained_cfg": model.pretrained_cfg.to_dict(),
        "provenance": provenance or {},
    }
    (out / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    (out / CARD_NAME).write_text(card if card is not None else model_card(config))
    return out


def model_card(config: dict[str, Any]) -> str:
    """A Hub model card with front matter, generated from config.json."""
    method = config["method"]
    prov = config.get("provenance", {})
    cfg = config["architecture"]
    lines = [
        "---",
        "library_name: fgviz",
        "tags: [fine-grained, explainability, " + method.replace("_", "-") + "]",
        "---",
        f"# {prov.get('name', method)}",
        "",
        f"An fgviz **{method}** model ({cfg.get('num_classes')} classes, input {cfg.get('img_size')}).",
        "Load it with `fgviz.load(\"<this repo or folder>\")`; weights are safetensors, loaded strictly.",
        "",
    ]
    if prov.get("description"):
        lines += [prov["description"], ""]
    for key in ("dataset", "data_version", "recipe", "command", "steps", "seed", "train_time_s"):
        if key in prov:
            lines.append(f"- **{key}**: `{prov[key]}`" if key == "command" else f"- **{key}**: {prov[key]}")
    init = prov.get("init")
    if isinstance(init, dict) and init.get("pretraining"):
        lines += ["", "## Initialisation", "",
                  "The official recipe starts from ImageNet checkpoints, which cannot be downloaded where this "
                  "model was trained. It starts instead from a backbone that fgviz pretrained on its own synthetic "
                  f"data (a stand-in for ImageNet; `{init.get('source')}`):"]
        for pre in init["pretraining"]:
            lines.append(f"- `{pre.get('architecture')}` on {pre.get('task')}: {pre.get('recipe', {}).get('steps')} "
                         f"steps, held-out accuracy {pre.get('eval_accuracy')}, {pre.get('train_time_s')} s "
                         f"(`{pre.get('command')}`)")
    elif init:
        lines.append(f"- **init**: {init}")
    elif isinstance(prov.get("recipe"), dict) and not prov["recipe"].get("init"):
        lines.append("- **init**: none, trained from scratch (the official recipes start from ImageNet checkpoints)")
    metrics = prov.get("metrics", {})
    if metrics:
        show = lambda v: "" if v is None else v  # noqa: E731
        lines += ["", "## Metrics", "", "| metric | value | chance | randomised weights |", "|---|---|---|---|"]
        for name, m in metrics.items():
            if isinstance(m, dict):
                lines.append(f"| {name} | {m.get('value')} | {show(m.get('chance'))} | {show(m.get('randomized'))} |")
            else:
                lines.append(f"| {name} | {m} | | |")
        if any(name.endswith("_oracle") for name in metrics):
            lines += ["", "`*_oracle`: the same algorithm (DPPM crop, TASN sampler) fed a perfect part map, the "
                      "deciding-part mask itself: what it makes of ideal part attention, independent of the model."]
        if prov.get("targets"):
            lines += ["", "## Targets", "", "The demo models' acceptance targets (`fgviz.training.targets`); a figure "
                      "that misses them is not evidence that the model looks at the deciding parts.", "",
                      "| target | measured | bar | |", "|---|---|---|---|"]
            for t in prov["targets"]:
                lines.append(f"| {t['target']} | {t['value']} | {t['bar']} | {'met' if t['met'] else '**missed**'} |")
        evaluation = prov.get("evaluation")
        if evaluation:
            lines += ["", f"Recompute these figures with `{evaluation['command']}` ({evaluation['n']} freshly "
                      "generated "
                      f"{evaluation['domain']} samples, generator seed {evaluation['seed']}, never used in training)."]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------------------------
# Loading


def upgrade_config(config: dict[str, Any]) -> dict[str, Any]:
    """A parsed format-1 config.json in format 2 (architecture, pretrained_cfg; training knobs dropped)."""
    if config.get("fgviz_format", 1) != 1 or "config" not in config:
        return config
    old = dict(config["config"])
    pretrained = {k: old.pop(k) for k in list(old) if k in PRETRAINED_FIELDS}
    knobs = {k: old.pop(k) for k in list(old) if k in FORMAT1_TRAINING_KNOBS}
    out = {k: v for k, v in config.items() if k not in ("config", "fgviz_format")}
    out.update(fgviz_format=FORMAT_VERSION, architecture=old, pretrained_cfg=pretrained)
    if knobs:
        out.setdefault("provenance", {})["format1_training_args"] = knobs
    return out


def read_json(path: str | Path, what: str | None = None) -> Any:
    """A small JSON file (a config; at most MAX_CONFIG_BYTES, checked before parsing); WeightsError naming `what`
    (default: the path) when it is too large or not JSON."""
    path = Path(path)
    what = what or str(path)
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise WeightsError(f"{what}: {path.name} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise WeightsError(f"{what}: {path.name} is not valid JSON: {e}") from None


def read_config(path: str | Path) -> dict[str, Any]:
    """Parse and validate a config.json (format 1 is upgraded): a known method and its records."""
    path = Path(path)
    config = read_json(path)
    if not isinstance(config, dict):
        raise WeightsError(f"{path} is not an fgviz config (needs 'method' and its architecture)")
    version = config.get("fgviz_format", 1)
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
        raise WeightsError(f"{path}: fgviz_format {version!r} is not supported by this fgviz "
                           f"(reads format 1..{FORMAT_VERSION}; upgrade fgviz)")
    if version == 1 and not isinstance(config.get("config"), dict):
        raise WeightsError(f"{path} is not an fgviz config (needs 'method' and a 'config' object)")
    config = upgrade_config(config)
    if not isinstance(config.get("architecture"), dict) or not isinstance(config.get("pretrained_cfg", {}), dict):
        raise WeightsError(f"{path} is not an fgviz config (needs 'architecture' and 'pretrained_cfg' objects)")
    method = config.get("method")
    if not isinstance(method, str) or method not in METHODS:
        raise WeightsError(f"{path}: unknown method {method!r}; known: {sorted(METHODS)}")
    return config


def _records(config: dict[str, Any]) -> tuple[type[FineGrainedModel], ModelConfig, PretrainedCfg]:
    """The model class and its validated records, checked before anything big is allocated."""
    method = config["method"]
    cls = METHODS[method].model_class
    raw, pre = config["architecture"], dict(config.get("pretrained_cfg", {}))
    # num_classes and labels are checked here first, before a record fills default labels or allocates anything.
    n = raw.get("num_classes")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_CLASSES):
        raise WeightsError(f"invalid {method} config: num_classes={n!r} outside [1, {MAX_CLASSES}]")
    labels = pre.get("labels")
    if labels is not None and (not isinstance(labels, list) or len(labels) > MAX_CLASSES
                               or not all(isinstance(s, str) for s in labels)):
        raise WeightsError(f"invalid {method} config: labels must be a list of at most {MAX_CLASSES} strings")
    try:
        cfg = cls.config_class.from_dict(raw)
        pretrained = PretrainedCfg.from_dict(pre).for_classes(cfg.num_classes)
    except (TypeError, ValueError, OverflowError) as e:
        raise WeightsError(f"invalid {method} config: {e}") from None
    return cls, cfg, pretrained


def _skeleton_state(cls: type[FineGrainedModel], cfg: ModelConfig) -> dict[str, torch.Tensor] | None:
    """The state dict (shapes and dtypes only, on the meta device) the config would build, or None if the model
    cannot be built on the meta device. Raises WeightsError when it exceeds MAX_PARAMS."""
    try:
        with torch.device("meta"):
            skeleton = cls(cfg)
    except (NotImplementedError, RuntimeError):  # a model whose __init__ needs real data: skip the pre-check
        return None
    state = skeleton.state_dict()
    n = sum(v.numel() for v in state.values())
    if n > MAX_PARAMS:
        raise WeightsError(f"{cls.method} config describes {n:,} parameters, more than fgviz loads "
                           f"({MAX_PARAMS:,}); refusing to allocate it")
    return state


def parameter_count(config: dict[str, Any]) -> int:
    """Parameters a parsed config.json describes, counted on the meta device (nothing allocated)."""
    cls, cfg, _ = _records(config)
    state = _skeleton_state(cls, cfg)
    return 0 if state is None else sum(v.numel() for v in state.values())


def build_from_config(config: dict[str, Any]) -> FineGrainedModel:
    """Build the (randomly initialised) model a parsed config.json describes; sizes are checked first."""
    cls, cfg, pretrained = _records(config)
    _skeleton_state(cls, cfg)
    return cls(cfg, pretrained)


def _dtype_kind(dtype: str | torch.dtype) -> str:
    if isinstance(dtype, torch.dtype):
        return "float" if dtype.is_floating_point else "bool" if dtype == torch.bool else "int"
    return "float" if dtype.startswith(("F", "BF")) else "bool" if dtype == "BOOL" else "int"


def _check_header(weights_path: str | Path, own: dict[str, torch.Tensor], owner: str,
                  method: str | None = None) -> None:
    """Compare the safetensors header (keys, shapes, dtype kinds; no tensor data is read) with `own`."""
    try:
        with safe_open(str(weights_path), framework="pt") as f:
            keys = list(f.keys())
            meta = f.metadata() or {}
            header = {k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in keys}
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"{weights_path} is not a readable safetensors file (corrupt or truncated?): {e}") from None
    saved_for = meta.get("fgviz_method")
    if method is not None and saved_for is not None and saved_for != method:
        raise WeightsError(f"{weights_path} holds {saved_for} weights but the config says method {method!r}")
    missing = sorted(set(own) - set(header))
    unexpected = sorted(set(header) - set(own))
    if missing or unexpected:
        raise WeightsError(
            f"{weights_path} does not match the {owner} config: "
            f"missing keys {missing[:10]}{' ...' if len(missing) > 10 else ''}, "
            f"unexpected keys {unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}"
        )
    bad_shape = [k for k in own if header[k][0] != tuple(own[k].shape)]  # in the model's own order
    if bad_shape:
        k = bad_shape[0]
        more = f" (and {len(bad_shape) - 1} more: {bad_shape[1:4]}{' ...' if len(bad_shape) > 4 else ''})" \
            if len(bad_shape) > 1 else ""
        raise WeightsError(f"{weights_path}: shape mismatch for {k}: checkpoint {header[k][0]}, "
                           f"model {tuple(own[k].shape)}{more}")
    for k in own:
        if _dtype_kind(header[k][1]) != _dtype_kind(own[k].dtype):
            raise WeightsError(f"{weights_path}: dtype mismatch for {k}: checkpoint {header[k][1]}, "
                               f"model {own[k].dtype}")


def load_state_strict(model: torch.nn.Module, weights_path: str | Path) -> None:
    """Load safetensors into `model`; any missing/unexpected key or shape mismatch is an error naming it.

    The header is checked before any tensor is read."""
    _check_header(weights_path, model.state_dict(), type(model).__name__, getattr(model, "method", None))
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"{weights_path} is not a readable safetensors file (corrupt or truncated?): {e}") from None
    model.load_state_dict(state, strict=True)


def load_checkpoint(config_path: str | Path, weights_path: str | Path) -> FineGrainedModel:
    """Validate config.json, check the weights' header against the model it describes (on the meta device, so a
    mismatch or an absurd size costs nothing), then build the model and load the weights strictly."""
    config = read_config(config_path)
    cls, cfg, pretrained = _records(config)
    skeleton = _skeleton_state(cls, cfg)
    if skeleton is not None:
        _check_header(weights_path, skeleton, cls.__name__, cls.method)
    model = cls(cfg, pretrained)
    load_state_strict(model, weights_path)
    model.provenance = config.get("provenance", {})
    return model.eval()


def load_folder(folder: str | Path) -> FineGrainedModel:
    """Load a local fgviz model folder (config.json + model.safetensors)."""
    folder = Path(folder)
    if not (folder / CONFIG_NAME).is_file():
        raise WeightsError(f"{folder} has no {CONFIG_NAME}")
    if not (folder / WEIGHTS_NAME).is_file():
        pickles = [p.name for p in folder.glob("*.bin")] + [p.name for p in folder.glob("*.pt*")]
        hint = f" (found {pickles}: fgviz never loads pickles; convert them to safetensors)" if pickles else ""
        raise WeightsError(f"{folder} has no {WEIGHTS_NAME}{hint}")
    return load_checkpoint(folder / CONFIG_NAME, folder / WEIGHTS_NAME)




def main(argv: list[str] | None = None) -> None:
    """Rewrite format-1 model folders in the current format (config.json and the model card; weights untouched)."""
    ap = argparse.ArgumentParser(prog="python -m fgviz.weights.format", description=main.__doc__)
    ap.add_argument("folders", nargs="+", type=Path)
    args = ap.parse_args(argv)
    for folder in args.folders:
        config = read_config(folder / CONFIG_NAME)
        load_folder(folder)  # the upgraded config must still load the weights strictly
        (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        (folder / CARD_NAME).write_text(model_card(config))
        print(f"{folder}: fgviz_format {FORMAT_VERSION}")


if __name__ == "__main__":
    main()
