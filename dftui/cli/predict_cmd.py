"""``dftui predict``: classify images or folders of images with saved weights."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="classify images and videos as real or fake",
        description=(
            "Classify images and videos (or every image and video in the folders given) with "
            "trained weights. Faces are found, cut as `dftui prepare` cuts training data, and "
            "judged one by one; a video is sampled, its frames judged, and the frame scores "
            "aggregated. Weights made by the reference scripts (a bare state_dict) work too."
        ),
    )
    p.add_argument("--weights", type=Path, required=True, help="a .pth weights file")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of lines")
    p.add_argument("--threshold", type=float, default=0.5, help="p_fake at or above which an image is fake")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                   help="auto: bf16 where the hardware has it (same labels, about 2x faster "
                   "on such CPUs), fp16 on older GPUs, else fp32; DFTUI_PRECISION, when set, "
                   "decides what auto means")
    p.add_argument("--batch-size", type=int, default=32, help="images per batch (default: %(default)s)")
    faces = p.add_argument_group("faces (photos and video frames)")
    faces.add_argument("--faces", choices=["auto", "on", "off"], default="auto",
                       help="on: find the faces and judge each; off: judge the whole picture as "
                       "one face crop; auto (default): a near-square picture of at most 512 px "
                       "is taken as a crop already, any other is searched for faces")
    faces.add_argument("--whole-if-no-face", action="store_true",
                       help="when no face is found, judge the whole picture (labelled as such) "
                       "instead of reporting 'no face found'")
    faces.add_argument("--margin", type=float, default=None,
                       help="enlarge each face box by this fraction before judging it, as "
                       "`dftui prepare --margin` (default: prepare's default, 0)")
    faces.add_argument("--min-face", type=int, default=40,
                       help="ignore faces smaller than this many pixels (default: %(default)s)")
    video = p.add_argument_group("videos (.mp4 .mov .webm .avi .mkv)")
    how = video.add_mutually_exclusive_group()
    how.add_argument("--frames", type=int, default=None,
                     help="judge this many frames spread over each video (default: 32)")
    how.add_argument("--every", type=int, default=None, help="judge every k-th frame instead")
    video.add_argument("--aggregate", choices=["confident", "mean-max"], default="confident",
                       help="frame scores -> video score. mean-max: mean over frames of each "
                       "frame's most suspicious face; confident (default): the DFDC winners' "
                       "rule, the mean of the confidently fake frames when there are many, "
                       "else of the confidently real ones when nearly all are, else the mean")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dftui.cli import fail
    from dftui.core.backbones import WeightsError
    from dftui.core.devices import DeviceError
    from dftui.core.faces import DetectorConfig, FaceDetector, FaceDetectorError
    from dftui.core.media import expand_media
    from dftui.core.photo import PhotoJudge
    from dftui.core.predict import Predictor
    from dftui.core.prepare import PrepareConfig
    from dftui.core.video import Sampling

    if not 0.0 <= args.threshold <= 1.0:
        return fail(f"--threshold must be between 0 and 1 (got {args.threshold})")
    if args.batch_size <= 0:
        return fail(f"--batch-size must be at least 1 (got {args.batch_size})")
    margin = PrepareConfig.margin if args.margin is None else args.margin
    if not 0.0 <= margin <= 10.0:
        return fail(f"--margin must be a fraction from 0 to 10 (got {args.margin})")
    if args.every is not None:
        sampling = Sampling(count=None, every=args.every)
    else:
        sampling = Sampling(count=32 if args.frames is None else args.frames)
    try:
        sampling.validate()
        config = DetectorConfig(min_size=args.min_face)
        config.validate()
    except ValueError as exc:
        return fail(f"{exc} (--frames, --every, --min-face)")
    paths = expand_media(args.inputs)
    if not paths:
        return fail("no images found in " + ", ".join(args.inputs) + " (and no videos)")
    try:
        predictor = Predictor(args.weights, args.device, args.precision, args.threshold)
    except (WeightsError, DeviceError) as exc:
        from dftui.cli.advice import with_advice
        from dftui.core.advice import fixes_of

        return fail(with_advice(str(exc), fixes_of(exc)))
    detector = None
    if args.faces != "off" or any(is_video(p) for p in paths):
        try:
            detector = FaceDetector(config)
        except FaceDetectorError as exc:
            return fail(str(exc))
    judge = PhotoJudge(predictor, detector, margin, args.faces, args.whole_if_no_face)
    if predictor.calibration_warning:
        sys.stderr.write(f"dftui: warning: {predictor.calibration_warning}\n")
    elif predictor.temperature and not args.json:
        # Probabilities divided by the temperature fitted after training: say so.
        sys.stderr.write(f"dftui: probabilities {predictor.calibration_label}\n")
    out = _Output(args.json, predictor.temperature)
    try:
        try:
            for item in _judge_all(judge, paths, sampling, args):
                out.add(item)
        except KeyboardInterrupt:
            out.finish()
            sys.stderr.write("dftui: stopped\n")
            return 130
        out.finish()
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (``dftui predict DIR | head -1``): stop quietly, as other
        # command-line tools do, without a traceback or a second error at exit.
        from dftui.cli import silence_stdout
        silence_stdout()
        return 141  # 128 + SIGPIPE, what a shell reports for a tool ended by the pipe
    if out.failed == out.total:
        return fail("no image or video could be classified", 1)
    return 0


def is_video(path: Path) -> bool:
    from dftui.core.video import is_video as _is_video

    return _is_video(path)



def _judge_all(judge, paths: list[Path], sampling, args: argparse.Namespace):  # noqa: ANN001, ANN202
    """Yields results in input order: Prediction (a crop), PhotoResult or VideoResult."""
    from dftui.core.clip import judge_video
    from dftui.core.photo import judged_whole

    pending: list[Path] = []

    def flush():  # noqa: ANN202
        if pending:
            yield from judge.predictor.predict_paths(list(pending), args.batch_size)
            pending.clear()

    for path in paths:
        if is_video(path):
            yield from flush()
            yield judge_video(judge, path, sampling, args.aggregate, progress=_progress_line(path))
            if sys.stderr.isatty():
                sys.stderr.write("\r\033[K")
        elif judged_whole(path, args.faces):
            pending.append(path)
            if len(pending) >= args.batch_size:
                yield from flush()
        else:
            yield from flush()
            yield judge.judge_path(path)
    yield from flush()


def _progress_line(path: Path):  # noqa: ANN202
    if not sys.stderr.isatty():
        return None
    from dftui.core.data import display_path

    def show(done: int, planned: int, info) -> None:  # noqa: ANN001
        total = f"/{planned}" if planned else ""
        sys.stderr.write(f"\r\033[Kdecoding {display_path(path)}: {done}{total} frames judged")
        sys.stderr.flush()

    return show


class _Output:
    def __init__(self, as_json: bool, temperature: float | None = None) -> None:
        self.as_json = as_json
        self.temperature = temperature  # each JSON row says which probabilities it holds
        self.rows: list[dict] = []
        self.total = 0
        self.failed = 0

    def add(self, item) -> None:  # noqa: ANN001
        from dftui.core.clip import VideoResult
        from dftui.core.data import display_path
        from dftui.core.photo import PhotoResult

        self.total += 1
        name = display_path(item.path)  # a file name that is not UTF-8 must not crash the output
        if not item.ok:
            self.failed += 1
            sys.stderr.write(f"dftui: skipped {name}: {item.error}\n")
            if self.as_json:
                self.rows.append({**item.to_dict(), "temperature": self.temperature})
            return
        if self.as_json:
            row = {**item.to_dict(), "temperature": self.temperature}
            if not isinstance(item, (PhotoResult, VideoResult)):  # a crop judged whole
                row.update(faces_searched=False, faces=[{
                    "face": 1, "box": None, "kind": "crop", "label": item.label,
                    "p_real": row["p_real"], "p_fake": row["p_fake"]}])
            self.rows.append(row)
            return
        w = sys.stdout.write
        if isinstance(item, VideoResult):
            w(f"{name}\t{item.label or '-'}\t{_p(item.p_fake)}\t{_video_summary(item)}\n")
            if item.frames:
                span = f"{item.frames[0].time_s:.1f}-{item.frames[-1].time_s:.1f} s"
                w(f"  timeline {item.timeline(48)}  ({span}, p_fake per sampled frame, · no face)\n")
            top = item.suspicious(3)
            if top:
                w("  most suspicious: " + "; ".join(
                    f"frame {f.index} at {f.time_s:.1f} s {f.p_fake:.4f}" for f in top) + "\n")
        elif isinstance(item, PhotoResult):
            kinds = {f.kind for f in item.faces}
            if "whole" in kinds:
                what = "whole picture (no face found)"
            elif item.searched:
                what = f"{len(item.faces)} face(s)"
            else:
                what = "picture taken as a face crop"
            extra = f"; {item.note}" if item.note and "whole" not in kinds else ""
            w(f"{name}\t{item.label or '-'}\t{_p(item.p_fake)}\t{what}{extra}\n")
            if item.searched:
                for f in item.faces:
                    box = "whole picture" if f.box is None else "box " + ",".join(map(str, f.box))
                    w(f"  face {f.index}\t{f.label}\t{f.p_fake:.4f}\t{box}\n")
        else:
            w(f"{name}\t{item.label}\t{item.p_fake:.4f}\n")

    def finish(self) -> None:
        if self.as_json:
            json.dump(self.rows, sys.stdout, indent=2)
            sys.stdout.write("\n")


def _p(value: float) -> str:
    return "-" if value != value else f"{value:.4f}"  # NaN: no face, no score


def _video_summary(item) -> str:  # noqa: ANN001
    info = item.info
    length = f"{info.duration_s:.1f} s, " if info is not None and info.duration_s else ""
    text = (f"video {length}{len(item.frames)} frames judged, {item.frames_with_face} with a face, "
            f"rule {item.rule}")
    note = item.note()
    return f"{text}; {note}" if note else text
