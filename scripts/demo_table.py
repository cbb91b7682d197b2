"""The README's table of the embedded demo models, printed from their model cards (config.json provenance).

    python scripts/demo_table.py [weights/registry.json]

Every figure comes from the card, which `python -m fgviz.evaluate <folder> --update-card` wrote (or re-carded with
`--from-result`); the targets column lists the card's missed targets (`fgviz.training.targets`), the same list the
app's banner names. Rows follow the registry's order.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as `python scripts/...`

from fgviz.weights.format import CONFIG_NAME, read_config

ROOT = Path(__file__).resolve().parent.parent

HEADER = ("| model | held-out accuracy | localisation of the deciding parts | energy pointing game (rollout; TASN: "
          "structure map) | targets missed | training time |\n|---|---|---|---|---|---|")


def localisation(m: dict[str, dict[str, Any]]) -> str:
    """The card's localisation figures, by figure name (any method reporting them gets the same words)."""
    if "psm_part_hit_rate" in m:
        f = m["psm_part_hit_rate"]
        return f"PSM part hit rate {f['value']:.3f} (chance {f['chance']:.3f}, re-init {f['randomized']:.3f})"
    if "crop_recall" in m:
        f = m["crop_recall"]
        scales = " / ".join(str(k.removeprefix("accuracy_scale")) for k in sorted(m) if k.startswith("accuracy_scale"))
        alone = " / ".join(f"{m[k]['value']:.3f}" for k in sorted(m) if k.startswith("accuracy_scale"))
        return (f"crop recall {f['value']:.3f} (random box {f['chance']:.3f}, oracle "
                f"{m['crop_recall_oracle']['value']:.3f}), area {m['crop_area_share']['value']:.3f}; scale {scales} "
                f"alone {alone}")
    if "structure_magnification" in m:
        f = m["structure_magnification"]
        oracle, detail = m["structure_magnification_oracle"]["value"], m["detail_magnification"]["value"]
        return (f"structure magnification {f['value']:.2f} (uniform 1, re-init {f['randomized']:.2f}, oracle "
                f"{oracle:.2f}), detail {detail:.2f}")
    return "-"


def pointing(m: dict[str, dict[str, Any]]) -> str:
    f = m.get("rollout_energy_pointing") or m.get("structure_energy_pointing")
    if f is None:
        return "-"
    return (f"{f['value']:.3f} = {f['value'] / f['chance']:.1f}x chance "
            f"(re-init {f['randomized'] / f['chance']:.1f}x)")


def row(name: str, folder: Path) -> str:
    prov = read_config(folder / CONFIG_NAME).get("provenance", {})
    m = prov.get("metrics", {})
    missed = "; ".join(t["target"] for t in prov.get("targets", []) if not t["met"]) or "none"
    return (f"| `{name}` | {m['accuracy']['value']:.3f} | {localisation(m)} | {pointing(m)} | {missed} | "
            f"{prov['train_time_s']:.0f} s |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("registry", nargs="?", type=Path, default=ROOT / "weights" / "registry.json")
    args = ap.parse_args()
    print(HEADER)
    for entry in json.loads(args.registry.read_text())["models"]:
        print(row(entry["name"], ROOT / entry["source"]))


if __name__ == "__main__":
    main()
