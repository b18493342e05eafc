"""How a model version is described to the user: demo flag, held-out figures, picker label.

One place, so the review widget, the retraining widget, the Networks widget and
``neuroreview models list`` say the same thing about a version.
"""

from __future__ import annotations

from typing import Any

from napari_neuroreview.core.registry import DEMO_NOTE, ModelCard

def is_demo(card: ModelCard) -> bool:
    """Weights trained on simulated data (the shipped ones and anything fine-tuned from them)."""
    return DEMO_NOTE in card.notes


def held_out_text(card: ModelCard) -> str:
    """One line of a card's figures on held-out reviews, or '' when it has none.

    Cards made by retraining hold ``config["held_out"]``: the parent's and this
    version's sensitivity and FP/scan, each at its own threshold, on the same scans.
    """
    held = card.config.get("held_out")
    if not isinstance(held, dict) or not isinstance(held.get("after"), dict):
        return ""

    def figures(part: Any) -> str:
        if not isinstance(part, dict):
            return "?"
        sens, fp, thr = (part.get(k) for k in ("sensitivity", "fp_per_subject", "threshold"))
        return (f"sensitivity {_num(sens)}, FP/scan {_num(fp)} at threshold {_num(thr, 3)}")

    text = f"held-out ({held.get('n_scans', '?')} reviewed scans): {figures(held['after'])}"
    if isinstance(held.get("before"), dict):
        text += f"; parent {held.get('parent', '?')}: {figures(held['before'])}"
    return text


def version_label(card: ModelCard, default: str | None) -> str:
    """A version as a picker shows it: default mark, demo flag, held-out figures, refusal flag.

    One place, so the review widget, the retraining widget and ``models list`` agree.
    """
    parts = [card.version + (" (default)" if card.version == default else "")]
    if is_demo(card):
        parts.append("demo weights")
    held = card.config.get("held_out")
    after = held.get("after") if isinstance(held, dict) else None
    if isinstance(after, dict):
        parts.append(f"held-out sensitivity {_num(after.get('sensitivity'))}, FP/scan {_num(after.get('fp_per_subject'))}"
                     f" ({held.get('n_scans', '?')} scans)")
    else:
        parts.append("no held-out reviews")
    reason = card.config.get("not_default")
    if reason:  # retraining writes True (worse on held-out reviews); a shipped card may say why in words
        parts.append(f"not default: {reason}" if isinstance(reason, str) else "not default: worse on held-out reviews")
    return " \u00b7 ".join(parts)


def tag_label(card: ModelCard, default: str | None) -> str:
    """A version with its default mark and its card's tag only: demo or own weights.

    For models whose cards carry no held-out reviews (the networks model), where
    :func:`version_label`'s "no held-out reviews" would say nothing useful.
    """
    mark = " (default)" if card.version == default else ""
    return f"{card.version}{mark} \u00b7 {'demo weights' if is_demo(card) else 'own weights'}"


def _num(value: Any, digits: int = 2) -> str:
    return f"{float(value):.{digits}f}" if isinstance(value, (int, float)) else "n/a"
