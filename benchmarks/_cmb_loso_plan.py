"""What a leave-one-simulator-out run trains and simulates (``benchmarks/cmb.py --loso``).

The seeds, the trainings of ours (A, B, A+B and each one's ``--loso-variant`` twin) and the
cases they need, kept apart from ``_cmb_loso`` (which runs them and reports) so that a
request can be checked, and refused in one sentence, before anything is simulated.

Seeds (used by nothing else): train 700000+i / 710000+i, validation 720000+i / 730000+i,
test 740000+i / 750000+i (A / B); the 512 x 512 x 160 speed scan 760000.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from napari_neuroreview.core.tasks.cmb.training import SCANNER_RECIPES

SIMULATORS = {"A": "phenomenological", "B": "physics"}
SEEDS = {("train", "A"): 700_000, ("train", "B"): 710_000, ("val", "A"): 720_000, ("val", "B"): 730_000,
         ("test", "A"): 740_000, ("test", "B"): 750_000}
#: (name, training simulators, registry version of our detector, BasicUNet trained too).
TRAININGS = (("A", ("A",), "0.1.0", True), ("B", ("B",), "0.2.0", True), ("A+B", ("A", "B"), "0.3.0", False))
#: ``--loso-variant NAME``: (suffix, last version digit, FitConfig overrides) of an extra training of
#: ours beside each selected one, on the same scans and validation scans: "B" gets "B+pr" (version
#: 0.2.2). Each variant has its own version, so twins of different variants never overwrite each
#: other's weights. The overrides are ``training.SCANNER_RECIPES`` (``cmb train --scanner-augment``):
#: "scanner_randomised" is "both", "scanner_randomised_axial" "both_axial", the others the recipe
#: of their name ("phase", "magnitude", "phase_magnitude_half"); "baseline" has none.
VARIANTS: dict[str, tuple[str, int, dict[str, Any]]] = {
    "scanner_randomised": ("sr", 1, SCANNER_RECIPES["both"]),
    "phase_randomised": ("pr", 2, SCANNER_RECIPES["phase"]),
    "magnitude_randomised": ("mr", 3, SCANNER_RECIPES["magnitude"]),
    "phase_magnitude_half": ("pm50", 4, SCANNER_RECIPES["phase_magnitude_half"]),
    "scanner_randomised_axial": ("sra", 5, SCANNER_RECIPES["both_axial"]),
    # No overrides: the baseline's own recipe (the shipped one), so that with --loso-variant-seed
    # its spread over seeds is measured the way a variant's is ("B+base.s1", version 0.2.16).
    "baseline": ("base", 6, {}),
}
SPEED_512 = {"seed": 760_000, "voxel_size": (0.45, 0.45, 1.2), "shape": (512, 512, 160)}


def request_problem(only: Sequence[str] | None = None, variant: str | None = None,
                    variant_seed: int = 0) -> str | None:
    """Why this run cannot be planned, in one sentence, or None when it can.

    Why one function: ``cmb.py --loso`` refuses before anything is simulated and
    :func:`plan_trainings` refuses when called directly, with the same words.
    """
    if variant is not None and variant not in VARIANTS:
        return f"--loso-variant {variant!r} is unknown; known: {', '.join(VARIANTS)}"
    if variant_seed < 0:
        return f"--loso-variant-seed must be 0 or more, not {variant_seed}"
    if variant_seed and variant is None:
        return "--loso-variant-seed needs --loso-variant (the recipe to train again)"
    names = [t[0] for t in TRAININGS]
    unknown = sorted(set(only or ()) - set(names))
    if unknown:
        return f"--loso-only {', '.join(unknown)} is unknown; known: {', '.join(names)}"
    return None


def plan_trainings(only: Sequence[str] | None = None, variant: str | None = None,
                   variant_seed: int = 0) -> list[dict[str, Any]]:
    """The trainings of ours in this run: ``TRAININGS`` (or those named in ``only``), each followed
    by its ``variant`` twin (FitConfig overrides from ``VARIANTS``) when one is named.

    Why a twin rather than a second run: the baseline and the variant then train on the same
    simulated scans, are thresholded on the same validation scans and are scored in one table.
    ``variant_seed`` S > 0 trains the twin from another seed (initial weights, patch draws,
    batch order; the scans stay the same): "B+pr.s1", version 0.2.12 (digit + 10 S), so the
    seeds' spread can be read beside seed 0's twin, whose weights and scores it leaves alone.
    """
    problem = request_problem(only, variant, variant_seed)
    if problem:
        raise ValueError(problem)
    out: list[dict[str, Any]] = []
    for name, sims, version, with_unet in TRAININGS:
        if only and name not in only:
            continue
        out.append({"name": name, "sims": sims, "version": version, "unet": with_unet, "fit": {}, "base": name})
        if variant is not None:
            suffix, digit, fit = VARIANTS[variant]
            out.append({"name": f"{name}+{suffix}" + (f".s{variant_seed}" if variant_seed else ""), "sims": sims,
                        "version": f"{version[:-1]}{digit + 10 * variant_seed}", "unet": False,
                        "fit": {**fit, "seed": variant_seed} if variant_seed else dict(fit), "base": name,
                        "variant": variant})
    return out


def trained_sims(trainings: Sequence[dict[str, Any]]) -> set[str]:
    """The simulators some training uses (their train and validation scans are simulated)."""
    return {sim for t in trainings for sim in t["sims"]}


def plan_cases(work: Path, n: dict[str, int], trainings: Sequence[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Every case of the run: randomised scans and the 512 speed scan (only when A+B is trained).

    Train and validation scans only of the simulators some training uses; test scans of both.
    """
    trainings = plan_trainings() if trainings is None else trainings
    used = trained_sims(trainings)
    cases = [{"kind": f"loso_{split}_{sim}", "seed": SEEDS[(split, sim)] + i, "simulator": SIMULATORS[sim],
              "randomise": True, "path": str(work / f"loso_{split}_{sim}_{SEEDS[(split, sim)] + i}.npz")}
             for split in ("train", "val", "test") for sim in SIMULATORS for i in range(n[split])
             if split == "test" or sim in used]
    if any(t["name"] == "A+B" for t in trainings):
        cases.append({"kind": "speed512", "seed": SPEED_512["seed"], "voxel_size": list(SPEED_512["voxel_size"]),
                      "shape": list(SPEED_512["shape"]),
                      "path": str(work / f"loso_speed512_{SPEED_512['seed']}.npz")})
    return cases


def paths_of(cases: list[dict[str, Any]], split: str, sims: Sequence[str]) -> list[str]:
    return [c["path"] for sim in sims for c in cases if c["kind"] == f"loso_{split}_{sim}"]
