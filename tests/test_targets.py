"""The demo models' targets (fgviz.training.targets) and the card that prints them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fgviz.training import evaluate, targets

ROOT = Path(__file__).resolve().parents[1]


def fig(value, chance=None):
    return {"value": value, "chance": chance}


def by_target(result):
    return {t["target"]: t for t in targets.check(result)}


def test_every_rule_against_numbers_worked_by_hand():
    result = {
        "trained": {"accuracy": fig(0.9, 0.0625), "psm_part_hit_rate": fig(0.5, 0.2),
                    "crop_area_share": fig(0.5), "crop_recall": fig(0.6, 0.3), "crop_recall_oracle": fig(0.7, 0.2),
                    "rollout_energy_pointing": fig(0.2, 0.05)},
        "randomized": {"accuracy": fig(0.06, 0.0625), "psm_part_hit_rate": fig(0.4, 0.2),
                       "rollout_energy_pointing": fig(0.08, 0.05)},
    }
    t = by_target(result)
    assert t["accuracy >= 0.9"]["met"]  # the bar itself passes
    assert t["psm_part_hit_rate >= 2x chance"] == {"target": "psm_part_hit_rate >= 2x chance", "value": 0.5,
                                                  "bar": 0.4, "met": True}
    assert not t["psm_part_hit_rate >= 1.5x re-initialised"]["met"] and t[
        "psm_part_hit_rate >= 1.5x re-initialised"]["bar"] == pytest.approx(0.6)
    assert not t["crop_area_share < 0.5"]["met"]  # strictly below
    assert t["crop_recall > chance"] == {"target": "crop_recall > chance", "value": 0.6, "bar": 0.3, "met": True}
    assert "crop_recall >= 2x chance" not in t  # retired (issue 22): above the DPPM's own ceiling on this data
    assert not t["crop_recall >= 0.9x oracle"]["met"] and t["crop_recall >= 0.9x oracle"]["bar"] == pytest.approx(0.63)
    assert t["rollout_energy_pointing >= 2x chance"]["met"]  # 0.2 >= 2 x 0.05
    assert t["rollout_energy_pointing >= 2x re-initialised"]["bar"] == pytest.approx(0.16)  # 0.2 >= 2 x 0.08
    assert t["rollout_energy_pointing >= 2x re-initialised"]["met"]
    assert "rollout_energy_pointing >= 4x chance" not in t
    collapse = t["rollout_energy_pointing re-initialised <= 1.5x chance"]
    assert collapse["value"] == 0.08 and collapse["bar"] == pytest.approx(0.075) and not collapse["met"]
    assert not any("structure_magnification" in k for k in t)  # no such figure: no such target
    # "above" the random box is strict, and a re-initialised rollout at 0.11 makes 2x of it 0.22 > 0.2
    level = by_target({"trained": {"crop_recall": fig(0.3, 0.3), "rollout_energy_pointing": fig(0.2, 0.05)},
                       "randomized": {"rollout_energy_pointing": fig(0.11, 0.05)}})
    assert not level["crop_recall > chance"]["met"]
    assert not level["rollout_energy_pointing >= 2x re-initialised"]["met"]
    assert level["rollout_energy_pointing >= 2x chance"]["met"]


def test_a_target_without_its_reference_is_skipped_not_passed():
    result = {"trained": {"psm_part_hit_rate": fig(0.9, None), "crop_recall": fig(0.9, 0.1)}}
    t = by_target(result)
    assert set(t) == {"crop_recall > chance"}  # no chance, no re-init run, no oracle: nothing else is claimed


def test_the_card_says_which_targets_are_missed(tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(ROOT / "weights" / "transfg-birds-demo", folder)
    chance = 1 / 16
    earlier = {"model": "elsewhere", "domain": "birds", "n": 7, "seed": 5, "data_version": 2,
               "trained": {"accuracy": fig(0.95, chance), "psm_part_hit_rate": fig(0.3, 0.2)},
               "randomized": {"accuracy": fig(0.05, chance), "psm_part_hit_rate": fig(0.25, 0.2)}}
    (tmp_path / "r.json").write_text(json.dumps(earlier))
    evaluate.main([str(folder), "--update-card", "--from-result", str(tmp_path / "r.json")])
    prov = json.loads((folder / "config.json").read_text())["provenance"]
    assert [t["met"] for t in prov["targets"]] == [True, False, False]  # accuracy; 0.3 < 0.4; 0.3 < 0.375
    card = (folder / "README.md").read_text()
    assert "| psm_part_hit_rate >= 2x chance | 0.3 | 0.4 | **missed** |" in card
    assert f"python -m fgviz.evaluate {folder} --n 7 --seed 5" in card  # the folder it is now in


def test_from_result_needs_update_card_and_one_folder(capsys):
    with pytest.raises(SystemExit):
        evaluate.main(["a", "--from-result", "r.json"])
    assert "--from-result needs --update-card" in capsys.readouterr().err


def test_the_banner_says_when_a_models_card_records_missed_targets():
    """The app's weights banner carries the card's verdict, so a map that is not evidence is not shown as such."""
    import numpy as np

    import fgviz
    from fgviz.explorer.views import weights_note

    model = fgviz.load("transfg-birds-demo", device="cpu")
    image = np.zeros((64, 64, 3), np.uint8)
    saved = model.provenance.get("targets")
    try:
        model.provenance["targets"] = [
            {"target": "accuracy >= 0.9", "value": 0.5, "bar": 0.9, "met": False},  # not a localisation target
            {"target": "psm_part_hit_rate >= 2x chance", "value": 0.5, "bar": 0.4, "met": True},
            {"target": "psm_part_hit_rate >= 1.5x re-initialised", "value": 0.5, "bar": 0.6, "met": False},
        ]
        e = model.explain(image)
        assert e.missed_targets == ("psm_part_hit_rate >= 1.5x re-initialised",)
        note = weights_note(e, synthetic=True)
        assert "psm_part_hit_rate >= 1.5x re-initialised" in note and "not as evidence" in note
        assert "2x chance" not in note and "accuracy" not in note
        model.provenance["targets"] = [{"target": "psm_part_hit_rate >= 2x chance", "value": 0.5, "bar": 0.4,
                                        "met": True}]
        assert "evidence" not in weights_note(model.explain(image), synthetic=True)
        assert model.reinitialized().explain(image).missed_targets == ()  # "random" says enough
    finally:
        if saved is None:
            model.provenance.pop("targets", None)
        else:
            model.provenance["targets"] = saved


def test_the_readme_demo_table_is_printed_from_the_cards(capsys, monkeypatch):
    """README's demo table is `python scripts/demo_table.py` output: each card's figures and missed targets."""
    from scripts import demo_table

    monkeypatch.setattr("sys.argv", ["demo_table.py"])
    demo_table.main()
    table = capsys.readouterr().out
    assert table.strip() in (ROOT / "README.md").read_text()
    for entry in json.loads((ROOT / "weights" / "registry.json").read_text())["models"]:
        prov = json.loads((ROOT / entry["source"] / "config.json").read_text())["provenance"]
        missed = "; ".join(t["target"] for t in prov["targets"] if not t["met"]) or "none"
        line = next(x for x in table.splitlines() if x.startswith(f"| `{entry['name']}` |"))
        assert line.split(" | ")[-2] == missed
        assert prov["targets"] == targets.check(prov_result(prov))  # the card holds the current targets


def prov_result(prov):
    """An `evaluate`-shaped result rebuilt from a card's metrics, to check the card's targets are today's."""
    trained = {k: {"value": v["value"], "chance": v.get("chance")} for k, v in prov["metrics"].items()}
    randomized = {k: {"value": v["randomized"], "chance": v.get("chance")} for k, v in prov["metrics"].items()
                  if "randomized" in v}
    return {"trained": trained, "randomized": randomized}
