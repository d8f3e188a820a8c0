"""Face detection on real photographs (scikit-image's astronaut), the shared crop rule, and
judging whole photos face by face."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from dftui.core.faces import (
    FAKE_COLOUR,
    DetectorConfig,
    Face,
    FaceDetector,
    crop_face,
    draw_boxes,
    looks_like_crop,
)
from dftui.core.photo import NO_FACE, PhotoJudge
from dftui.core.predict import Predictor
from dftui.core.prepare import crop_box
from tests.core.test_predict import reference_weights
from tests.media import ASTRONAUT_FACE, astronaut, background, group_photo, head, iou


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


@pytest.fixture(scope="module")
def predictor(tmp_path_factory: pytest.TempPathFactory) -> Predictor:
    weights = reference_weights(tmp_path_factory.mktemp("w") / "w.pth", fake_bias=2.0)
    return Predictor(weights, device="cpu", precision="fp32")


def test_the_box_lands_on_the_astronauts_face(detector: FaceDetector) -> None:
    found = detector.detect(astronaut())
    assert len(found.faces) == 1
    assert iou(found.faces[0].box, ASTRONAUT_FACE) > 0.5


def test_three_faces_in_a_1080p_photo_largest_first(detector: FaceDetector) -> None:
    img, boxes = group_photo()
    found = detector.detect(img)
    assert len(found.faces) == 3
    for truth in boxes:
        assert max(iou(truth, f.box) for f in found.faces) > 0.4
    sizes = [f.width for f in found.faces]
    assert sizes == sorted(sizes, reverse=True)
    assert max(found.searched_at) <= 1280  # searched on a reduced copy: bounded time


def test_no_face_in_a_background(detector: FaceDetector) -> None:
    assert detector.detect(background(640, 480, seed=3)).faces == []


def test_faces_below_the_minimum_size_are_left_out(detector: FaceDetector) -> None:
    img, boxes = group_photo(1280, 720, widths=(60, 200))
    assert len(detector.detect(img).faces) == 2
    big_only = FaceDetector(DetectorConfig(min_size=100)).detect(img)
    assert len(big_only.faces) == 1 and iou(big_only.faces[0].box, boxes[1]) > 0.4


def test_dozens_of_faces_all_listed_or_counted(detector: FaceDetector) -> None:
    img = background(1600, 900)
    src = head().resize((104, 128))
    for r in range(4):
        for c in range(8):
            img.paste(src, (30 + c * 195, 30 + r * 215))
    found = detector.detect(img)
    assert len(found.faces) >= 28
    capped = FaceDetector(DetectorConfig(max_faces=5)).detect(img)
    assert len(capped.faces) == 5 and capped.dropped == len(found.faces) - 5
    assert "left out" in capped.note()


def test_crop_is_prepares_rule(detector: FaceDetector) -> None:
    img = astronaut()
    face = Face((177, 66, 272, 161))
    for margin in (0.0, 0.3, 2.0):
        box, _face, _clamped = crop_box((177, 66, 95, 95), margin, 512, 512)
        assert crop_face(img, face, margin).tobytes() == img.crop(box).tobytes()


def test_auto_mode_rule() -> None:
    assert looks_like_crop(Image.new("RGB", (224, 224)))
    assert looks_like_crop(Image.new("RGB", (300, 380)))
    assert not looks_like_crop(Image.new("RGB", (1920, 1080)))
    assert not looks_like_crop(Image.new("RGB", (600, 600)))
    assert not looks_like_crop(Image.new("RGB", (400, 100)))


def test_photo_judge_modes(predictor: Predictor, detector: FaceDetector) -> None:
    img, _ = group_photo()
    on = PhotoJudge(predictor, detector, mode="auto").judge_image(img)
    assert on.searched and [f.index for f in on.faces] == [1, 2, 3]
    assert all(f.kind == "face" and f.box is not None and f.label == "fake" for f in on.faces)
    off = PhotoJudge(predictor, detector, mode="off").judge_image(img)
    assert not off.searched and len(off.faces) == 1 and off.faces[0].kind == "crop"
    crop = PhotoJudge(predictor, detector, mode="auto").judge_image(img.crop((0, 0, 200, 200)))
    assert not crop.searched  # near-square and small: already a crop
    forced = PhotoJudge(predictor, detector, mode="on").judge_image(astronaut())
    assert forced.searched and len(forced.faces) == 1


def test_no_face_found_and_the_whole_picture_option(predictor: Predictor, detector: FaceDetector) -> None:
    scene = background(800, 600, seed=2)
    none = PhotoJudge(predictor, detector).judge_image(scene)
    assert none.faces == [] and none.note.startswith(NO_FACE) and none.label is None
    assert none.to_dict()["p_fake"] is None
    whole = PhotoJudge(predictor, detector, whole_if_none=True).judge_image(scene)
    assert [f.kind for f in whole.faces] == ["whole"] and whole.faces[0].box is None
    assert "whole picture" in whole.note


def test_exif_rotated_photo_is_searched_upright(tmp_path: Path, predictor: Predictor, detector: FaceDetector) -> None:
    upright = Image.new("RGB", (900, 700), (120, 120, 120))
    upright.paste(astronaut(), (200, 100))
    stored = upright.rotate(90, expand=True)  # stored turned; EXIF 6 says turn it back
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "turned.jpg"
    stored.save(path, exif=exif, quality=95)
    result = PhotoJudge(predictor, detector, mode="on").judge_path(path)
    assert result.size == (900, 700)
    face = (ASTRONAUT_FACE[0] + 200, ASTRONAUT_FACE[1] + 100, ASTRONAUT_FACE[2] + 200, ASTRONAUT_FACE[3] + 100)
    assert len(result.faces) == 1 and iou(result.faces[0].box, face) > 0.5


def test_unreadable_photo_is_reported(tmp_path: Path, predictor: Predictor) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    result = PhotoJudge(predictor, mode="on").judge_path(bad)
    assert not result.ok and "not an image" in result.error


def test_boxes_are_drawn_into_the_picture() -> None:
    img = Image.new("RGB", (200, 200), (0, 0, 0))
    out = draw_boxes(img, [(50, 50, 150, 150)], [FAKE_COLOUR], target_width=100)
    assert out.getpixel((100, 150)) == FAKE_COLOUR  # bottom edge
    assert out.getpixel((100, 100)) == (0, 0, 0)  # inside untouched
    assert img.getpixel((100, 150)) == (0, 0, 0)  # the original is not drawn on


def test_a_nan_score_is_never_a_verdict(predictor: Predictor, detector: FaceDetector,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(predictor, "probabilities", lambda batch: torch.full((len(batch),), float("nan")))
    img, _ = group_photo()
    result = PhotoJudge(predictor, detector).judge_image(img)
    assert result.faces == [] and "no finite score" in result.note and NO_FACE not in result.note
    crop = PhotoJudge(predictor, detector, mode="off").judge_image(img)
    assert crop.faces == [] and crop.label is None
