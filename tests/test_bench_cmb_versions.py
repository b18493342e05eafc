"""benchmarks/cmb_versions.py: the default rule, the figures it reads, and the card it writes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import cmb_versions as versions

from napari_neuroreview.core.metrics import CaseResult
from napari_neuroreview.core.registry import ModelCard, read_card, save_model


def _row(cpm: float = 0.99, froc1: float = 0.99, f1: float = 0.93, dice: float = 0.87) -> dict[str, float]:
    return {"cpm": cpm, "froc_sensitivity_at_1_fp_per_scan": froc1, "f1_pooled": f1, "dice_per_cmb_mean": dice}


def _tables(new_pooled: dict[str, float], new_set: dict[str, dict[str, float]] | None = None):
    per_set = {name: {"old": _row(), "new": (new_set or {}).get(name, _row())} for name in versions.SETS}
    return per_set, {"old": _row(), "new": new_pooled}


def test_verdict_takes_a_version_as_good_and_refuses_each_rule_broken() -> None:
    assert versions.verdict("old", "new", *_tables(_row()))[0] is True
    cases = {"rule 1": _row(cpm=0.98), "rule 3": _row(f1=0.92), "rule 4": _row(dice=0.86)}
    for rule, pooled in cases.items():
        passed, why = versions.verdict("old", "new", *_tables(pooled))
        assert not passed and why.startswith("not default: ") and rule in why and why.count("fails") == 1
    # rule 2: one set's FROC sensitivity at 1 FP/scan may fall by up to the slack, not more
    within = versions.verdict("old", "new", *_tables(_row(), {"B_random": _row(froc1=0.99 - 0.02)}))
    beyond = versions.verdict("old", "new", *_tables(_row(), {"B_random": _row(froc1=0.99 - 0.03)}))
    assert within[0] is True
    assert beyond[0] is False and "rule 2 fails on B_random" in beyond[1]
    # a gap that rounds away at 3 decimals is written with the decimals that show it
    close = versions.verdict("old", "new", *_tables(_row(cpm=0.99 - 0.0004)))
    assert "pooled CPM 0.9896 vs 0.9900" in close[1]


def test_figures_pool_cmbs_and_name_the_card_keys() -> None:
    found = CaseResult(n_truth=2, n_pred=3, tp=2, fp=1, fn=0, iou=[0.7, 0.8], dice=[0.8, 0.9], tp_scores=[0.9, 0.8], fp_scores=[0.7])
    missed = CaseResult(n_truth=2, n_pred=1, tp=1, fp=0, fn=1, iou=[0.6], dice=[0.7], tp_scores=[0.95], fp_scores=[])
    row = versions.figures([found, missed], [found, missed], 0.5)
    assert (row["scans"], row["cmbs"], row["sensitivity"], row["fp_per_scan"]) == (2, 4, 0.75, 0.5)
    assert row["dice_per_cmb_mean"] == pytest.approx(0.8)
    assert row["froc_sensitivity_at_1_fp_per_scan"] == 0.75 and 0 < row["cpm"] <= 0.75


def test_record_writes_the_comparison_into_a_card_that_still_reads(tmp_path: Path) -> None:
    folder = save_model({"w": torch.zeros(1)}, ModelCard(name="cmb-detector", version="9.0.0", task="cmb",
                                                         config={"not_default": "old reason"}), tmp_path)
    comparison = {"verdict": "not default: rule 1 fails (pooled CPM 0.980 vs 0.990)", "pooled": {}}
    versions.record(folder / "card.json", comparison, passed=False)
    card = read_card(folder / "card.json")  # the digest was renewed, or this would refuse the edited card
    assert card.config["held_out_simulated"] == comparison
    assert card.config["not_default"] == "rule 1 fails (pooled CPM 0.980 vs 0.990)"
    versions.record(folder / "card.json", {**comparison, "verdict": "default: rules 1-4 hold"}, passed=True)
    assert "not_default" not in read_card(folder / "card.json").config
    assert sorted(p.name for p in folder.iterdir()) == ["card.json", "model.safetensors"]  # no temporary left


@pytest.mark.parametrize(("reference", "version"), [("1.0.0", "1.0.1"), ("1.0.1", "1.0.4")])
def test_each_shipped_default_card_states_the_verdict_its_own_figures_give(reference: str, version: str) -> None:
    """The verdict a card states is the rule applied to the figures (and recipe means) the card holds."""
    from napari_neuroreview.core.registry import SHIPPED_WEIGHTS_ROOT

    held = read_card(SHIPPED_WEIGHTS_ROOT / "cmb-detector" / version).config["held_out_simulated"]
    assert set(held["per_set"]) == set(versions.SETS)
    route = held.get("generalisation")
    if route is not None:  # the route's opening is recomputed from the per-seed figures, not trusted
        recomputed = versions.generalisation(route["seeds"], "phase_randomised", "baseline")
        assert (recomputed["opened"], recomputed["means"]) == (route["opened"], route["means"])
    assert versions.verdict(reference, version, held["per_set"], held["pooled"], route) == (True, held["verdict"])


def test_a_seed_offset_moves_every_set_to_unseen_seeds_and_refuses_one_that_lands_on_used_seeds(capsys) -> None:
    """--seed-offset is for a second look on scans nobody saw: an offset reaching used seeds is refused."""
    moved = {name: versions.set_spec(name, 50_000) for name in versions.SETS}
    assert all(moved[name][1] == versions.SETS[name][1] + 50_000 for name in versions.SETS)
    assert all(moved[name][0] == versions.SETS[name][0] for name in versions.SETS)
    # no moved set reaches seeds the training (0..39), validation (100000..) or the unmoved sets use
    unmoved = {versions.SETS[name][1] for name in versions.SETS}
    assert not any(first in unmoved or first < 40 or 100_000 <= first < 110_000 for _, first, _, _ in moved.values())
    assert versions.offset_problem(50_000, 8) is None and versions.offset_problem(0, 8) is None
    assert versions.main(["--versions", "1.0.1", "1.0.2", "--seed-offset", "-1"]) == 2
    assert "--seed-offset must be 0 or more" in capsys.readouterr().err
    # B default (7000) moved onto the validation seeds, A default (500000) onto A random's
    for offset in (93_000, 240_000):
        assert versions.main(["--versions", "1.0.1", "1.0.2", "--seed-offset", str(offset)]) == 2
        assert "onto seeds validation or another set uses" in capsys.readouterr().err


def _loso(trainings: dict[str, tuple[str, str | None]], figures: dict[str, tuple[float, float, float]]) -> dict:
    """A cmb.py --loso --json result: trainings {name: (simulator, variant)}, pairs {"B->A": (>=3, 2-3, Dice)}."""
    def ours(ge3: float, s23: float, dice: float) -> dict:
        return {"strata": {"size all >= 3 mm": {"sensitivity_at_1fp": ge3}, "size 2-3 mm": {"sensitivity_at_1fp": s23}},
                "summary": {"dice_per_cmb_mean": dice}}
    return {"trainings": [{"name": n, "sims": [sim], **({"variant": v} if v else {})} for n, (sim, v) in trainings.items()],
            "pairs": {key: {"ours": ours(*f)} for key, f in figures.items()}}


def test_the_generalisation_route_opens_only_for_a_recipe_that_meets_the_held_out_targets_the_default_misses() -> None:
    good, short = (0.95, 0.85, 0.80), (0.95, 0.74, 0.80)
    runs = [_loso({"A": ("A", None), "A+pr": ("A", "phase_randomised"), "B": ("B", None), "B+pr": ("B", "phase_randomised")},
                  {"A->B": good, "A->A": (0.1, 0.1, 0.1), "A+pr->B": good, "B->A": short, "B+pr->A": good}),
            _loso({"B": ("B", None), "B+pr.s1": ("B", "phase_randomised"), "B+base.s1": ("B", "baseline")},
                  {"B->A": short, "B+pr.s1->A": (0.93, 0.79, 0.75), "B+base.s1->A": short})]
    seeds = versions.recipe_seeds(runs)
    # the seed-0 baseline "B" is in both runs and counts once; the same-simulator pair A->A is not held out
    assert sorted(seeds["baseline"]["B->A"]) == ["B", "B+base.s1"] and "A->A" not in seeds["baseline"]
    assert versions.generalisation(seeds, "phase_randomised", "baseline")["opened"] is False  # A->B: 1 seed each
    runs.append(_loso({"A+pr.s1": ("A", "phase_randomised"), "A+base.s1": ("A", "baseline")},
                      {"A+pr.s1->B": good, "A+base.s1->B": good}))
    route = versions.generalisation(versions.recipe_seeds(runs), "phase_randomised", "baseline")
    assert route["opened"] is True and "misses B->A 2-3 mm 0.740" in route["why"]
    assert route["means"]["phase_randomised"]["B->A"]["size 2-3 mm"] == pytest.approx(0.82)
    # the roles swapped: the candidate's own recipe misses a target, so the route stays shut
    assert "misses B->A 2-3 mm" in versions.generalisation(versions.recipe_seeds(runs), "baseline", "phase_randomised")["why"]


def test_the_generalisation_route_admits_a_candidate_within_its_margins_and_no_further() -> None:
    route = {"opened": True, "why": "recipe reasons"}
    within = _row(cpm=0.99 - 0.009, f1=0.93 - 0.019, dice=0.87 - 0.009)
    assert versions.verdict("old", "new", *_tables(within))[0] is False  # rules 1-4 alone refuse it
    passed, why = versions.verdict("old", "new", *_tables(within), route)
    assert passed and why.startswith("default by the generalisation route") and "rule 3 holds within its margin" in why
    for rule, beyond in {"rule 1": _row(cpm=0.99 - 0.011), "rule 3": _row(f1=0.93 - 0.021),
                         "rule 4": _row(dice=0.87 - 0.011)}.items():
        passed, why = versions.verdict("old", "new", *_tables(beyond), route)
        assert not passed and f"within its margins {rule} fails" in why
    # rule 2 keeps its slack on the route, and a shut route says why
    dropped = versions.verdict("old", "new", *_tables(within, {"A_random": _row(froc1=0.99 - 0.03)}), route)
    assert dropped[0] is False and "rule 2 fails on A_random" in dropped[1]
    shut = versions.verdict("old", "new", *_tables(within), {"opened": False, "why": "too few seeds"})
    assert shut == (False, shut[1]) and shut[1].endswith("no generalisation route: too few seeds")


def test_a_card_names_its_recipe_and_an_older_card_is_the_baseline() -> None:
    assert versions.recipe_of({"held_out_simulator_figures": {"recipe": {"loso_variant": "phase_randomised"}}}) \
        == "phase_randomised"
    assert versions.recipe_of({"held_out_simulator_figures": {"pairs": {}}}) == "baseline"
    assert versions.recipe_of({}) == "baseline"
