"""Copy a trained stroke-risk version into the shipped weights, its card holding the `stroke evaluate` figures.

Usage (README, "Stroke risk (viewer)", has the whole recipe)::

    python scripts/ship_stroke_demo.py --weights REGISTRY --version 1.0.0 --evaluation eval.json

Why a script: ``stroke train`` writes the validation figures into the card and ``stroke
evaluate`` scores the test subjects afterwards (once), so the shipped card is a new card of
the same weights with the test figures added (cards are integrity-checked: never edited by
hand). The notes say what the figures are: one phantom cohort's held-out test subjects,
not a clinical estimate, and what the score is for this model (its validation ROC-AUC and
the test specificity of the threshold tuned there: a score, not a calibrated risk). Nothing else changes: the weights are byte-identical (their sha256
is checked on load) and the config, parent and training data are the trained version's.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from napari_neuroreview.core.io import strict_json
from napari_neuroreview.core.model_loading import load_state_dict
from napari_neuroreview.core.registry import (
    DEMO_NOTE,
    SHIPPED_WEIGHTS_ROOT,
    save_model,
    version_dir,
)
from napari_neuroreview.core.tasks.stroke.downstream import MODEL_NAME
from napari_neuroreview.core.tasks.stroke.evaluate import METRICS


def shipped_card_fields(card, evaluation: dict) -> dict:
    """The trained card's metrics plus ``test_<metric>_<head>``, config["test"], and the demo notes."""
    test = evaluation["test"]
    metrics = dict(card.metrics)
    for head, scores in evaluation["heads"].items():
        for metric in METRICS:
            metrics[f"test_{metric}_{head}"] = float(scores[metric]["value"])
    ensemble = evaluation["heads"]["ensemble"]
    val_auc = card.metrics["val_auc_ensemble"]
    notes = (f"{DEMO_NOTE}. Its score is not a calibrated risk: the ensemble's validation ROC-AUC is {val_auc:.2f}"
             f"{' (below chance)' if val_auc < 0.5 else ''}, and the threshold tuned there (signed Youden J) calls "
             f"nearly every subject high (test specificity {ensemble['specificity']['value']:.2f}, sensitivity "
             f"{ensemble['sensitivity']['value']:.2f}). Test figures (metrics test_*, config.test) are PHANTOM figures: `neuroreview stroke "
             f"evaluate` on the {test['subjects']} held-out test subjects ({test['strokes']} written strokes) of the "
             f"simulated cohort it was trained on (ensemble ROC-AUC {ensemble['roc_auc']['value']:.2f}, 95 % "
             f"subject-bootstrap CI {ensemble['roc_auc']['ci95'][0]:.2f}-{ensemble['roc_auc']['ci95'][1]:.2f}); "
             "not an estimate of performance on patients.")
    config = {**card.config, "test": {k: evaluation[k] for k in ("test", "bootstrap", "heads")}}
    return {"metrics": metrics, "notes": notes, "config": config}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True, help="the registry `stroke train` saved the version in")
    parser.add_argument("--version", required=True)
    parser.add_argument("--evaluation", required=True, help="`stroke evaluate --json` of that version")
    parser.add_argument("--out", default=str(SHIPPED_WEIGHTS_ROOT), help="default: the package's weights folder")
    args = parser.parse_args()
    state, card = load_state_dict(version_dir(args.weights, MODEL_NAME, args.version))
    evaluation = strict_json.loads(Path(args.evaluation).read_text(encoding="utf-8"))
    if evaluation["model"] != {"name": card.name, "version": card.version}:
        raise SystemExit(f"{args.evaluation} scores {evaluation['model']}, not {card.name} {card.version}")
    shipped = dataclasses.replace(card, **shipped_card_fields(card, evaluation), weights_sha256="", card_sha256="")
    print(save_model(state, shipped, args.out))


if __name__ == "__main__":
    main()
