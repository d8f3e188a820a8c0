from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from dftui.core.advice import Fix
from dftui.core.backbones import (
    BACKBONES,
    WeightsError,
    count_parameters,
    load_pretrained,
    resolve_pretrained_file,
)
from dftui.core.events import Event


def test_mobilenet_head_and_keys_match_the_reference() -> None:
    spec = BACKBONES["mobilenet_v2"]
    model = spec.build()
    ref = torchvision.models.mobilenet_v2(weights=None)
    ref.classifier[1] = torch.nn.Linear(ref.classifier[1].in_features, 2)
    assert list(model.state_dict()) == list(ref.state_dict())
    assert model.classifier[1].out_features == 2 and model.classifier[1].in_features == 1280
    assert count_parameters(model) == spec.params_2class
    # Seed-compatible: the same seed gives the same initial weights as the reference order.
    torch.manual_seed(3)
    a = spec.build().classifier[1].weight
    torch.manual_seed(3)
    ref = torchvision.models.mobilenet_v2(weights=None)
    ref.classifier[1] = torch.nn.Linear(1280, 2)
    assert torch.equal(a, ref.classifier[1].weight)


def test_xception_head_and_keys_match_the_reference() -> None:
    import timm

    spec = BACKBONES["xception"]
    model = spec.build()
    ref = timm.create_model("xception", pretrained=False)  # maps to legacy_xception today
    ref.fc = torch.nn.Linear(ref.fc.in_features, 2)
    assert list(model.state_dict()) == list(ref.state_dict())
    assert model.fc.in_features == 2048 and model.fc.out_features == 2
    assert count_parameters(model) == spec.params_2class
    cfg = timm.data.resolve_model_data_config(ref)
    assert cfg["input_size"][1] == spec.input_size == 299
    assert tuple(cfg["mean"]) == spec.mean and cfg["interpolation"] == spec.interpolation


def _imagenet_file(folder: Path, name: str = "mobilenet_v2-b0353104.pth") -> tuple[Path, dict]:
    torch.manual_seed(11)
    state = torchvision.models.mobilenet_v2(weights=None).state_dict()  # 1000-class head
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / name)
    return folder / name, state


def test_imagenet_weights_load_from_torch_home_cache(isolated_home: Path) -> None:
    spec = BACKBONES["mobilenet_v2"]
    path, state = _imagenet_file(isolated_home / "torch" / "hub" / "checkpoints")
    assert spec.cached_weights == path
    model = spec.build()
    head_before = model.classifier[1].weight.clone()
    assert load_pretrained(model, spec, "imagenet") == path
    assert torch.equal(model.features[0][0].weight, state["features.0.0.weight"])
    assert torch.equal(model.classifier[1].weight, head_before)  # head stays 2-class, fresh
    assert model.classifier[1].out_features == 2


def test_local_pretrained_path(tmp_path: Path) -> None:
    path, state = _imagenet_file(tmp_path, "my.pth")
    model = BACKBONES["mobilenet_v2"].build()
    load_pretrained(model, BACKBONES["mobilenet_v2"], str(path))
    assert torch.equal(model.features[1].conv[0][0].weight, state["features.1.conv.0.0.weight"])


def test_pretrained_for_the_other_backbone_is_refused(tmp_path: Path) -> None:
    path, _ = _imagenet_file(tmp_path, "mnv2.pth")
    with pytest.raises(WeightsError, match="not xception"):
        load_pretrained(BACKBONES["xception"].build(), BACKBONES["xception"], str(path))


def test_offline_with_nothing_cached_fails_fast_with_ways_out(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    # "Fast" means: no network attempt at all (a wall-clock limit would depend on the machine).
    tried: list[object] = []

    def no_network(*args: object, **kwargs: object) -> None:
        tried.append(args)
        raise OSError("the network is off in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    spec = BACKBONES["xception"]
    seen: list[Event] = []
    with pytest.raises(WeightsError) as info:
        resolve_pretrained_file(spec, "imagenet", seen.append)
    assert not tried, "offline, yet the network was tried"
    msg = str(info.value)
    assert "xception-43020ad28.pth" in msg
    assert str(isolated_home / "torch" / "hub" / "checkpoints") in msg
    assert "--pretrained" not in msg  # phrased by each surface from the fixes
    assert Fix("pretrained", "none") in info.value.fixes


def test_unreachable_download_fails_fast(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Online mode, but the address cannot be reached: a clear error, no silent fallback."""
    import urllib.error

    import dftui.core.backbones as bb

    monkeypatch.delenv("DFTUI_OFFLINE")

    def refuse(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr("urllib.request.urlopen", refuse)
    with pytest.raises(WeightsError, match="could not be downloaded"):
        bb.resolve_pretrained_file(BACKBONES["mobilenet_v2"], "imagenet", lambda e: None)


def test_none_means_random_init() -> None:
    assert resolve_pretrained_file(BACKBONES["mobilenet_v2"], "none", lambda e: None) is None
