"""benchmarks/cmb.py --loso: the per-CMB strata rule, the lazy scan list, BasicUNet's grid."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import _cmb_loso as loso
import _cmb_loso_plan as plan
import cmb as bench


def _case(pairs: list[tuple[int, int]], unmatched_pred: list[int]) -> SimpleNamespace:
    matching = SimpleNamespace(pairs=pairs, unmatched_pred=unmatched_pred,
                               unmatched_truth=[], distances=[0.0] * len(pairs))
    return SimpleNamespace(matching=matching)


def test_per_cmb_found_at_one_fp_per_scan() -> None:
    """A CMB counts at <= 1 FP/scan only when it scores above the first FP the scans cannot afford."""
    records = [{"sweep": {"score": np.array([0.9, 0.8, 0.3])}}, {"sweep": {"score": np.array([0.95, 0.5])}}]
    cases = [_case([(0, 0), (2, 1)], [1]), _case([(1, 0)], [0])]
    metas = [[{"id": 1, "diameter_mm": 4.0}, {"id": 2, "diameter_mm": 2.5}], [{"id": 1, "diameter_mm": 6.0}]]
    rows, cut = loso.per_cmb_found(records, cases, metas, "sweep")
    # FP scores 0.95, 0.8; two scans afford two FPs -> no cut; one FP/scan on one scan -> cut at 0.95
    assert cut == -np.inf and all(r["found_1fp"] for r in rows)
    rows, cut = loso.per_cmb_found(records[:1], cases[:1], metas[:1], "sweep")
    assert cut == -np.inf
    rows, cut = loso.per_cmb_found(records, cases, metas, "sweep", max_fp_per_scan=0.5)
    assert cut == 0.8
    assert [r["found_1fp"] for r in rows] == [True, False, False]
    assert [r["score"] for r in rows] == [0.9, 0.3, 0.5]


def _write_case(path: Path, zooms: tuple[float, float, float]) -> None:
    instances = np.zeros((12, 12, 8), np.uint16)
    instances[5:7, 5:7, 3:5] = 1
    magnitude = np.full(instances.shape, 100, np.int16)
    np.savez(path, magnitude=magnitude, phase=np.zeros(0, np.float32), affine=np.diag([*zooms, 1.0]),
             instances=instances, cmbs=np.array(json.dumps([{"id": 1, "diameter_mm": 2.4, "location": "deep",
                                                             "region": "thalamus"}])),
             scanner=np.array("{}"))


def test_npz_scans_load_lazily_and_truth_meta(tmp_path: Path) -> None:
    paths = [tmp_path / f"c{i}.npz" for i in range(2)]
    for p in paths:
        _write_case(p, (1.0, 1.0, 2.0))
    scans = loso.NpzScans([str(p) for p in paths])
    assert len(scans) == 2
    assert [s.name for s in scans] == ["c0", "c1"]
    assert scans[1].positives.shape == (1, 3)
    with pytest.raises(IndexError):
        scans[2]
    assert loso.truth_meta(str(paths[0]))[0]["location"] == "deep"


def test_unet_train_zooms_shared_or_isotropic(tmp_path: Path) -> None:
    """One shared spacing is kept (the default run); mixed spacings go isotropic at the median edge."""
    a, b, c = (tmp_path / f"{n}.npz" for n in "abc")
    _write_case(a, (0.9, 0.9, 1.8))
    _write_case(b, (0.9, 0.9, 1.8))
    assert np.allclose(bench.unet_train_zooms([str(a), str(b)]), (0.9, 0.9, 1.8))
    _write_case(c, (2.0, 0.5, 0.5))
    edges = sorted(np.prod(z) ** (1 / 3) for z in [(0.9, 0.9, 1.8)] * 2 + [(2.0, 0.5, 0.5)])
    assert np.allclose(bench.unet_train_zooms([str(a), str(b), str(c)]), [edges[1]] * 3)


def test_cached_answer_only_for_the_same_spec_and_a_newer_answer(tmp_path: Path) -> None:
    """An interrupted --loso run resumes; a changed spec or a retrained model is run again."""
    import os

    import _common as common

    spec = {"task": "eval", "cases": ["a.npz"]}
    out = tmp_path / "job.out.pkl"
    (tmp_path / "job.spec.json").write_text(json.dumps(common.clean_json(dict(spec, out=str(out)))))
    assert loso.cached_answer(spec, tmp_path, "job") is None  # no answer yet
    common.write_answer(dict(spec, out=str(out)), {"x": 1})
    assert loso.cached_answer(spec, tmp_path, "job") == {"x": 1}
    assert loso.cached_answer({**spec, "cases": ["b.npz"]}, tmp_path, "job") is None
    model = tmp_path / "model.pt"
    model.write_text("weights")
    os.utime(model, (out.stat().st_mtime + 10,) * 2)  # retrained after the answer
    assert loso.cached_answer(spec, tmp_path, "job", after=model) is None
    os.utime(model, (out.stat().st_mtime - 10,) * 2)
    assert loso.cached_answer(spec, tmp_path, "job", after=model) == {"x": 1}


def test_card_figures_mark_the_held_out_simulator_and_drop_nan() -> None:
    """The card gets ours only, per pair; a pair is 'held out' when its test simulator was not trained on."""
    def report(sens: float) -> dict:
        return {"threshold": 0.4, "per_case": [{}, {}], "froc_at_fp": {"1.0": sens},
                "summary": {"n_truth": 10, "sensitivity": sens, "fp_per_subject": 0.5, "f1_pooled": 0.7,
                            "dice_per_cmb_mean": float("nan")},
                "strata": {"size 2-3 mm": {"n": 3, "sensitivity_at_1fp": 0.5}}}

    results = {"sizes": {"train": 2, "val": 1, "test": 2}, "seeds": {"test_A": [740000, 740001], "test_B": []},
               "pairs": {"A->B": {"ours": report(0.6), "log": report(0.9)}, "A+B->A": {"ours": report(0.8)},
                         "B->A": {"log": report(0.1)}}}
    card = loso.card_figures(results)
    assert set(card["pairs"]) == {"A->B", "A+B->A"}  # B->A has no 'ours'
    assert card["pairs"]["A->B"]["held_out_simulator"] and not card["pairs"]["A+B->A"]["held_out_simulator"]
    assert card["pairs"]["A->B"]["sensitivity"] == 0.6 and card["pairs"]["A->B"]["dice_per_cmb_mean"] is None
    assert card["pairs"]["A->B"]["sensitivity_at_1_fp_per_scan_by_stratum"]["size 2-3 mm"] == {"n": 3, "sensitivity": 0.5}
    assert card["seeds_first"] == {"test_A": 740000}
    json.dumps(card, allow_nan=False)


def test_card_figures_leave_out_the_variant_twins() -> None:
    """A --loso-variant twin ("B+pr") is another recipe: its figures must not reach a shipped card."""
    report = {"threshold": 0.4, "per_case": [{}], "froc_at_fp": {},
              "summary": {"n_truth": 1, "sensitivity": 1.0, "fp_per_subject": 0.0, "f1_pooled": 1.0,
                          "dice_per_cmb_mean": 0.5}, "strata": {}}
    trainings = plan.plan_trainings(["B"], "phase_randomised")
    results = {"sizes": {}, "seeds": {}, "trainings": trainings,
               "pairs": {f"{t['name']}->{test}": {"ours": report} for t in trainings for test in ("A", "B")}}
    assert set(results["pairs"]) == {"B->A", "B->B", "B+pr->A", "B+pr->B"}
    assert set(loso.card_figures(results)["pairs"]) == {"B->A", "B->B"}
    del results["trainings"]  # a results file from before the plan was recorded: told by the suffix
    assert set(loso.card_figures(results)["pairs"]) == {"B->A", "B->B"}


def test_card_figures_of_a_variant_are_its_twins_under_the_baseline_names() -> None:
    """--card-variant: weights trained with the recipe get the twins' figures, renamed, with the recipe named."""
    def report(sensitivity: float) -> dict:
        return {"threshold": 0.4, "per_case": [{}], "froc_at_fp": {}, "strata": {},
                "summary": {"n_truth": 1, "sensitivity": sensitivity, "fp_per_subject": 0.0, "f1_pooled": 1.0,
                            "dice_per_cmb_mean": 0.5}}
    trainings = plan.plan_trainings(["A", "B"], "phase_magnitude_half")
    results = {"sizes": {}, "seeds": {}, "trainings": trainings,
               "pairs": {f"{t['name']}->{test}": {"ours": report(0.9 if "+" in t["name"] else 0.1)}
                         for t in trainings for test in ("A", "B")}}
    card = loso.card_figures(results, "phase_magnitude_half")
    assert set(card["pairs"]) == {"A->A", "A->B", "B->A", "B->B"}
    assert {p["sensitivity"] for p in card["pairs"].values()} == {0.9}
    assert card["pairs"]["A->B"]["held_out_simulator"] and not card["pairs"]["B->B"]["held_out_simulator"]
    assert card["recipe"] == {"loso_variant": "phase_magnitude_half",
                              "fit": {"phase_randomise": True, "magnitude_randomise": True, "magnitude_p": 0.5}}
    assert {p["sensitivity"] for p in loso.card_figures(results)["pairs"].values()} == {0.1}


def test_a_seeded_twin_has_its_own_name_version_and_seed() -> None:
    """--loso-variant-seed 1: the same recipe from another seed, beside (not over) seed 0's twin."""
    first = plan.plan_trainings(["A"], "magnitude_randomised")[1]
    again = plan.plan_trainings(["A"], "magnitude_randomised", 1)[1]
    assert (first["name"], first["version"], first["fit"]) == ("A+mr", "0.1.3", {"magnitude_randomise": True})
    assert (again["name"], again["version"]) == ("A+mr.s1", "0.1.13")
    assert again["fit"] == {"magnitude_randomise": True, "seed": 1}
    report = {"threshold": 0.4, "per_case": [{}], "froc_at_fp": {}, "strata": {},
              "summary": {"n_truth": 1, "sensitivity": 1.0, "fp_per_subject": 0.0, "f1_pooled": 1.0,
                          "dice_per_cmb_mean": 0.5}}
    trainings = plan.plan_trainings(["A"], "magnitude_randomised", 1)
    results = {"sizes": {}, "seeds": {}, "trainings": trainings,
               "pairs": {f"{t['name']}->{test}": {"ours": report} for t in trainings for test in ("A", "B")}}
    assert set(loso.card_figures(results)["pairs"]) == {"A->A", "A->B"}  # the twin is not the baseline
    card = loso.card_figures(results, "magnitude_randomised")
    assert set(card["pairs"]) == {"A->A", "A->B"}
    assert card["recipe"]["fit"] == {"magnitude_randomise": True, "seed": 1}


@pytest.mark.parametrize("jobs", [1, 2])
def test_train_ours_runs_loso_jobs_trainings_at_once(tmp_path: Path, jobs: int) -> None:
    """--loso-jobs 2: a baseline and its twin train side by side (each its own process); 1: one after the other."""
    script = tmp_path / "fake_worker.py"
    script.write_text(
        "import json, sys, time\n"
        f"sys.path.insert(0, {str(BENCH)!r})\n"
        "import _common as common\n"
        "spec = json.loads(open(sys.argv[2]).read())\n"
        "start = time.time(); time.sleep(1.5)\n"
        "import pathlib; (pathlib.Path(spec['root']) / 'cmb-detector' / spec['version']).mkdir(parents=True)\n"
        "common.write_answer(spec, {'seconds': 1.5, 'threshold': 0.5, 'start': start, 'end': time.time(),"
        " 'fit': spec['fit']})\n"
    )
    trainings = plan.plan_trainings(["B"], "scanner_randomised")
    cases = plan.plan_cases(tmp_path, {"train": 1, "val": 1, "test": 1}, trainings)
    args = SimpleNamespace(quick=False, loso_jobs=jobs)
    out = loso.train_ours(script, tmp_path, {"threads": 1}, cases, args, trainings)
    assert set(out) == {"B", "B+sr"}
    assert out["B"]["fit"] == {} and out["B+sr"]["fit"] == {"phase_randomise": True, "magnitude_randomise": True}
    overlap = min(out["B"]["end"], out["B+sr"]["end"]) - max(out["B"]["start"], out["B+sr"]["start"])
    assert (overlap > 0.5) if jobs == 2 else (overlap < 0)
    again = loso.train_ours(script, tmp_path, {"threads": 1}, cases, args, trainings)  # answers reused (model saved)
    assert again == out


def test_each_variant_twin_has_its_own_version() -> None:
    """Twins of different variants must not share a registry version: training one would delete the other's weights."""
    versions = {name: [t["version"] for t in plan.plan_trainings(["A", "B"], name)] for name in plan.VARIANTS}
    twins = [v for vs in versions.values() for v in vs[1::2]]
    assert len(set(twins)) == len(twins) == 2 * len(plan.VARIANTS)
    assert versions["scanner_randomised"] == ["0.1.0", "0.1.1", "0.2.0", "0.2.1"]  # the weights of earlier runs
    assert all(v.split(".")[:2] == b.split(".")[:2] for vs in versions.values() for b, v in zip(vs[::2], vs[1::2]))


@pytest.mark.parametrize("argv, said", [
    (["--loso-variant-seed", "1"], "needs --loso-variant"),
    (["--loso-variant", "phase_randomised", "--loso-variant-seed", "-1"], "must be 0 or more"),
    (["--loso-variant", "no_such"], "is unknown"),
])
def test_loso_refuses_a_bad_variant_request_in_one_sentence(argv: list[str], said: str, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Refused before anything is simulated or trained: the workdir stays empty."""
    work = tmp_path / "work"
    assert bench.main(["--loso", "--workdir", str(work), *argv]) == 2
    err = capsys.readouterr().err
    assert said in err and err.count("\n") == 1
    assert not work.exists()


def test_plan_trainings_refuses_with_the_sentence_the_command_prints() -> None:
    """One check (``request_problem``) behind both refusals, so the words cannot drift apart."""
    for kwargs in ({"variant": "no_such"}, {"variant": "phase_randomised", "variant_seed": -1},
                   {"variant_seed": 1}, {"only": ["C"]}):
        said = plan.request_problem(**kwargs)
        assert said and said.startswith("--loso-")
        with pytest.raises(ValueError) as caught:
            plan.plan_trainings(**kwargs)
        assert str(caught.value) == said
    assert plan.request_problem(["A"], "phase_randomised", 2) is None
