"""Tests of device resolution: auto order, visible fallback, named devices never faked."""

from __future__ import annotations

import pytest
import torch

from napari_neuroreview.core import device as device_mod
from napari_neuroreview.core.device import available_devices, resolve_device
from napari_neuroreview.core.errors import DeviceError


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend there is no GPU at all, whatever machine the tests run on."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_mod, "_mps_available", lambda: False)


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: f"Fake GPU {i}")


def test_auto_without_gpu_falls_back_to_cpu_visibly(no_gpu: None) -> None:
    choice = resolve_device("auto")
    assert choice.device == torch.device("cpu")
    assert choice.fallback is True and choice.requested == "auto"
    assert choice.label.startswith("CPU") and "no CUDA or MPS" in choice.label
    assert resolve_device() == choice


def test_auto_on_this_machine_is_consistent_with_torch() -> None:
    choice = resolve_device("auto")
    if torch.cuda.is_available():
        assert choice.device.type == "cuda" and not choice.fallback
    elif choice.device.type == "cpu":
        assert choice.fallback and "CPU" in choice.label


def test_named_gpu_missing_is_an_error(no_gpu: None) -> None:
    with pytest.raises(DeviceError, match="CUDA was requested but no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(DeviceError, match="CUDA was requested"):
        resolve_device("cuda:1")
    with pytest.raises(DeviceError, match="MPS was requested"):
        resolve_device("mps")
    assert available_devices() == ["auto", "cpu"]


def test_cpu_on_request_is_not_a_fallback() -> None:
    choice = resolve_device(" CPU ")
    assert choice.device == torch.device("cpu") and choice.fallback is False


def test_auto_prefers_cuda(fake_cuda: None) -> None:
    choice = resolve_device("auto")
    assert choice.device.type == "cuda" and choice.device.index == 0
    assert choice.fallback is False
    assert choice.label == "CUDA: Fake GPU 0 (cuda:0)"
    assert resolve_device("cuda:1").label == "CUDA: Fake GPU 1 (cuda:1)"
    with pytest.raises(DeviceError, match="cuda:2 was requested"):
        resolve_device("cuda:2")
    assert available_devices()[:5] == ["auto", "cpu", "cuda", "cuda:0", "cuda:1"]


def test_auto_uses_mps_when_no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_mod, "_mps_available", lambda: True)
    choice = resolve_device("auto")
    assert choice.device.type == "mps" and not choice.fallback
    assert "mps" in available_devices()


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "tpu", "", "cuda:-1"])
def test_unknown_device_string_is_refused(bad: str) -> None:
    with pytest.raises(DeviceError, match="Unknown device"):
        resolve_device(bad)
