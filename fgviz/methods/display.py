"""How an explanation shows itself in a notebook: its method's signature view (the Overview column's main panel, on
its own colour scale) with the model that made it, the top-5 and, as the app's banner does, the localisation targets
the model card records as missed. `fgviz.methods` registers `figure` as every `Explanation`'s display."""

from __future__ import annotations

from fgviz.core.explanation import WEIGHTS_KINDS, Explanation
from fgviz.methods.method import Method
from fgviz.viz.display import Figure
from fgviz.viz.panels import Style


def figure(method: Method, e: Explanation, style: Style | None = None, k: int = 5) -> Figure:
    """`e` as a `Figure`: the signature view and its caption, titled with the method and the model; the notes give
    the top-`k`, what the weights are and the card's missed targets."""
    style = style or Style()
    ov = method.overview(e, method.overview_maps(e), style, None, main_only=True)
    notes = [f"Prediction: **{e.prediction}** ({100 * float(e.probs.max()):.1f}%); top-{k}:"]
    notes += [f"- {name}: {100 * p:.1f}%" for name, p in e.topk(k)]
    kind = WEIGHTS_KINDS.get(e.weights_kind, e.weights_kind or "weights of unknown origin")
    notes.append(f"*Weights: {kind}.*")
    if e.missed_targets:
        missed = "; ".join(e.missed_targets)
        notes.append(f"**Warning:** its model card records missed localisation targets ({missed}): read this map as "
                     "an illustration, not as evidence.")
    return Figure([(ov.main, ov.caption)], title=f"{method.title}: {e.model_name or 'unnamed model'}",
                  notes="\n".join(notes), columns=1)


__all__ = ["figure"]
