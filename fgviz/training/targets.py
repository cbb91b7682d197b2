"""The demo models' acceptance targets, checked on an `evaluate` result (and printed in each model card).

A localisation figure is evidence only if it beats the same architecture re-initialised and, where the algorithm
has a ceiling, comes close to what it makes of a perfect map (the `*_oracle` figures). The targets below are the
Demo models v2 issue's, with the three decisions of the "Same results on every machine" issue (#22):
- rollout: the displayed rollout stays Abnar & Zuidema's plain one; its energy pointing game must reach 2x chance
  *and* 2x the re-initialised copy (which makes it evidence of something learned). The earlier 4x chance was set
  before anyone had measured these models;
- RAMS-Trans: "crop recall >= 2x a random box" is retired: on this data the DPPM fed the part mask itself reaches
  only 1.78x / 1.44x a random box (birds / cars), so it asked for more than the algorithm's own ceiling. What stays:
  area < 0.5, recall >= 0.9x the oracle, and recall above the random box;
- TASN: the magnification target stands.
They are keyed by figure, not by method: a rule applies to every model whose evaluation reports that figure, so a
new method that reports, say, `rollout_energy_pointing` is held to the same bar.

Each rule compares the trained model's value with one reference:
- `at_least`: a constant;  `below`: a constant (strictly);
- `x_chance`: `factor` x the figure's chance value (a random token, a random box of the same area...);
- `above_chance`: strictly above the chance value;
- `x_randomized`: `factor` x the re-initialised copy's value;
- `x_oracle`: `factor` x the `<figure>_oracle` value (the same algorithm fed the deciding-part mask);
- `randomized_within_chance`: the re-initialised copy's value at most `factor` x chance (the map must collapse).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Target:
    figure: str
    rule: str
    factor: float

    def describe(self) -> str:
        return {
            "at_least": f"{self.figure} >= {self.factor:g}",
            "below": f"{self.figure} < {self.factor:g}",
            "x_chance": f"{self.figure} >= {self.factor:g}x chance",
            "above_chance": f"{self.figure} > chance",
            "x_randomized": f"{self.figure} >= {self.factor:g}x re-initialised",
            "x_oracle": f"{self.figure} >= {self.factor:g}x oracle",
            "randomized_within_chance": f"{self.figure} re-initialised <= {self.factor:g}x chance",
        }[self.rule]


TARGETS = (
    Target("accuracy", "at_least", 0.9),
    Target("psm_part_hit_rate", "x_chance", 2.0),
    Target("psm_part_hit_rate", "x_randomized", 1.5),
    Target("crop_area_share", "below", 0.5),
    Target("crop_recall", "above_chance", 1.0),
    Target("crop_recall", "x_oracle", 0.9),
    Target("structure_magnification", "at_least", 1.5),
    Target("structure_magnification", "x_randomized", 1.25),
    Target("rollout_energy_pointing", "x_chance", 2.0),
    Target("rollout_energy_pointing", "x_randomized", 2.0),
    Target("rollout_energy_pointing", "randomized_within_chance", 1.5),
)


def check(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target that applies to `result` (an `evaluate` result): what, the measured value, the bar, met or not.

    A target whose reference is missing (no re-initialised run, no chance value) is skipped, not passed."""
    trained, randomized = result["trained"], result.get("randomized", {})
    out = []
    for t in TARGETS:
        if t.figure not in trained:
            continue
        value, chance = trained[t.figure]["value"], trained[t.figure].get("chance")
        if t.rule in ("at_least", "below"):
            bar = t.factor
        elif t.rule in ("x_chance", "above_chance") and chance:
            bar = t.factor * chance
        elif t.rule == "x_randomized" and t.figure in randomized:
            bar = t.factor * randomized[t.figure]["value"]
        elif t.rule == "x_oracle" and t.figure + "_oracle" in trained:
            bar = t.factor * trained[t.figure + "_oracle"]["value"]
        elif t.rule == "randomized_within_chance" and chance and t.figure in randomized:
            value, bar = randomized[t.figure]["value"], t.factor * chance
        else:
            continue
        if t.rule in ("below", "above_chance"):
            met = value < bar if t.rule == "below" else value > bar
        else:
            met = value <= bar if t.rule == "randomized_within_chance" else value >= bar
        out.append({"target": t.describe(), "value": round(float(value), 4), "bar": round(float(bar), 4),
                    "met": bool(met)})
    return out
