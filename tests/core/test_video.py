"""Videos: decoding tiny clips written with PyAV, bad files, sampling, aggregation rules,
and judging a clip frame by frame."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import pytest

from dftui.core.clip import judge_video
from dftui.core.photo import PhotoJudge
from dftui.core.predict import Predictor
from dftui.core.video import (
    Sampling,
    Stopped,
    VideoError,
    aggregate,
    probe,
    sample_frames,
    sparkline,
)
from tests.core.test_predict import reference_weights
from tests.media import write_video


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    face = write_video(d / "face.mp4", frames=10, size=64, fps=5)
    raw = face.read_bytes()
    (d / "empty.mp4").write_bytes(b"")
    (d / "junk.mkv").write_bytes(b"\x00garbage" * 200)
    (d / "half.mp4").write_bytes(raw[: len(raw) // 2])
    return {
        "face": face,
        "noface": write_video(d / "noface.webm", frames=4, size=64, face=False, codec="libvpx-vp9"),
        "empty": d / "empty.mp4",
        "junk": d / "junk.mkv",
        "half": d / "half.mp4",
        "audio": _audio_only(d / "audio.mp4"),
        "codec": _unknown_codec(d / "unknown_codec.avi"),
    }


def _unknown_codec(path: Path) -> Path:
    """An AVI whose video stream's FourCC names no codec FFmpeg knows (FMP4 -> ZZ9Q): the
    container opens, the stream has no decoder."""
    clip = write_video(path.with_name("fmp4.avi"), frames=4, size=64)
    raw = clip.read_bytes()
    assert raw.count(b"FMP4") == 2  # the stream header's handler and its format's compression
    path.write_bytes(raw.replace(b"FMP4", b"ZZ9Q"))
    return path


def _audio_only(path: Path) -> Path:
    import av
    import numpy as np

    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode()]:
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def judge(tmp_path_factory: pytest.TempPathFactory) -> PhotoJudge:
    weights = reference_weights(tmp_path_factory.mktemp("w") / "w.pth", fake_bias=2.0)
    return PhotoJudge(Predictor(weights, device="cpu", precision="fp32"))


def test_probe_and_sampling(clips: dict[str, Path]) -> None:
    info = probe(clips["face"])
    assert (info.width, info.height, info.frames) == (64, 64, 10) and info.fps == 5
    spread = list(sample_frames(clips["face"], Sampling(count=4)))
    assert [f.index for f in spread] == [1, 3, 6, 8]  # the middle of four equal stretches
    assert spread[0].image.size == (64, 64) and spread[1].time_s == pytest.approx(0.6)
    every = list(sample_frames(clips["face"], Sampling(count=None, every=3)))
    assert [f.index for f in every] == [0, 3, 6, 9]
    assert len(list(sample_frames(clips["face"], Sampling(count=100)))) == 10  # never more than there are


@pytest.mark.parametrize(("name", "words"), [
    ("empty", "empty file"),
    ("junk", "not a video"),
    ("half", "not a video"),
    ("audio", "no video stream"),
    ("codec", "codec .*cannot be decoded"),
])
def test_bad_files_get_one_clear_message(clips: dict[str, Path], name: str, words: str) -> None:
    with pytest.raises(VideoError, match=words):
        list(sample_frames(clips[name], Sampling(count=4)))
    with pytest.raises(VideoError, match=words):
        probe(clips[name])


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="not found"):
        probe(tmp_path / "nope.mp4")
    with pytest.raises(VideoError, match="folder"):
        probe(tmp_path)


def test_stop_interrupts_decoding(clips: dict[str, Path]) -> None:
    stop = threading.Event()
    frames = sample_frames(clips["face"], Sampling(count=None, every=1), stop)
    next(frames)
    stop.set()
    with pytest.raises(Stopped):
        next(frames)


def test_aggregation_rules() -> None:
    nan = math.nan
    frames = [0.9, 0.95, 0.85, 0.1, 0.2, 0.3, nan]  # 3 of 6 confidently fake
    assert aggregate(frames, "mean-max") == pytest.approx(sum(frames[:6]) / 6)
    assert aggregate(frames, "confident") == pytest.approx(0.9)  # the sure stretch is not averaged away
    real = [0.05] * 19 + [0.6]
    assert aggregate(real, "confident") == pytest.approx(0.05)  # over 90 % confidently real
    mixed = [0.5, 0.6, 0.9, 0.1]
    assert aggregate(mixed, "confident") == pytest.approx(0.525)  # neither: the plain mean
    assert math.isnan(aggregate([nan, nan], "confident"))
    with pytest.raises(ValueError, match="not one of"):
        aggregate([0.5], "median")


def test_sparkline() -> None:
    assert sparkline([0.0, 0.5, 1.0, math.nan]) == "▁▅█·"
    assert sparkline([0.0, 1.0, 0.0, 0.0], width=2) == "█▁"  # folded: the maximum of each stretch


def test_judge_a_clip(judge: PhotoJudge, clips: dict[str, Path]) -> None:
    seen: list[tuple[int, int]] = []
    result = judge_video(judge, clips["face"], Sampling(count=5), "mean-max",
                         progress=lambda done, planned, info: seen.append((done, planned)),
                         keep_pictures=True)
    assert result.ok and len(result.frames) == 5 and result.frames_with_face == 5
    assert seen[0] == (0, 5) and seen[-1] == (5, 5)
    assert result.label == "fake" and result.p_fake == pytest.approx(0.8808, abs=1e-3)
    assert len(result.suspicious(3)) == 3 and set(result.pictures) == {f.index for f in result.frames}
    row = result.to_dict()
    assert row["kind"] == "video" and row["frames_with_face"] == 5 and len(row["timeline"]) == 5


def test_judge_a_clip_without_faces_or_broken(judge: PhotoJudge, clips: dict[str, Path]) -> None:
    none = judge_video(judge, clips["noface"], Sampling(count=4))
    assert none.ok and none.label is None and "no face found" in none.note()
    broken = judge_video(judge, clips["half"], Sampling(count=4))
    assert not broken.ok and "not a video" in broken.error
    for name, words in (("codec", "cannot be decoded"), ("audio", "no video stream")):
        bad = judge_video(judge, clips[name], Sampling(count=4))
        assert not bad.ok and words in bad.error and bad.frames == []
    stop = threading.Event()
    stop.set()
    stopped = judge_video(judge, clips["face"], Sampling(count=4), stop=stop)
    assert stopped.stopped and stopped.frames == []


def test_far_apart_samples_are_reached_by_seeking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dftui.core.video as video

    clip = write_video(tmp_path / "long.mp4", frames=60, size=32, fps=5, face=False)
    straight = [(f.index, f.time_s, f.image.tobytes()) for f in sample_frames(clip, Sampling(count=4))]
    calls = []
    real_seek = video._seek_frames

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003
        calls.append(1)
        return real_seek(*args, **kwargs)

    monkeypatch.setattr(video, "_seek_frames", spy)
    monkeypatch.setattr(video, "SEEK_GAP_S", 1.0)  # 15 frames apart at 5 fps: 3 s
    seeked = [(f.index, f.time_s, f.image.tobytes()) for f in sample_frames(clip, Sampling(count=4))]
    assert calls and [s[:2] for s in seeked] == [s[:2] for s in straight]
    assert [s[2] for s in seeked] == [s[2] for s in straight]  # the very same pictures
