"""The named results of the explorer: what each tab shows, by the component names of `fgviz.explorer.layout`
("layers.rollout", "steps.tasn.gallery", ...), the results `fgviz.explorer.ui.UI` returns, and which of the tabs are
on screen. Plain data: the app binds it to Gradio components.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import plotly.graph_objects as go

from fgviz.explorer.session import DOMAINS, CacheKey
from fgviz.methods import METHODS
from fgviz.viz.panels import Panel

Keys = dict[str, CacheKey]


class Props(dict):
    """A control's properties besides its value (visible, maximum, choices, label); the app applies them."""


def named_layers(res: LayersResult, full: bool = True) -> dict[str, Any]:
    """The Layers and heads tab by component name ("layers.<field>"; with `full`, the slider, heads and button)."""
    out = {f"layers.{f}": getattr(res, f) for f in ("caption", "rollout", "rollout_fig", "attends_to", "attended_by",
                                                      "patch_fig", "grid_fig", "stats_fig")}
    if not full:
        return {k: v for k, v in out.items() if k not in ("layers.grid_fig", "layers.stats_fig")}
    # Gradio needs maximum > minimum (1): a one-layer model gets a slider to 2 (clipped to 1 by `UI.layers`).
    return {**out, "layers.layer": Props(maximum=max(res.layers, 2), value=res.layer,
                                         label=f"Layer (1..{res.layers})"),
            "layers.heads": Props(choices=res.heads, value=res.head),
            "layers.stats_run": Props(visible=res.stats_fig is not None and not res.stats_fig.data)}


def named_steps(method: str, res: StepsResult) -> dict[str, Any]:
    """One Internals tab by component name ("steps.<method>.<field>", its controls' values and maxima); the chart
    is shown only when the method draws one."""
    out = {f"steps.{method}.{f}": getattr(res, f) for f in ("gallery", "notes")}
    out[f"steps.{method}.figure"] = Props(value=res.figure, visible=res.figure is not None)
    for name, v in res.control_values.items():
        out[f"steps.{method}.controls.{name}"] = Props(value=v, **({"maximum": res.limits[name]}
                                                                    if name in res.limits else {}))
    return out


EMPTY_RESULTS = ("faith.figure", "faith.summary", "faith.numbers", "sanity.image", "sanity.summary", "sanity.numbers",
                 "export.file")


@dataclass
class Column:
    main: np.ndarray | None = None
    caption: str = ""
    gallery: list[Panel] = field(default_factory=list)
    topk: go.Figure | None = None
    extra: go.Figure | None = None


TABS = ("layers", *(f"internals.{m}" for m in METHODS))  # the tabs `UI.render` draws only when on screen


def visible_tabs(view: Mapping[str, Any] | None) -> set[str]:
    """Which of `TABS` is on screen for a "view" state ({"tab": main tab id, "internals": method})."""
    tab = (view or {}).get("tab")
    return {"layers"} if tab == "layers" else {f"internals.{view.get('internals')}"} if tab == "internals" else set()
SET_NOTE = "model_set"  # the key of a model set's fallback in `ExplainResult.notes`


@dataclass(frozen=True)
class Context:
    """What explaining on demand needs besides the keys: the domain, each method's typed spec, the model set, and
    who asks (for the rate of new model loads)."""

    domain: str = DOMAINS[0]
    typed: Mapping[str, str] = field(default_factory=dict)
    model_set: str = "demo"
    client: str | None = None

    @classmethod
    def of(cls, domain: str, values: Sequence[Any], client: str | None = None) -> Context:
        """From the controls' values: the domain, then each method's spec box (in `METHODS` order), the model set."""
        return cls(domain, dict(zip(METHODS, values[: len(METHODS)], strict=True)), values[len(METHODS)], client)


@dataclass
class ExplainResult:
    keys: Keys
    mains: dict[str, np.ndarray | None]
    numbers: dict[str, Any]
    # method -> why its typed spec fell back to the registry model; SET_NOTE -> why the chosen model set fell back
    # to the demo models (then it is the only note)
    notes: dict[str, str]

    @property
    def set_note(self) -> str | None:
        return self.notes.get(SET_NOTE)


@dataclass
class OverviewResult:
    status: str
    columns: dict[str, Column]


@dataclass
class LayersResult:
    rollout: np.ndarray | None = None
    rollout_fig: go.Figure | None = None
    attends_to: np.ndarray | None = None
    attended_by: np.ndarray | None = None
    patch_fig: go.Figure | None = None
    caption: str = ""
    layers: int = 1  # the model's layer count (the slider's maximum)
    layer: int = 1
    heads: list[str] = field(default_factory=lambda: ["mean"])
    head: str = "mean"
    grid_fig: go.Figure | None = None
    stats_fig: go.Figure | None = None


@dataclass
class StepsResult:
    gallery: list[Panel] = field(default_factory=list)
    figure: go.Figure | None = None
    notes: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    limits: dict[str, float] = field(default_factory=dict)  # maxima of the controls for this model
    control_values: dict[str, float] = field(default_factory=dict)  # what each control shows (None as its "none")


@dataclass
class FaithResult:
    figure: go.Figure | None = None
    summary: str = ""
    numbers: dict[str, Any] | None = None


@dataclass
class SanityResult:
    image: np.ndarray | None = None
    summary: str = ""
    numbers: dict[str, Any] | None = None


__all__ = ["EMPTY_RESULTS", "SET_NOTE", "TABS", "Column", "Context", "ExplainResult", "FaithResult", "Keys",
           "LayersResult", "OverviewResult", "Props", "SanityResult", "StepsResult", "named_layers", "named_steps",
           "visible_tabs"]
