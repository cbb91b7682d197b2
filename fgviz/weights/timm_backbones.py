"""Backbone mode and training inits from timm ImageNet checkpoints on the Hub (`timm:<name>` specs).

No trained TransFG, RAMS-Trans or TASN weights were ever published (docs methods.md 4.1), so ``timm:<name>`` specs
(e.g. ``timm:vit_base_patch16_224.augreg2_in21k_ft_in1k``, ``timm:resnet50.tv_in1k``) wrap a timm ImageNet
checkpoint as one of the methods, with its own ImageNet classifier. Only ``config.json`` and ``model.safetensors``
are fetched from ``timm/<name>`` (through `fgviz.weights.download`: cache, offline mode and error messages as every
other download); a repo with only a pickle is refused. The state dict is loaded strictly into the timm architecture
its config.json names, then each method's own adapter (`Method.from_timm`, in its folder's weights.py) copies it with
explicit maps and shape checks. Such models are ``weights_kind = "backbone"``: **not** fine-tuned for the method.

`init_from_timm(model, name)` is the training counterpart: the method's `init_from_timm` copies an ImageNet backbone
into an existing model as the official code does; heads stay random.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from fgviz.methods import METHODS, FineGrainedModel, Method
from fgviz.methods.base import MAX_CLASSES, ConversionError
from fgviz.weights import sources
from fgviz.weights.download import COMMIT_RE, card_metadata, hub_download, optional_file
from fgviz.weights.format import MAX_CONFIG_BYTES, WEIGHTS_NAME, WeightsError

TIMM_ORG = "timm"
# timm model_args a config.json may pass to create_model (geometry only; anything else is refused)
ALLOWED_MODEL_ARGS = {
    "img_size",
    "in_chans",
    "num_classes",
    "global_pool",
    "patch_size",
    "embed_dim",
    "depth",
    "num_heads",
    "mlp_ratio",
    "qkv_bias",
    "class_token",
    "layers",
    "channels",
    "depths",  # ConvNeXt
    "dims",
    "head_hidden_size",
}


@dataclass(frozen=True)
class TimmCheckpoint:
    """A timm Hub checkpoint: the parsed config.json and the state dict (from safetensors)."""

    name: str  # timm model name with tag, e.g. "resnet18.tv_in1k"
    repo_id: str
    architecture: str
    num_classes: int
    pretrained_cfg: dict[str, Any]
    model_args: dict[str, Any]
    labels: list[str]
    state: dict[str, torch.Tensor]


def _labels(config: dict[str, Any], num_classes: int) -> list[str]:
    """Class names: config.json's label names/descriptions, else timm's offline ImageNet names, else class_i."""
    names = config.get("label_names") or config.get("pretrained_cfg", {}).get("label_names")
    descriptions = config.get("label_descriptions") or config.get("pretrained_cfg", {}).get("label_descriptions")
    if isinstance(names, dict):  # {index: name}
        names = [names.get(str(i), names.get(i, f"class_{i}")) for i in range(num_classes)]
    if isinstance(names, list) and len(names) == num_classes:
        if isinstance(descriptions, dict):
            return [str(descriptions.get(n, species_name(str(n)))) for n in names]
        return [species_name(str(n)) for n in names]
    from timm.data import ImageNetInfo, infer_imagenet_subset

    subset = infer_imagenet_subset({"num_classes": num_classes})
    if subset is not None:
        return list(ImageNetInfo(subset).label_descriptions())
    return [f"class_{i}" for i in range(num_classes)]


# iNaturalist 2021 class folders: "02912_Animalia_Chordata_Aves_Passeriformes_Cardinalidae_Cardinalis_cardinalis"
_INAT_NAME = re.compile(r"^\d{5}_(?:[A-Z][A-Za-z]*_){5}([A-Z][A-Za-z-]*)_([a-z][A-Za-z-]*)$")


def species_name(name: str) -> str:
    """An iNaturalist class folder name as its species ("Cardinalis cardinalis"); any other name unchanged."""
    m = _INAT_NAME.match(name)
    return f"{m.group(1)} {m.group(2)}" if m else name


@dataclass(frozen=True)
class TimmConfig:
    """What a timm repo's config.json says, and the commit it came from (None when the cache does not say)."""

    name: str
    repo_id: str
    commit: str | None
    architecture: str
    num_classes: int
    pretrained_cfg: dict[str, Any]
    model_args: dict[str, Any]
    labels: list[str]


def read_timm_config(name: str, revision: str | None = None) -> TimmConfig:
    """Download (or read from the cache) and check ``timm/<name>``'s config.json only: one small file.

    Raises:
        WeightsError: the repo, the file or the network is unavailable, or the config is malformed.
    """
    name = name.removeprefix("timm:")
    repo = f"{TIMM_ORG}/{name}"
    what = f"timm:{name}"
    config_path = hub_download(repo, "config.json", revision, what=what)
    commit = config_path.parent.name  # the HF cache's snapshot folder is named by the commit
    return _parse_config(config_path, name, repo, what, commit if COMMIT_RE.fullmatch(commit) else None)


def fetch_timm_checkpoint(name: str, revision: str | None = None, *,
                          config: TimmConfig | None = None) -> TimmCheckpoint:
    """Download (or read from the cache) ``timm/<name>``'s config.json and model.safetensors; never a pickle.

    `revision` pins a branch, tag or commit of the timm repo (default: main); the weights are fetched at the commit
    the config came from. `config`: that config, already read by `read_timm_config` (not read again).

    Raises:
        WeightsError: the repo, a file, or the network is unavailable, or the files are malformed.
    """
    info = config if config is not None else read_timm_config(name, revision)
    what = f"timm:{info.name}"
    return _with_weights(info, hub_download(info.repo_id, WEIGHTS_NAME, info.commit or revision, what=what,
                                            shown_revision=revision), what)


def read_timm_folder(folder: str | Path) -> TimmCheckpoint:
    """A checkpoint in timm's Hub layout on disk (config.json + model.safetensors), e.g. a backbone pretrained by
    `fgviz.training.pretrain`; read exactly as a download (safetensors only, the same validation)."""
    folder = Path(folder)
    what = f"timm checkpoint folder {folder}"
    if not (folder / "config.json").is_file():
        raise WeightsError(f"{what} has no config.json")
    info = _parse_config(folder / "config.json", folder.name, str(folder), what, None)
    return _with_weights(info, folder / WEIGHTS_NAME, what)


def _parse_config(config_path: Path, name: str, repo: str, what: str, commit: str | None) -> TimmConfig:
    """Parse and validate a timm config.json."""
    if config_path.stat().st_size > MAX_CONFIG_BYTES:
        raise WeightsError(f"{what}: {repo}'s config.json is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        config = json.loads(config_path.read_text())
        arch = config["architecture"]
        pretrained_cfg = dict(config.get("pretrained_cfg", {}))
        num_classes = int(config.get("num_classes", pretrained_cfg.get("num_classes", 0)))
        model_args = dict(config.get("model_args", {}))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as e:
        raise WeightsError(f"{what}: {repo}'s config.json is not a timm config: {e!r}") from None
    bad = sorted(set(model_args) - ALLOWED_MODEL_ARGS)
    if bad:
        raise WeightsError(f"{what}: unsupported model_args {bad} in {repo}'s config.json")
    if not 0 <= num_classes <= MAX_CLASSES:
        raise WeightsError(f"{what}: num_classes={num_classes} outside [0, {MAX_CLASSES}]")
    return TimmConfig(name=name, repo_id=repo, commit=commit, architecture=str(arch), num_classes=num_classes,
                      pretrained_cfg=pretrained_cfg, model_args=model_args, labels=_labels(config, num_classes))


def _with_weights(info: TimmConfig, weights_path: Path, what: str) -> TimmCheckpoint:
    """The checkpoint of `info` with the safetensors at `weights_path` (never a pickle)."""
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"{what}: {weights_path} is not a readable safetensors file: {e}") from None
    shared = {f.name: getattr(info, f.name) for f in fields(TimmCheckpoint) if f.name != "state"}  # all but commit
    return TimmCheckpoint(**shared, state=state)


def _create(name: str, architecture: str, num_classes: int, model_args: dict[str, Any]) -> nn.Module:
    """timm.create_model of a config's architecture (no download), with fgviz's error messages."""
    import timm

    if not timm.is_model(architecture):
        raise WeightsError(f"timm:{name}: unknown timm architecture {architecture!r}")
    kwargs = {**model_args, "num_classes": num_classes}
    if not isinstance(kwargs.get("img_size", 224), (int, list, tuple)):
        raise WeightsError(f"timm:{name}: bad img_size {kwargs['img_size']!r}")
    try:
        return timm.create_model(architecture, pretrained=False, **kwargs)
    except (TypeError, ValueError, AssertionError) as e:
        raise WeightsError(f"timm:{name}: cannot build {architecture} from config.json: {e}") from None


def plan_backbone(info: TimmConfig, method: str | None = None) -> tuple[str, int]:
    """The method that would wrap `info`'s backbone and the backbone's parameter count (parameters and buffers),
    from a build on the meta device: nothing is allocated and no weights are downloaded.

    Raises:
        WeightsError: an unknown architecture, a family no method wraps, or a method of another family.
        KeyError: unknown method.
    """
    if method is not None and method not in METHODS:
        raise KeyError(f"unknown method {method!r}; available: {sorted(METHODS)}")
    try:
        with torch.device("meta"):
            skeleton = _create(info.name, info.architecture, info.num_classes, info.model_args)
    except (NotImplementedError, RuntimeError) as e:  # an __init__ that needs real data: size unknown, refuse
        raise WeightsError(f"timm:{info.name}: cannot size {info.architecture} before loading it: {e}") from None
    chosen = _choose(info.name, family(skeleton), method)
    return chosen.name, sum(v.numel() for v in skeleton.state_dict().values())


def _choose(name: str, fam: str, method: str | None) -> Method:
    wrappers = methods_for(fam)
    if not wrappers:
        raise WeightsError(f"timm:{name}: backbone mode wraps ViTs, ResNets and ConvNeXts, not {fam}")
    chosen = METHODS[method] if method else wrappers[0]
    if chosen not in wrappers:
        raise WeightsError(f"timm:{name} is a {fam}; {chosen.name} wraps "
                           f"{' and '.join((chosen.backbone_family, *chosen.also_wraps))} checkpoints")
    return chosen


def build_timm_model(ckpt: TimmCheckpoint) -> nn.Module:
    """The timm architecture of `ckpt` (no download) made of its weights, strictly: every key, every shape.

    Built on the meta device and given the checkpoint's tensors (no copy, so a load peaks at one model's bytes); an
    architecture that makes tensors of its own in `__init__` is built on the CPU and loaded by copy instead."""
    with torch.device("meta"):
        model = _create(ckpt.name, ckpt.architecture, ckpt.num_classes, ckpt.model_args)
    own = set(model.state_dict())
    leftover = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if n not in own]
    if leftover:
        model = _create(ckpt.name, ckpt.architecture, ckpt.num_classes, ckpt.model_args)
    try:
        model.load_state_dict(ckpt.state, strict=True, assign=not leftover)
    except RuntimeError as e:
        raise WeightsError(f"timm:{ckpt.name}: weights do not fit {ckpt.architecture}: {e}") from None
    return model.eval()


def family(model: nn.Module) -> str:
    """"ViT", "ResNet" or "ConvNeXt" (what the methods' `backbone_family` and `also_wraps` name), else the class
    name."""
    from timm.models.convnext import ConvNeXt
    from timm.models.resnet import ResNet
    from timm.models.vision_transformer import VisionTransformer

    for cls, name in ((VisionTransformer, "ViT"), (ResNet, "ResNet"), (ConvNeXt, "ConvNeXt")):
        if isinstance(model, cls):
            return name
    return type(model).__name__


def methods_for(fam: str) -> list[Method]:
    """The methods that wrap a `fam` backbone, the family's default first."""
    return sorted((m for m in METHODS.values() if fam in (m.backbone_family, *m.also_wraps)),
                  key=lambda m: not m.default_for_family)


def load_timm_backbone(name: str, method: str | None = None, *, revision: str | None = None,
                       config: TimmConfig | None = None, device: str | torch.device = "cpu",
                       dtype: torch.dtype = torch.float32) -> FineGrainedModel:
    """Wrap the timm checkpoint ``timm/<name>`` as `method` (default: the family's default method).

    The checkpoint is loaded once per (repo, commit, device, dtype) however many methods wrap it
    (`fgviz.weights.sources`): each method's model is made of its tensors.

    Args:
        name: timm model name with its pretrained tag, with or without the ``timm:`` prefix.
        method: a method whose `backbone_family` is the checkpoint's family (default: the family's default).
        revision: branch, tag or commit of the timm repo to pin (default: main).
        config: its config.json, already read by `read_timm_config` (not read again).
        device, dtype: where and in which precision the weights live.

    Returns:
        The model in eval mode, ``weights_kind = "backbone"``, with a provenance saying what it was trained on.

    Raises:
        WeightsError: download, format or architecture problems (the message names the spec and repo).
        KeyError: unknown method.
    """
    name = name.removeprefix("timm:")
    if method is not None and method not in METHODS:
        raise KeyError(f"unknown method {method!r}; available: {sorted(METHODS)}")
    info = config if config is not None else read_timm_config(name, revision)
    if info.num_classes < 1:
        raise WeightsError(
            f"timm:{name} has no classifier head (num_classes=0): backbone mode needs one; use it for training "
            "initialisation (fgviz.weights.timm_backbones.init_from_timm) instead"
        )
    key = source_key(info, revision, device, dtype)
    source = sources.shared(key, lambda: build_timm_model(fetch_timm_checkpoint(name, revision, config=info)).to(
        device=device, dtype=dtype))
    chosen = _choose(name, family(source.module), method)
    try:
        model = chosen.from_timm(source.module, info.labels, info.pretrained_cfg)
    except ConversionError as e:
        raise WeightsError(f"timm:{name} as {chosen.title}: {e}") from None
    model.weights_kind = "backbone"
    model.name = f"timm:{name}"
    model.provenance = timm_provenance(info, chosen, type(model).__name__, revision)
    if "license" not in info.pretrained_cfg:  # then the model card says it, if anything does
        card = optional_file(info.repo_id, "README.md", info.commit or revision, what=f"timm:{name}")
        licence = card_metadata(card.read_text(errors="replace")).get("license") if card else None
        model.provenance["license"] = str(licence or "not stated by the repo")
    return sources.hold(model.eval(), source)


def source_key(info: TimmConfig, revision: str | None, device: str | torch.device, dtype: torch.dtype) -> tuple:
    """What names one loaded checkpoint in `fgviz.weights.sources`: repo, commit (else the revision asked for),
    device and dtype."""
    return ("timm", info.repo_id, info.commit or revision or "main", str(torch.device(device)), str(dtype))


def timm_provenance(info: TimmConfig, chosen: Method, class_name: str, revision: str | None) -> dict[str, Any]:
    """What a column says about a wrapped timm checkpoint: the repo and revision, its training data, its licence."""
    cfg = info.pretrained_cfg
    tag = info.name.partition(".")[2]
    return {
        "description": f"{info.repo_id} ({info.architecture}) wrapped as {class_name}, not fine-tuned for "
        f"{chosen.title}; {chosen.backbone_note()}.",
        "weights_kind": "backbone",
        "source": f"https://huggingface.co/{info.repo_id}",
        "repo": info.repo_id,
        "revision": info.commit or revision or "main",
        "architecture": info.architecture,
        "license": str(cfg.get("license", "")),
        "dataset": training_data(tag, info.num_classes),
    }


# Pretrained tags of timm's Hub names and the data they mean, most specific first (the last dataset in a tag is the
# one the classifier was trained on: laion2b_ft_augreg_inat21 = CLIP LAION-2B weights fine-tuned on iNaturalist 2021).
TAG_DATASETS = (
    ("inat21", "iNaturalist 2021 (10,000 species)"),
    ("in12k_in1k", "ImageNet-1k (after ImageNet-12k)"),
    ("in22k_in1k", "ImageNet-1k (after ImageNet-22k)"),
    ("in21k_ft_in1k", "ImageNet-1k (after ImageNet-21k)"),
    ("in1k", "ImageNet-1k"),
    ("in12k", "ImageNet-12k"),
    ("in22k", "ImageNet-22k"),
    ("in21k", "ImageNet-21k"),
)


def training_data(tag: str, num_classes: int) -> str:
    """The classifier's training data named by a timm pretrained tag ("ImageNet-1k", "iNaturalist 2021 ...")."""
    for key, name in TAG_DATASETS:
        if key in tag:
            return name
    return f"{tag or 'untagged'} ({num_classes} classes)"


def init_from_timm(model: FineGrainedModel, name: str) -> list[str]:
    """Initialise `model` for training from the checkpoint ``timm/<name>`` (ImageNet) or a local folder in timm's
    layout (a backbone pretrained by fgviz); heads stay random. Returns the parameter names left as they were.

    Raises:
        WeightsError: download problems, or nothing in `model` has the checkpoint's architecture.
    """
    if not name.startswith("timm:") and Path(name).is_dir():
        ckpt = read_timm_folder(name)
    else:
        name = name.removeprefix("timm:")
        ckpt = fetch_timm_checkpoint(name)
    src = build_timm_model(ckpt)
    method = METHODS[model.method]
    try:
        return method.init_from_timm(model, src)
    except (ConversionError, NotImplementedError) as e:
        raise WeightsError(f"timm:{name} -> {type(model).__name__}: {e}") from None
