"""User mistakes end as one sentence and exit 2; a bug keeps its traceback (issue 9, item 7).

The CLI maps only ``NeuroreviewError`` to exit 2. It used to turn every ``ValueError``
of ``networks evaluate`` / ``train`` into a user error, so a bug in the model code
printed as "your cohort is wrong".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_neuroreview.cli import main
from napari_neuroreview.core import errors


def _cohort(root: Path, patients: int, states: tuple[str, ...] = ("pre", "post")) -> Path:
    """A cohort's folder layout only: the BOLD files are not NIfTI, so reading any would fail."""
    for p in range(1, patients + 1):
        for state in states:
            session = root / f"sub-{p:03d}" / f"ses-{state}"
            session.mkdir(parents=True)
            (session / "bold.nii.gz").write_bytes(b"not read: refused by the folder names alone")
    return root


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(f): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()}


def _refused(argv: list[str], capsys, cohort: Path, outputs: list[Path]) -> str:
    before = _snapshot(cohort)
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert all(not out.exists() for out in outputs)
    assert _snapshot(cohort) == before
    return err


@pytest.mark.parametrize("command", ["evaluate", "train"])
def test_too_few_patients_for_the_folds_is_one_sentence(command, tmp_path, capsys) -> None:
    cohort = _cohort(tmp_path / "cohort", patients=2)
    out = tmp_path / ("cv.json" if command == "evaluate" else "models")
    extra = ["--folds", "5", "--json", str(out)] if command == "evaluate" else ["--cv", "5", "--out", str(out),
                                                                               "--version", "1.0.0"]
    err = _refused(["networks", command, "--data", str(cohort), "--quiet", *extra], capsys, cohort, [out])
    assert "2 patients cannot fill 5 folds" in err and str(cohort) in err  # not the unreadable BOLD: refused first


@pytest.mark.parametrize("command", ["evaluate", "train"])
def test_a_cohort_without_post_scans_is_one_sentence(command, tmp_path, capsys) -> None:
    cohort = _cohort(tmp_path / "cohort", patients=3, states=("pre",))
    out = tmp_path / ("cv.json" if command == "evaluate" else "models")
    extra = ["--folds", "2", "--json", str(out)] if command == "evaluate" else ["--cv", "0", "--out", str(out),
                                                                               "--version", "1.0.0"]
    err = _refused(["networks", command, "--data", str(cohort), "--quiet", *extra], capsys, cohort, [out])
    assert "no ses-post session" in err


def test_a_bug_in_evaluate_keeps_its_traceback(tmp_path, monkeypatch) -> None:
    from napari_neuroreview.core.tasks.networks import evaluate

    def broken(*args, **kwargs):
        raise ValueError("operands could not be broadcast together")  # what a bug looks like
        yield

    monkeypatch.setattr(evaluate, "evaluate_cohort", broken)
    cohort = _cohort(tmp_path / "cohort", patients=2)
    with pytest.raises(ValueError, match="broadcast"):
        main(["networks", "evaluate", "--data", str(cohort), "--folds", "2", "--quiet"])


def test_a_bug_in_train_keeps_its_traceback(tmp_path, monkeypatch) -> None:
    from napari_neuroreview.core.tasks.networks import train

    def broken(*args, **kwargs):
        raise ValueError("operands could not be broadcast together")
        yield

    monkeypatch.setattr(train, "train_on_cohort", broken)
    cohort = _cohort(tmp_path / "cohort", patients=2)
    with pytest.raises(ValueError, match="broadcast"):
        main(["networks", "train", "--data", str(cohort), "--out", str(tmp_path / "models"), "--version", "1.0.0",
              "--cv", "0", "--quiet"])


def test_one_state_of_training_rows_is_a_user_error_not_a_bug() -> None:
    """A cohort's worth of rows that are all pre: refused before stage 1 spends an epoch."""
    from napari_neuroreview.core.tasks.networks import train

    with pytest.raises(errors.InsufficientDataError, match="pre scan"):
        train._check_labels(_Rows(np.zeros(4, dtype=np.int64)))
    with pytest.raises(errors.InsufficientDataError, match="no scans"):
        train._check_labels(_Rows(np.zeros(0, dtype=np.int64)))
    with pytest.raises(errors.InsufficientDataError, match="both pre and post"):
        train.fit_logistic(np.ones((6, 2)), np.zeros(6), np.arange(6))


class _Rows:
    """Just what ``_check_labels`` reads of NetworkRows."""

    def __init__(self, labels: np.ndarray) -> None:
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)


def test_cancel_is_not_an_error_class() -> None:
    """Nothing raised CancelledError: a cancelled task is a closed generator, so the class is gone."""
    assert not hasattr(errors, "CancelledError")


def test_only_a_phantom_cohort_makes_demo_weights(tmp_path) -> None:
    """`networks train` flags its card as demo weights only when the cohort is simulated."""
    from napari_neuroreview.core.tasks.networks.cohort import is_simulated

    real = _cohort(tmp_path / "real", patients=2)
    phantom = _cohort(tmp_path / "phantom", patients=2)
    (phantom / "cohort.json").write_text('{"n_patients": 2, "seed": 0}', encoding="utf-8")
    assert is_simulated(phantom) and not is_simulated(real)


def test_a_bug_while_reading_networks_json_is_not_blamed_on_the_file(tmp_path, monkeypatch) -> None:
    """The reader names the file for a wrong field only; a KeyError in the code stays a KeyError."""
    from napari_neuroreview.core.tasks.networks.assignment_io import load_networks_json
    from napari_neuroreview.core.tasks.networks.matching import Assignment

    (tmp_path / "networks.json").write_text('{"networks": {"motor": 3}}', encoding="utf-8")
    with pytest.raises(errors.InputFileError, match=r"networks.json: is not a valid networks.json \(no scores\)"):
        load_networks_json(tmp_path)

    def broken(cls, doc):
        return {}["a bug"]

    monkeypatch.setattr(Assignment, "from_json", classmethod(broken))
    with pytest.raises(KeyError, match="a bug"):
        load_networks_json(tmp_path)
