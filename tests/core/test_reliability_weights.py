"""Bad weights files get a clear error through the Predictor, `dftui predict` and training's
--pretrained PATH; a pickle that would run code is refused without running it."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from dftui.cli import main
from dftui.core.backbones import WeightsError, get_backbone
from dftui.core.config import TrainConfig
from dftui.core.events import RunFailed
from dftui.core.predict import Predictor
from dftui.core.train import fit


class _Payload:
    """Unpickled unsafely, this creates a folder: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _bad_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, a phrase its error must contain)."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, tuple[Path, str]] = {}
    mobilenet = get_backbone("mobilenet_v2").build().state_dict()

    xcep = folder / "xception_as_mobilenet.pth"
    with torch.device("meta"):
        x_state = get_backbone("xception").build().state_dict()
    # Only the keys matter for a metadata/backbone mismatch: small stand-in tensors.
    torch.save({k: torch.zeros(1) for k in x_state}, xcep)
    (folder / "xception_as_mobilenet.json").write_text('{"backbone": "mobilenet_v2"}')
    files["other_backbone"] = (xcep, "holds xception weights but its metadata says mobilenet_v2")

    head10 = dict(mobilenet)
    head10["classifier.1.weight"] = torch.zeros(10, 1280)
    head10["classifier.1.bias"] = torch.zeros(10)
    torch.save(head10, folder / "ten_class.pth")
    files["not_2_class"] = (folder / "ten_class.pth", "not 2-class")

    whole = folder / "whole.pth"
    torch.save(mobilenet, whole)
    data = whole.read_bytes()
    (folder / "truncated.pth").write_bytes(data[: len(data) // 2])
    files["truncated"] = (folder / "truncated.pth", "truncated or damaged")

    (folder / "random.pth").write_bytes(os.urandom(4096))
    files["random_bytes"] = (folder / "random.pth", "not PyTorch weights")
    (folder / "notes.pth").write_text("epoch 3: val acc 0.91\n")
    files["text"] = (folder / "notes.pth", "text file")
    (folder / "empty.pth").write_bytes(b"")
    files["empty"] = (folder / "empty.pth", "empty")

    partial = {k: v for k, v in list(mobilenet.items())[:-20]}
    partial["classifier.1.weight"] = mobilenet["classifier.1.weight"]
    torch.save(partial, folder / "partial.pth")
    files["missing_tensors"] = (folder / "partial.pth", "missing")
    return files


@pytest.fixture(scope="module")
def bad_weights(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    return _bad_files(tmp_path_factory.mktemp("badweights"))


def _evil(folder: Path, marker: Path, raw: bool) -> Path:
    path = folder / ("evil_raw.pkl" if raw else "evil.pth")
    obj = {"features.0.0.weight": torch.zeros(1), "x": _Payload(marker)}
    if raw:
        path.write_bytes(pickle.dumps(obj, protocol=2))
    else:
        torch.save(obj, path)
    return path


@pytest.mark.parametrize("raw", [False, True], ids=["torch_save", "plain_pickle"])
def test_code_in_a_pickle_is_never_run(tmp_path, raw):
    marker = tmp_path / "PWNED"
    path = _evil(tmp_path, marker, raw)
    with pytest.raises(WeightsError, match="refused") as info:
        Predictor(path, device="cpu")
    assert "Nothing was executed" in str(info.value)
    cfg = TrainConfig(train_dir=tmp_path, val_dir=tmp_path, pretrained=str(path), img_size=32,
                      out_dir=tmp_path / "w", device="cpu")
    final = fit(cfg)
    assert isinstance(final, RunFailed) and "refused" in final.message
    assert not marker.exists()
    # The test can fail: an unsafe load of the same file does run the payload.
    if not raw:
        torch.load(path, weights_only=False)
        assert marker.is_dir()


def test_refusal_names_the_code(tmp_path):
    path = _evil(tmp_path, tmp_path / "m", raw=False)
    with pytest.raises(WeightsError) as info:
        Predictor(path, device="cpu")
    assert "mkdir" in str(info.value)


@pytest.mark.parametrize(
    "case",
    ["other_backbone", "not_2_class", "truncated", "random_bytes", "text", "empty",
     "missing_tensors"],
)
def test_predictor_gives_a_clear_error(bad_weights, case):
    path, phrase = bad_weights[case]
    with pytest.raises(WeightsError) as info:
        Predictor(path, device="cpu")
    message = str(info.value)
    assert str(path) in message and phrase in message
    assert "Traceback" not in message


@pytest.mark.parametrize("case", ["truncated", "random_bytes", "text", "not_2_class"])
def test_predict_command_gives_a_clear_error(bad_weights, case, tmp_path, capsys):
    path, phrase = bad_weights[case]
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(image)
    code = main(["predict", "--weights", str(path), str(image)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("dftui: error:") and phrase in err and len(err.splitlines()) == 1


def test_pretrained_path_errors(bad_weights, dataset, tmp_path):
    """--pretrained PATH for training: the ImageNet file of the other backbone, damaged
    files and a file of another shape each fail before any epoch, with the path named."""
    import torchvision

    # A real MobileNet-v2 ImageNet-format file given for an Xception run.
    mobile = tmp_path / "mobilenet_imagenet.pth"
    torch.save(torchvision.models.mobilenet_v2(weights=None).state_dict(), mobile)
    cases = {
        "other_backbone": (mobile, "xception", "holds weights for mobilenet_v2, not xception"),
        "truncated": (bad_weights["truncated"][0], "mobilenet_v2", "truncated or damaged"),
        "text": (bad_weights["text"][0], "mobilenet_v2", "text file"),
        "random_bytes": (bad_weights["random_bytes"][0], "mobilenet_v2", "not PyTorch"),
        "missing_tensors": (bad_weights["missing_tensors"][0], "mobilenet_v2", "does not fit"),
        "absent": (tmp_path / "nope.pth", "mobilenet_v2", "does not exist"),
    }
    for name, (path, backbone, phrase) in cases.items():
        cfg = TrainConfig(backbone=backbone, train_dir=dataset["train"], val_dir=dataset["val"],
                          pretrained=str(path), img_size=32, out_dir=tmp_path / "w",
                          device="cpu", epochs=1, batch_size=8, workers=0)
        final = fit(cfg)
        assert isinstance(final, RunFailed), name
        assert phrase in final.message and str(path) in final.message, (name, final.message)
        assert final.run_dir is None, name  # failed before a run record was made


def test_bad_metadata_beside_good_weights(tmp_path):
    spec = get_backbone("mobilenet_v2")
    path = tmp_path / "m.pth"
    torch.save(spec.build().state_dict(), path)
    Predictor(path, device="cpu")  # reference format: fine
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(WeightsError, match="not valid JSON"):
        Predictor(path, device="cpu")
    (tmp_path / "m.json").write_text('{"backbone": "mobilenet_v2", "preprocessing": {"x": 1}}')
    with pytest.raises(WeightsError, match="preprocessing"):
        Predictor(path, device="cpu")
