"""Videos: streaming decode with PyAV (FFmpeg ships inside the ``av`` wheel), frame sampling,
and the rules that turn per-frame scores into one score for the clip.

Memory stays bounded whatever the length or resolution: frames are decoded one at a time and
only the sampled ones are converted (and, for the picture, shrunk to ``keep_side``).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from dftui.core.errors import describe_error, first_line

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".webm", ".avi", ".mkv"})

# Aggregation rules (``--aggregate``):
# - "mean-max": the mean over sampled frames of each frame's most suspicious face;
# - "confident": the DFDC winner's rule (Seferbekov): when many frames are confidently fake
#   (p > 0.8 in more than 40% of the frames with a face, and at least 3 of them) the mean of
#   those; else when nearly all (over 90%) are confidently real (p < 0.2) the mean of those;
#   else the plain mean. One very sure stretch of a manipulated clip is not averaged away.
AGGREGATES = ("mean-max", "confident")
DEFAULT_AGGREGATE = "confident"


class VideoError(ValueError):
    """The file cannot be used as a video: the message says what and what to do."""


class Stopped(Exception):
    """The caller asked to stop (the dashboard's Stop key)."""


def is_video(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


@dataclass(frozen=True)
class VideoInfo:
    path: str
    width: int
    height: int
    fps: float  # average frame rate (0 when the container does not say)
    duration_s: float  # 0 when unknown
    frames: int  # the container's count, or an estimate from duration x fps; 0 when unknown
    codec: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "width": self.width, "height": self.height, "fps": round(self.fps, 3),
            "duration_s": round(self.duration_s, 3), "frames": self.frames, "codec": self.codec,
        }


@dataclass(frozen=True)
class SampledFrame:
    index: int  # frame number in the clip (decode order, from 0)
    time_s: float
    image: Image.Image


@dataclass(frozen=True)
class Sampling:
    """Which frames to judge: ``count`` spread evenly over the clip, or every ``every``-th."""

    count: int | None = 32
    every: int | None = None

    def validate(self) -> None:
        if (self.count is None) == (self.every is None):
            raise ValueError("choose either a number of frames per video or every k-th frame")
        if self.count is not None and not 1 <= self.count <= 10_000:
            raise ValueError(f"frames per video must be from 1 to 10000 (got {self.count})")
        if self.every is not None and self.every < 1:
            raise ValueError(f"every k-th frame needs k >= 1 (got {self.every})")


def _open(path: str | os.PathLike[str]) -> Any:
    try:
        import av
    except ImportError as exc:
        raise VideoError(f"videos need PyAV ({exc}); install it with: pip install av") from None
    import stat

    from dftui.core.backbones import file_kind

    p = Path(path)
    try:
        st = p.stat()
        size = st.st_size
    except FileNotFoundError:
        raise VideoError("file not found") from None
    except OSError as exc:
        raise VideoError(f"cannot read ({describe_error(exc)})") from None
    if p.is_dir():
        raise VideoError("is a folder, not a video")
    if not stat.S_ISREG(st.st_mode):
        # A FIFO or device would block FFmpeg or never end: never opened.
        raise VideoError(f"{file_kind(st.st_mode)}, not a regular file")
    if size == 0:
        raise VideoError("empty file (0 bytes); nothing to decode")
    try:
        container = av.open(str(p), metadata_errors="ignore")
    except av.error.InvalidDataError:
        raise VideoError("not a video FFmpeg can read (corrupt, truncated or another kind of file)") from None
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(f"cannot open as a video ({first_line(exc)})") from None
    if not container.streams.video:
        container.close()
        raise VideoError("has no video stream (audio only?); give a file with pictures")
    if container.streams.video[0].codec_context is None:
        # The container names a codec this FFmpeg has no decoder for (an unknown FourCC):
        # PyAV then gives the stream no codec context at all.
        container.close()
        raise VideoError("the video codec is unknown and cannot be decoded by this FFmpeg; "
                         "convert it, e.g. to H.264 mp4")
    return container


def _info(path: str | os.PathLike[str], container: Any) -> VideoInfo:
    stream = container.streams.video[0]
    ctx = stream.codec_context
    fps = float(stream.average_rate) if stream.average_rate else 0.0
    duration = 0.0
    if stream.duration is not None and stream.time_base:
        duration = float(stream.duration * stream.time_base)
    elif container.duration:
        duration = container.duration / 1_000_000  # AV_TIME_BASE
    frames = int(stream.frames or 0) or (round(duration * fps) if duration and fps else 0)
    name = ctx.name if ctx is not None else "?"
    return VideoInfo(str(path), int(ctx.width or 0), int(ctx.height or 0), fps, duration, frames, name)


def probe(path: str | os.PathLike[str]) -> VideoInfo:
    container = _open(path)
    try:
        return _info(path, container)
    finally:
        container.close()


def _targets(info: VideoInfo, sampling: Sampling) -> list[int] | None:
    """Frame numbers to keep for ``count`` sampling, when the frame count is known."""
    if sampling.count is None or info.frames <= 0:
        return None
    n = min(sampling.count, info.frames)
    # The middle of n equal stretches: never the first black frame, never past the end.
    return sorted({min(info.frames - 1, int((i + 0.5) * info.frames / n)) for i in range(n)})


def sample_frames(
    path: str | os.PathLike[str],
    sampling: Sampling,
    stop: threading.Event | None = None,
    on_info: Callable[[VideoInfo, int], None] | None = None,
    keep_side: int | None = None,
) -> Iterator[SampledFrame]:
    """Decode the clip once, front to back, yielding the sampled frames as RGB pictures.

    ``on_info(info, planned)`` is called once before the first frame (planned: how many frames
    will be yielded, 0 when unknown). Raises VideoError for a file that is not a usable video
    (also when it breaks off mid-way with nothing decoded) and Stopped when ``stop`` is set."""
    sampling.validate()
    container = _open(path)
    try:
        info = _info(path, container)
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame threads: decoding is most of a video's time
        targets = _targets(info, sampling)
        if targets is None and sampling.count is not None:
            # Unknown length: fall back to a steady rate (about one frame a second).
            every = max(1, round(info.fps) or 25)
        else:
            every = sampling.every or 1
        planned = len(targets) if targets is not None else (math.ceil(info.frames / every) if info.frames else 0)
        if on_info is not None:
            on_info(info, planned)
        if targets and _worth_seeking(info, targets):
            yield from _seek_frames(path, container, stream, info, targets, stop, keep_side)
            return
        wanted = set(targets) if targets is not None else None
        last = max(targets) if targets else None
        yielded = 0
        index = -1
        try:
            for frame in container.decode(stream):
                index += 1
                if stop is not None and stop.is_set():
                    raise Stopped()
                keep = (index in wanted) if wanted is not None else (index % every == 0)
                if keep:
                    image = frame.to_image()  # RGB
                    if keep_side and max(image.size) > keep_side:
                        image.thumbnail((keep_side, keep_side), Image.BILINEAR)
                    t = float(frame.time) if frame.time is not None else (index / info.fps if info.fps else 0.0)
                    yield SampledFrame(index, t, image)
                    yielded += 1
                if last is not None and index >= last:
                    break
        except Stopped:
            raise
        except Exception as exc:  # noqa: BLE001 - FFmpeg errors come in many classes
            import av

            if not isinstance(exc, (av.error.FFmpegError, OSError, ValueError)):
                raise
            if yielded == 0:
                raise VideoError(_decode_message(path, info, exc)) from None
            return  # truncated after some good frames: judge what was decoded
        if yielded == 0:
            raise VideoError(f"no frame could be decoded (codec {info.codec}); the file may be truncated")
    finally:
        container.close()


# Sampled frames further apart than this (seconds) are reached by seeking to the keyframe
# before each instead of decoding everything between: an hour-long film with 32 samples then
# decodes a few hundred frames, not 100,000. Closer samples decode front to back (a seek
# decodes from the previous keyframe, often seconds back, so it would cost more).
SEEK_GAP_S = 20.0


def _worth_seeking(info: VideoInfo, targets: list[int]) -> bool:
    if info.fps <= 0 or len(targets) < 2:
        return False
    gap = (targets[-1] - targets[0]) / (len(targets) - 1) / info.fps
    return gap >= SEEK_GAP_S


def _seek_frames(path: str | os.PathLike[str], container: Any, stream: Any, info: VideoInfo,
                 targets: list[int], stop: threading.Event | None, keep_side: int | None) -> Iterator[SampledFrame]:
    import av

    yielded = 0
    start = stream.start_time or 0
    for target in targets:
        if stop is not None and stop.is_set():
            raise Stopped()
        t = target / info.fps
        try:
            container.seek(start + int(t / stream.time_base), stream=stream, backward=True, any_frame=False)
            found = None
            for frame in container.decode(stream):
                if stop is not None and stop.is_set():
                    raise Stopped()
                if frame.time is None or frame.time >= t - 0.5 / info.fps:
                    found = frame
                    break
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            if yielded == 0:
                raise VideoError(_decode_message(path, info, exc)) from None
            return  # a damaged stretch: judge what was reached
        if found is None:
            break  # past the real end (the container overstated the length)
        image = found.to_image()
        if keep_side and max(image.size) > keep_side:
            image.thumbnail((keep_side, keep_side), Image.BILINEAR)
        time_s = float(found.time) if found.time is not None else t
        yield SampledFrame(round(time_s * info.fps), time_s, image)
        yielded += 1
    if yielded == 0:
        raise VideoError(f"no frame could be decoded (codec {info.codec}); the file may be truncated")


def _decode_message(path: str | os.PathLike[str], info: VideoInfo, exc: BaseException) -> str:
    text = first_line(exc)
    if "decoder" in text.lower() or "codec" in text.lower() or "not implemented" in text.lower():
        return f"the {info.codec} codec cannot be decoded by this FFmpeg ({text}); convert it, e.g. to H.264 mp4"
    return f"decoding failed ({text}); the file may be corrupt or truncated"


# --------------------------------------------------------------------------- aggregation


def aggregate(scores: Sequence[float], rule: str = DEFAULT_AGGREGATE) -> float:
    """One p_fake for the clip from its frames' scores (frames without a face left out).
    NaN when no frame had a face."""
    values = [s for s in scores if not math.isnan(s)]
    if not values:
        return math.nan
    if rule == "mean-max":
        return sum(values) / len(values)
    if rule == "confident":
        n = len(values)
        fakes = [s for s in values if s > 0.8]
        if len(fakes) > n / 2.5 and len(fakes) >= min(3, n):
            return sum(fakes) / len(fakes)
        reals = [s for s in values if s < 0.2]
        if len(reals) > 0.9 * n:
            return sum(reals) / len(reals)
        return sum(values) / n
    raise ValueError(f"aggregation rule {rule!r} is not one of {', '.join(AGGREGATES)}")


SPARK = "▁▂▃▄▅▆▇█"


def sparkline(scores: Sequence[float], width: int | None = None) -> str:
    """A one-line p_fake timeline: ▁ (0) to █ (1), · for frames without a face. ``width``
    folds it to that many characters (the maximum of each stretch)."""
    values = list(scores)
    if width is not None and len(values) > width > 0:
        folded = []
        for i in range(width):
            part = [v for v in values[i * len(values) // width : (i + 1) * len(values) // width] if not math.isnan(v)]
            folded.append(max(part) if part else math.nan)
        values = folded
    return "".join("·" if math.isnan(v) else SPARK[min(len(SPARK) - 1, int(v * len(SPARK)))] for v in values)


@dataclass
class FrameVerdict:
    index: int
    time_s: float
    faces: list[Any] = field(default_factory=list)  # photo.FaceVerdict
    note: str = ""

    @property
    def p_fake(self) -> float:
        """The frame's most suspicious face (NaN without a face)."""
        return max((f.p_fake for f in self.faces), default=math.nan)

    def to_dict(self) -> dict[str, Any]:
        p = self.p_fake
        return {
            "frame": self.index, "time_s": round(self.time_s, 3),
            "p_fake": None if math.isnan(p) else round(p, 6),
            "faces": [f.to_dict() for f in self.faces],
        }
