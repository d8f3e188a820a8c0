"""``dftui evaluate``: metrics of weights on real/fake test folders, optionally compared with a
second weights file and measured under corruptions. Each evaluation is saved as a record."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from dftui.core.errors import describe_error

METRIC_ROWS = (
    ("accuracy", "Accuracy"),
    ("precision", "Precision (fake)"),
    ("recall", "Recall (fake)"),
    ("f1", "F1 (fake)"),
    ("roc_auc", "ROC AUC"),
    ("average_precision", "Average precision"),
    ("eer", "EER"),
    ("real_accuracy", "Accuracy on real"),
    ("fake_accuracy", "Accuracy on fake"),
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="measure weights on real/fake test folders",
        description=(
            "Score every image of one or more test folders (each holding real/ and fake/) and "
            "report accuracy, precision, recall, F1 (fake = positive), ROC AUC, average "
            "precision, EER, per-class accuracy and the confusion matrix. Each evaluation is "
            "saved with the weights' training run (or under the dftui data folder)."
        ),
    )
    p.add_argument("--weights", type=Path, required=True, help="a .pth weights file")
    p.add_argument("folders", nargs="+", metavar="DIR", help="test folder(s) with real/ and fake/")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="p_fake at or above which an image is called fake (default 0.5)")
    p.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    p.add_argument("--csv", type=Path, metavar="FILE",
                   help="write one row per image (path, label, p_fake, predicted); with several "
                        "folders, DIR's name is added to the file name")
    p.add_argument("--corruptions", metavar="LIST",
                   help="also evaluate under corruptions: a comma list of jpeg,blur,noise,rescale "
                        "or all (each at 3 severities)")
    p.add_argument("--compare", type=Path, metavar="PATH2",
                   help="a second weights file to evaluate on the same folders, side by side")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="fp32")
    p.add_argument("--batch-size", type=int, default=32, help="images per batch (default: %(default)s)")
    p.add_argument("--calibrate", action="store_true",
                   help="fit a temperature on these folders' scores and store it in the weights' "
                   "metadata (predict and evaluate then use it); better fitted on a validation "
                   "folder than on the test folder it is then judged on")
    p.add_argument("--overwrite", action="store_true",
                   help="with --calibrate: replace a temperature the weights already carry")
    p.add_argument("--no-record", action="store_true", help="do not save evaluation records")
    p.add_argument("--plain", action="store_true", help="plain text even on a terminal")
    p.add_argument("--aggregate", choices=["confident", "mean-max"], default="confident",
                   help="crops named by `dftui prepare folder` are also scored per video: how "
                   "frame scores become a video score (as `dftui predict --aggregate`)")
    p.set_defaults(func=run)


def _fmt(value: float | None, pct: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value * 100:.2f}%" if pct else f"{value:.4f}"


def _diff(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.4f}"


def _csv_path(base: Path, folder: str, many: bool, suffix: str = "") -> Path:
    if not many and not suffix:
        return base
    tag = Path(folder).name + (f"-{suffix}" if suffix else "")
    return base.with_name(f"{base.stem}-{tag}{base.suffix or '.csv'}")


def _unwritable(path: Path) -> str | None:
    """Why a file cannot be written at ``path``, or None."""
    import os
    import tempfile

    if path.is_dir():
        return f"{path} is a folder; give a file name"
    parent = path.parent
    if not parent.is_dir():
        return f"folder {parent} does not exist"
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as exc:
        return f"cannot write in {parent} ({describe_error(exc)})"
    if path.exists() and not os.access(path, os.W_OK):
        return f"{path} is not writable"
    return None


def _is_weights(path: Path, *weights: Path | None) -> str | None:
    """Why ``path`` must not be replaced by a CSV: it is one of the weights files evaluated,
    or its metadata (a typo in --csv would otherwise destroy them)."""
    import os

    for w in weights:
        if w is None:
            continue
        for own in (Path(w), Path(w).with_suffix(".json")):
            try:
                if os.path.samefile(path, own):
                    return f"{path} is the weights file or its metadata; give another file name"
            except OSError:
                continue
    return None


class _Progress:
    """Evaluation progress on stderr: a Rich bar on a terminal, nothing otherwise."""

    def __init__(self, rich: bool) -> None:
        self.progress: Any = None
        self.task: Any = None
        if rich and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self.progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"), console=Console(stderr=True), transient=True,
            )

    def __call__(self, event: Any) -> None:
        from dftui.core.evaluate import EvalProgress, EvalStarted

        if self.progress is None:
            return
        if isinstance(event, EvalStarted):
            self.progress.start()
            desc = f"{Path(event.folder).name} {event.label} ({event.pass_index}/{event.passes})"
            if self.task is None:
                self.task = self.progress.add_task(desc, total=event.total, info="")
            self.progress.update(self.task, description=desc, total=event.total, completed=0)
        elif isinstance(event, EvalProgress) and self.task is not None:
            self.progress.update(self.task, completed=event.done,
                                 info=f"{event.images_per_s:.0f} img/s")

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def run(args: argparse.Namespace) -> int:
    from dftui.cli import fail
    from dftui.core.augment import parse_corruptions
    from dftui.core.backbones import WeightsError
    from dftui.core.data import DataError, scan_folder
    from dftui.core.devices import DeviceError
    from dftui.core.evaluate import (
        Comparison,
        EvaluationError,
        evaluate_folder,
        robustness,
        save_evaluation,
    )
    from dftui.core.predict import Predictor
    from dftui.core.video_eval import video_level

    if not 0.0 <= args.threshold <= 1.0:
        return fail(f"--threshold must be between 0 and 1 (got {args.threshold})")
    if args.batch_size < 1:
        return fail(f"--batch-size must be at least 1 (got {args.batch_size})")
    corruptions: list[str] = []
    if args.corruptions:
        try:
            corruptions = parse_corruptions(args.corruptions)
        except ValueError as exc:
            return fail(f"--corruptions: {exc}")
    if args.csv:
        # Checked before the evaluation, not after minutes of scoring.
        targets = [_csv_path(args.csv, f, len(args.folders) > 1, s)
                   for f in args.folders for s in ("", "b") if s == "" or args.compare]
        for target in targets:
            problem = _unwritable(target) or _is_weights(target, args.weights, args.compare)
            if problem:
                return fail(f"--csv: {problem}")
    scans = {}
    for folder in args.folders:
        try:
            scans[folder] = scan_folder(folder)
        except DataError as exc:
            return fail(str(exc))
    try:
        predictors = [Predictor(args.weights, args.device, args.precision, args.threshold)]
        if args.compare:
            predictors.append(Predictor(args.compare, args.device, args.precision, args.threshold))
    except (WeightsError, DeviceError) as exc:
        from dftui.cli.advice import with_advice
        from dftui.core.advice import fixes_of

        return fail(with_advice(str(exc), fixes_of(exc)))
    for predictor in predictors:
        if predictor.calibration_warning:
            sys.stderr.write(f"dftui: warning: {predictor.weights.name}: {predictor.calibration_warning}\n")
    if args.overwrite and not args.calibrate:
        return fail("--overwrite replaces a stored temperature: use it with --calibrate")
    if args.calibrate and predictors[0].temperature is not None and not args.overwrite:
        # Asked before minutes of scoring, and never replaced silently.
        return fail(f"{args.weights} is already calibrated (T={predictors[0].temperature:.3g}); "
                    "add --overwrite to replace its temperature")

    from dftui.cli.printer import wants_rich

    rich = not args.json and wants_rich(args.plain)
    progress = _Progress(rich=not args.json and not args.plain)
    report: dict[str, Any] = {"weights": str(args.weights), "threshold": args.threshold,
                              "results": []}
    if args.compare:
        report["compare_weights"] = str(args.compare)
    many = len(args.folders) > 1
    calibrated_on: list[Any] = []  # the --weights' clean results, for --calibrate
    try:
        for folder, scan in scans.items():
            for warning in scan.warnings:
                sys.stderr.write(f"dftui: {folder}: {warning}\n")
            entry: dict[str, Any] = {"folder": str(scan.root)}
            results = []
            for i, predictor in enumerate(predictors):
                res = evaluate_folder(predictor, folder, threshold=args.threshold,
                                      batch_size=args.batch_size, emit=progress, scan=scan)
                robust = None
                if corruptions:
                    robust = robustness(predictor, folder, corruptions, clean=res,
                                        threshold=args.threshold, batch_size=args.batch_size,
                                        emit=progress, scan=scan)
                if not args.no_record:
                    try:
                        save_evaluation(res, robust)
                    except OSError as exc:
                        sys.stderr.write(f"dftui: warning: the evaluation record could not be "
                                         f"saved ({describe_error(exc)})\n")
                if args.csv:
                    target = _csv_path(args.csv, folder, many, "b" if i else "")
                    try:
                        res.write_csv(target)
                    except OSError as exc:
                        progress.close()
                        return fail(f"could not write {target}: {describe_error(exc)}", 1)
                results.append((res, robust))
            calibrated_on.append(results[0][0])
            res, robust = results[0]
            entry.update(res.to_dict())
            per_video = video_level(res.images, args.threshold, args.aggregate)
            if per_video is not None:
                entry["video_level"] = per_video.to_dict()
            if robust is not None:
                entry["robustness"] = [r.to_dict() for r in robust.rows]
            if len(results) > 1:
                res_b, robust_b = results[1]
                comp = Comparison(res, res_b)
                entry["compare"] = {
                    "weights": res_b.weights,
                    "result": res_b.to_dict(),
                    "difference": comp.to_dict()["difference"],
                }
                if robust_b is not None:
                    entry["compare"]["robustness"] = [r.to_dict() for r in robust_b.rows]
            report["results"].append(entry)
            progress.close()
            if not args.json:
                _print(entry, results, rich, per_video)
    except EvaluationError as exc:
        progress.close()
        return fail(str(exc), 1)
    except KeyboardInterrupt:
        progress.close()
        return fail("interrupted", 130)
    progress.close()
    if args.calibrate:
        problem = _calibrate(args, predictors[0], calibrated_on, report)
        if problem:
            return fail(problem, 1)
    if args.json:
        json.dump(report, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    return 0


def _calibrate(args: argparse.Namespace, predictor: Any, results: list[Any],
               report: dict[str, Any]) -> str | None:
    """--calibrate: fit a temperature on the scored images of every folder and store it;
    returns why it could not be, or None."""
    import numpy as np

    from dftui.core.calibration import CalibrationExists, fit_binary, store_calibration

    scores = np.concatenate([r.scores for r in results])
    labels = np.concatenate([r.labels for r in results])
    fit = fit_binary(scores, labels, temperature=predictor.temperature or 1.0)
    report["calibration_fit"] = {**fit.to_dict(), "folders": [r.folder for r in results]}
    if not fit.ok:
        return f"{args.weights} was not calibrated: {fit.reason}"
    try:
        path = store_calibration(args.weights, predictor.spec.name,
                                 fit.to_metadata("folders " + ", ".join(r.folder for r in results)),
                                 overwrite=args.overwrite)
    except CalibrationExists as exc:  # calibrated by someone else while this one scored
        return f"{exc} (add --overwrite)"
    except OSError as exc:
        return f"could not store the temperature in {args.weights}'s metadata: {describe_error(exc)}"
    except ValueError as exc:  # its metadata cannot be read
        return f"could not store the temperature: {exc}"
    report["calibration_fit"]["stored_in"] = str(path)
    if not args.json:
        sys.stdout.write(
            f"{fit.summary()}; stored in {path}\n"
            "note: ECE after is measured on the images the temperature was fitted on; "
            "evaluate another folder for a fair figure\n")
    return None


def _print(entry: dict[str, Any], results: list[Any], rich: bool, per_video: Any = None) -> None:
    res, robust = results[0]
    other = results[1] if len(results) > 1 else None
    m = res.metrics
    mb = other[0].metrics if other else None
    head = (
        f"{res.folder}: {m.n} images scored ({m.n_real} real, {m.n_fake} fake), "
        f"{len(res.unreadable)} unreadable, threshold {m.threshold:g} on p_fake, "
        f"{res.calibration_label}"
    )
    rows: list[list[str]] = []
    for key, title in METRIC_ROWS:
        a = getattr(m, key)
        row = [title, _fmt(a)]
        if mb is not None:
            b = getattr(mb, key)
            row += [_fmt(b), _diff(None if a is None or b is None else b - a)]
        rows.append(row)
    # Calibration: how far the probabilities are from the observed accuracy (lower is better).
    for title, a, b in (
        ("ECE (15 bins)", res.ece, other[0].ece if other else None),
        ("Brier score", res.brier, other[0].brier if other else None),
    ):
        row = [title, _fmt(a)]
        if other:
            row += [_fmt(b), _diff(None if b is None else b - a)]
        rows.append(row)
    columns = ["Metric", Path(res.weights).name]
    if other:
        columns = ["Metric", f"A: {Path(res.weights).name}", f"B: {Path(other[0].weights).name}",
                   "Δ (B − A)"]
    c = m.confusion
    confusion = [
        ["", "called real", "called fake"],
        ["real", str(c.tn), str(c.fp)],
        ["fake", str(c.fn), str(c.tp)],
    ]
    robust_rows = []
    if robust is not None:
        b_rows = {r.label: r for r in other[1].rows} if other and other[1] else {}
        for r in robust.rows:
            row = [r.label, _fmt(r.accuracy), _fmt(r.roc_auc)]
            if b_rows:
                rb = b_rows.get(r.label)
                row += [_fmt(rb.accuracy) if rb else "n/a", _fmt(rb.roc_auc) if rb else "n/a"]
            robust_rows.append(row)
    robust_cols = ["Corruption", "Accuracy", "AUC"] + (["Accuracy B", "AUC B"] if other and other[1] else [])
    footer = [per_video.line()] if per_video is not None else []
    footer += [f"note: {n}" for n in m.notes]
    footer += [f"unreadable: {p}: {r}" for p, r in res.unreadable[:10]]
    if len(res.unreadable) > 10:
        footer.append(f"... and {len(res.unreadable) - 10} more unreadable")
    if res.record_dir:
        footer.append(f"record: {res.record_dir}")
    if rich:
        _print_rich(head, columns, rows, confusion, robust_cols, robust_rows, footer)
    else:
        _print_plain(head, columns, rows, confusion, robust_cols, robust_rows, footer)


def _table_lines(columns: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [columns, *rows]) for i in range(len(columns))]
    fmt = lambda r: "  ".join(  # noqa: E731
        (cell.ljust(w) if i == 0 else cell.rjust(w)) for i, (cell, w) in enumerate(zip(r, widths, strict=True))
    ).rstrip()
    return [fmt(columns)] + [fmt(r) for r in rows]


def _print_plain(head: str, columns: list[str], rows: list[list[str]], confusion: list[list[str]],
                 robust_cols: list[str], robust_rows: list[list[str]], footer: list[str]) -> None:
    out = [head, *_table_lines(columns, rows), "", "confusion matrix (rows: truth)",
           *_table_lines(confusion[0], confusion[1:])]
    if robust_rows:
        out += ["", *_table_lines(robust_cols, robust_rows)]
    out += footer
    sys.stdout.write("\n".join(out) + "\n\n")
    sys.stdout.flush()


def _print_rich(head: str, columns: list[str], rows: list[list[str]], confusion: list[list[str]],
                robust_cols: list[str], robust_rows: list[list[str]], footer: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(head, style="bold", highlight=False, markup=False)
    table = Table(*columns)
    for i in range(1, len(columns)):
        table.columns[i].justify = "right"
    for row in rows:
        table.add_row(*row)
    conf = Table(*confusion[0], title="confusion matrix (rows: truth)")
    for row in confusion[1:]:
        conf.add_row(*row)
    console.print(table)
    console.print(conf)
    if robust_rows:
        rt = Table(*robust_cols, title="robustness")
        for row in robust_rows:
            rt.add_row(*row)
        console.print(rt)
    for line in footer:
        console.print(line, style="dim", highlight=False, markup=False)
