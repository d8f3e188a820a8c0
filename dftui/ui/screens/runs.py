"""Runs screen: past runs from their records on disk. Enter opens one (its charts and
epoch table again, replayed from events.jsonl into the same RunView the Training screen
uses); c classifies with its weights; r resumes a stopped, interrupted or failed run."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Footer, Static

from dftui.core.early_stop import outcome_text
from dftui.core.events import Event, RunFailed, RunFinished
from dftui.core.run_manage import UserInfo, read_user
from dftui.core.runs import RunSummary, list_runs, read_events_checked, read_run
from dftui.ui.screens.base import AnyDftuiScreen, DftuiModalScreen, DftuiScreen
from dftui.ui.screens.runs_manage import (
    RunsManageMixin,
    copy_path,
    default_export_folder,
    export_run,
    user_cell,
)
from dftui.ui.widgets.navbar import NavBar, RunStatusLine
from dftui.ui.widgets.run_view import RunView

STATUS_STYLES = {
    "finished": "green",
    "stopped": "yellow",
    "interrupted": "yellow",
    "failed": "red",
    "running": "cyan",
    "damaged": "red",
    "stalled": "magenta",
}
LIVE_REFRESH_S = 2.0


def live_signature(runs: list[RunSummary]) -> tuple[Any, ...]:
    """What a refresh of the list would change: runs, their status and progress."""
    return tuple((str(r.run_dir), r.status, r.host, r.epochs_completed, r.best_val_accuracy)
                 for r in runs)


def status_cell(run: RunSummary) -> Text:
    """The status, with live runs marked (● running, in the background, on another host)."""
    text = run.status_text
    if run.live:
        text = "● " + text + (" (bg)" if run.detached and not run.host else "")
    return Text(text, style=STATUS_STYLES.get(run.status, ""))
MAX_DATA_CHARS = 40


def local_time(iso: str) -> str:
    """'2026-11-29T19:00:05+00:00' -> '2026-11-29 20:00' in the local time zone."""
    if not iso:
        return "?"
    try:
        when = datetime.fromisoformat(iso)
    except ValueError:
        return iso[:16]
    if when.tzinfo is not None:
        when = when.astimezone()
    return when.strftime("%Y-%m-%d %H:%M")


def short_path(path: str, limit: int = MAX_DATA_CHARS) -> str:
    """A path for a narrow column: home as ~, and the end kept when it is too long."""
    if not path:
        return "?"
    home = str(Path.home())
    if path == home or path.startswith(home + "/"):
        path = "~" + path[len(home):]
    if len(path) <= limit:
        return path
    # fish-style: every folder but the last cut to its first letter, then the end kept.
    parts = path.split("/")
    short = "/".join([p[:1] for p in parts[:-1]] + parts[-1:])
    return short if len(short) <= limit else "…" + short[-(limit - 1):]


def epochs_text(run: RunSummary) -> str:
    return f"{run.epochs_completed}/{run.epochs}" if run.epochs else str(run.epochs_completed)


def accuracy_text(run: RunSummary) -> str:
    if run.best_val_accuracy is None:
        return "—"
    epoch = f" @{run.best_epoch}" if run.best_epoch else ""
    return f"{run.best_val_accuracy:.1%}{epoch}"


def weights_available(run: RunSummary) -> Path | None:
    if run.weights_path and Path(run.weights_path).is_file():
        return Path(run.weights_path)
    return None


async def open_with_weights(
    screen: AnyDftuiScreen, run: RunSummary, target: str, purpose: str
) -> None:
    """Open the ``target`` screen on the run's weights, or say why there are none."""
    weights = weights_available(run)
    if weights is None:
        why = "it saved none" if not run.weights_path else f"{run.weights_path} is gone"
        screen.notify(f"no weights {purpose}: {why}", severity="warning", timeout=6)
        return
    await screen.app.open_screen(target, weights=weights)


async def open_classifier(screen: AnyDftuiScreen, run: RunSummary) -> None:
    await open_with_weights(screen, run, "classify", "to classify with")


async def resume_run(screen: AnyDftuiScreen, run: RunSummary) -> None:
    """Hand a resumable run to the Training screen with its recorded config."""
    if not run.resumable:
        why = {
            "finished": "it finished",
            "running": "it is still running",
            "damaged": "its run.json is damaged",
        }.get(run.status, "it has no resume checkpoint (resume.pt)")
        screen.notify(f"this run cannot be resumed: {why}", severity="warning", timeout=6)
        return
    from dftui.core.runs import resume_config

    try:  # config.json is untrusted: resume_config type-checks it (ValueError with why)
        config = resume_config(run.run_dir)
        config.validate()
    except ValueError as exc:  # ConfigError is a ValueError too
        screen.notify(f"cannot resume {run.run_id}: {exc}", severity="error", timeout=8)
        return
    await screen.app.start_training(config, resume=run.run_dir)


class EventsLoaded(Message):
    def __init__(
        self, run_dir: Path, events: list[Event], error: str = "", problems: list[str] | None = None
    ) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.events = events
        self.error = error
        self.problems = problems or []  # lines of events.jsonl that could not be used


class RunDetailScreen(DftuiModalScreen[None]):
    """One past run, full screen: a summary line, then its charts and epoch table."""

    TITLE = "Run"
    BINDINGS = [
        Binding("escape", "dismiss", "Back", id="runs.back"),
        Binding("c", "classify", "Classify with weights", id="runs.detail_classify"),
        Binding("r", "resume", "Resume", id="runs.detail_resume"),
        Binding("e", "evaluate", "Evaluate weights", show=False, id="runs.detail_evaluate"),
        Binding("x", "export", "Export", show=False, id="runs.detail_export"),
        Binding("p", "copy_path", "Copy folder path", show=False, id="runs.detail_path"),
    ]

    def __init__(self, run: RunSummary, export_to: Path | None = None) -> None:
        super().__init__()
        self.run = run
        self.events_fed = 0
        self.user, self.user_problem = read_user(run.run_dir)
        self.export_to = export_to  # export once the charts are drawn (Runs screen, x)
        self.exported: list[Path] = []

    def compose(self) -> ComposeResult:
        yield RunStatusLine()
        with Vertical(id="run-detail"):
            yield Static(self._head(), id="run-head")
            yield Static("", id="run-message")
            yield Static("", id="run-evaluations")  # see show_evaluations (EVAL) at the end
            yield RunView(id="run-view")
        yield Footer()

    def _head(self) -> Text:
        r = self.run
        text = Text.assemble(
            (f" {r.backbone} ", "bold reverse"),
            "  ",
            (outcome_text(r.status, r.early_stop_epoch), STATUS_STYLES.get(r.status, "")),
            f" · {local_time(r.started)} · epochs {epochs_text(r)} · best {accuracy_text(r)}\n",
            ("data ", "dim"), short_path(r.train_dir, 120),
            ("  val ", "dim"), short_path(r.val_dir, 120),
            "\n",
            ("weights ", "dim"), r.weights_path or "none saved",
            ("   run ", "dim"), r.run_id,
        )
        u = self.user
        if u.name or u.tags or u.note:
            text.append("\n")
            text.append_text(user_cell(u, 200))
            if u.note:
                text.append(("  " if u.name or u.tags else "") + u.note.replace("\n", " "),
                            style="italic")
        return text

    def on_mount(self) -> None:
        message = self.query_one("#run-message", Static)
        text = "\n".join(m for m in (self.run.message, self.user_problem) if m)
        message.display = bool(text)
        message.update(Text(text))
        self._read(self.run.run_dir)
        show_evaluations(self)

    @work(thread=True, exclusive=True, group="run-events", exit_on_error=False)
    def _read(self, run_dir: Path) -> None:
        try:
            events, problems = read_events_checked(run_dir)
        except OSError as exc:
            self.post_message(EventsLoaded(run_dir, [], f"cannot read {run_dir}: {exc}"))
            return
        self.post_message(EventsLoaded(run_dir, events, problems=problems))

    def on_events_loaded(self, message: EventsLoaded) -> None:
        view = self.query_one(RunView)
        for event in message.events:
            view.feed(event)
        view.flush()
        self.events_fed = len(message.events)
        note = self.query_one("#run-message", Static)
        damaged = ""
        if message.problems:
            count = len(message.problems)
            damaged = (f"events.jsonl: {count} damaged line{'s' if count > 1 else ''} skipped "
                       f"({message.problems[0]})")
        if message.error:
            note.update(Text(message.error))
            note.display = True
        elif damaged:
            note.update(Text("\n".join(m for m in (self.run.message, damaged) if m)))
            note.display = True
        elif not view.rows:
            extra = self.run.message or _final_message(message.events)
            note.update(Text(
                "no epoch finished in this run" + (f": {extra}" if extra else "")))
            note.display = True
        if self.export_to is not None:
            folder, self.export_to = self.export_to, None
            self.call_after_refresh(self._export_when_drawn, folder)

    async def _export_when_drawn(self, folder: Path) -> None:
        self.exported = await export_run(self, self.run, folder)

    async def action_export(self) -> None:
        from dftui.ui.screens.run_dialogs import ExportScreen

        async def chosen(folder: Path | None) -> None:
            if folder is not None:
                self.exported = await export_run(self, self.run, folder)

        label = self.user.name or self.run.run_id
        self.app.push_screen(ExportScreen(label, default_export_folder(self)), chosen)

    def action_copy_path(self) -> None:
        copy_path(self, self.run)

    async def action_classify(self) -> None:
        await open_classifier(self, self.run)

    async def action_resume(self) -> None:
        await resume_run(self, self.run)

    async def action_evaluate(self) -> None:
        await open_evaluate(self, self.run)



def _final_message(events: list[Event]) -> str:
    for event in reversed(events):
        if isinstance(event, RunFailed):
            return event.message
        if isinstance(event, RunFinished):
            return outcome_text(event.status, event.early_stop_epoch)
    return ""


class RunsScreen(RunsManageMixin, DftuiScreen[None]):
    TITLE = "Runs"
    BINDINGS = [
        Binding("enter", "open_run", "Open", id="runs.open", show=True),
        Binding("space", "mark", "Mark", id="runs.mark"),
        Binding("v", "compare", "Compare", id="runs.compare"),
        Binding("c", "classify", "Classify with weights", id="runs.classify"),
        Binding("e", "evaluate", "Evaluate weights", show=False, id="runs.evaluate"),
        Binding("r", "resume", "Resume", id="runs.resume"),
        Binding("ctrl+r", "reload", "Reload", id="runs.reload"),
        Binding("s", "stop", "Stop run", id="runs.stop"),
        Binding("n", "edit", "Name, tags, note", show=False, id="runs.edit"),
        Binding("a", "archive", "Archive/unarchive", show=False, id="runs.archive"),
        Binding("h", "toggle_archived", "Show/hide archived", show=False,
                id="runs.show_archived"),
        Binding("delete", "delete", "Delete run", show=False, id="runs.delete"),
        Binding("p", "copy_path", "Copy folder path", show=False, id="runs.path"),
        Binding("x", "export", "Export CSV + charts", show=False, id="runs.export"),
    ]

    def __init__(self, root: Path | str | None = None) -> None:
        super().__init__()
        self._root = Path(root) if root else None
        self.runs: dict[str, RunSummary] = {}
        self._ui_ready = False
        self.archived_hidden = 0
        self.user: dict[str, UserInfo] = {}
        self.user_problems: dict[str, str] = {}
        self.marked: list[str] = []  # run folders marked for comparison, in marking order
        self.show_archived = False
        self._wide: bool | None = None  # the column set in use (see _columns)
        self._signature: tuple[Any, ...] = ()

    def compose(self) -> ComposeResult:
        yield NavBar("runs")
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="runs-info")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#runs-table", DataTable)
        self.reload()
        table.focus()
        self._ui_ready = True
        # Live runs move on, end, or appear (another terminal): refresh while shown.
        self.set_interval(LIVE_REFRESH_S, self._refresh_live)

    def _refresh_live(self) -> None:
        if not self.is_current:
            return
        try:
            runs = list_runs(self._root)
        except OSError:
            return
        if live_signature(runs) != self._signature:
            self.reload()  # keeps the cursor on the same run

    def on_screen_resume(self) -> None:
        if self._ui_ready:  # the first resume can come before compose
            self.reload()  # a run may have started, finished or been resumed meanwhile

    def on_resize(self) -> None:
        if self._ui_ready:
            self.reload()  # the data column takes the width left

    def reload(self) -> None:
        table = self.query_one("#runs-table", DataTable)
        current = self.selected_run()
        runs = list_runs(self._root)
        self._signature = live_signature(runs)
        self.user, self.user_problems = {}, {}
        for run in runs:
            key = str(run.run_dir)
            self.user[key], problem = read_user(run.run_dir)
            if problem:
                self.user_problems[key] = problem
        self.archived_hidden = 0
        if not self.show_archived:
            shown = [r for r in runs if not self.user[str(r.run_dir)].archived]
            self.archived_hidden = len(runs) - len(shown)
            runs = shown
        self.runs = {str(r.run_dir): r for r in runs}
        self.marked = [k for k in self.marked if k in self.runs or Path(k).is_dir()]
        width = self.size.width or 120
        # Below 100 columns the data folder moves to the info panel and the name takes its
        # place; wider, the data column gets what the others leave (its end is kept).
        wide = width >= 100
        if wide != self._wide:
            self._wide = wide
            table.clear(columns=True)
            table.add_column(" ", key="mark")
            table.add_column("Started", key="started")
            table.add_column("Name", key="name")
            table.add_column("Backbone", key="backbone")
            table.add_column("Status", key="status")
            table.add_column("Best acc", key="acc")
            table.add_column("Epochs", key="epochs")
            if wide:
                table.add_column("Data", key="data")
        else:
            table.clear()
        name_chars = max(8, min(24, width - 66)) if not wide else 20
        data_chars = max(15, width - 66 - 3 - name_chars - 2)
        for run in runs:
            key = str(run.run_dir)
            color = self.mark_color(run)
            cells: list[Any] = [
                Text("◆", style=f"bold {color}") if color else Text(" "),
                local_time(run.started),
                user_cell(self.user[key], name_chars),
                run.backbone,
                status_cell(run),
                Text(accuracy_text(run), justify="right"),
                Text(epochs_text(run), justify="right"),
            ]
            if wide:
                cells.append(short_path(run.train_dir, data_chars))
            table.add_row(*cells, key=key)
        if current is not None and str(current.run_dir) in self.runs:
            table.move_cursor(row=table.get_row_index(str(current.run_dir)))
        self._show_info()
        self.refresh_bindings()

    def selected_run(self) -> RunSummary | None:
        table = self.query_one("#runs-table", DataTable)
        if not self.runs or table.row_count == 0:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        except Exception:  # noqa: BLE001 - no valid cursor
            return None
        return self.runs.get(str(key.value))

    @on(DataTable.RowHighlighted, "#runs-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_info()
        self.refresh_bindings()

    @on(DataTable.RowSelected, "#runs-table")
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open_run()

    def _show_info(self) -> None:
        info = self.query_one("#runs-info", Static)
        run = self.selected_run()
        if run is None:
            if self.archived_hidden:
                key = self.app.key_display_for("runs.show_archived", "h")
                info.update(Text(f"{self.archived_hidden} archived run(s) hidden; {key} shows "
                                 "them.", style="dim"))
                return
            info.update(Text(
                "No runs yet. Start one on Setup (F2) or with `dftui train`; each run is "
                "recorded here.", style="dim"))
            return
        hints = ["Enter: follow live · s: stop" if run.live and not run.host else "Enter: charts"]
        if weights_available(run):
            hints.append("c: classify")
        if run.resumable:
            hints.append("r: resume")
        text = Text.assemble(
            ("data ", "dim"), run.train_dir or "?", ("  val ", "dim"), run.val_dir or "?", "\n",
            ("weights ", "dim"), run.weights_path or "none saved", "\n",
            no_wrap=True, overflow="ellipsis",
        )
        if run.message:
            text.append(run.message + "\n", style="red")
        user = self.user.get(str(run.run_dir))
        problem = self.user_problems.get(str(run.run_dir))
        if problem:
            text.append(problem + "\n", style="red")
        elif user is not None and (user.name or user.tags or user.note):
            text.append_text(user_cell(user, 60))
            if user.note:
                text.append("  " + user.note.replace("\n", " "), style="italic")
            text.append("\n")
        hints += ["space: mark", "v: compare", "n: name/tags/note", "a: archive", "del: delete",
                  "p: path", "x: export"]
        text.append(" · ".join(hints), style="dim")
        info.update(text)

    def action_open_run(self) -> None:
        run = self.selected_run()
        if run is None:
            return
        fresh = read_run(run.run_dir) or run  # its status may have changed since the list
        if fresh.live and not fresh.host:
            # A run in progress: follow it live on the Training screen, from epoch 1.
            self.run_worker(self.app.attach_run(fresh.run_dir), group="attach")
            return
        self.app.push_screen(RunDetailScreen(fresh))

    def action_stop(self) -> None:
        """Ask the selected run to stop gracefully (checkpoint and best weights kept)."""
        run = self.selected_run()
        if run is None:
            return
        fresh = read_run(run.run_dir) or run
        if not fresh.live:
            self.notify(f"run {fresh.run_id} is not running ({fresh.status})", severity="warning")
            return
        from dftui.core.eventlog import request_stop

        try:
            request_stop(fresh.run_dir)
        except OSError as exc:
            self.notify(f"cannot ask run {fresh.run_id} to stop: {exc}", severity="error",
                        timeout=8)
            return
        self.notify(f"asked run {fresh.run_id} to stop after its current batch; its checkpoint "
                    "and best weights are kept")

    async def action_classify(self) -> None:
        run = self.selected_run()
        if run is not None:
            await open_classifier(self, run)

    async def action_evaluate(self) -> None:
        run = self.selected_run()  # on the list too, not only in the detail view
        if run is not None:
            await open_evaluate(self, run)

    async def action_resume(self) -> None:
        run = self.selected_run()
        if run is not None:
            await resume_run(self, read_run(run.run_dir) or run)

    def action_reload(self) -> None:
        self.reload()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Classify and Resume stay enabled: pressing them on a run without weights or
        # without a checkpoint says why, which a hidden key would not.
        if action == "open_run":
            return self.selected_run() is not None if self._ui_ready else False
        if action == "stop":  # shown only for a run in progress
            run = self.selected_run() if self._ui_ready else None
            return run is not None and run.live
        return True


# -- a run's evaluations (engineer EVAL): records of dftui.core.evaluate.list_evaluations --------
def evaluations_text(run_dir: Path, limit: int = 3) -> Text | None:
    """The run's latest evaluations on one line, or None when it has none."""
    from dftui.core.evaluate import list_evaluations

    evaluations = list_evaluations(run_dir)
    if not evaluations:
        return None
    text = Text("evaluations ", style="dim")
    for i, ev in enumerate(evaluations[:limit]):
        if i:
            text.append(" · ")
        auc = f" AUC {ev.roc_auc:.3f}" if ev.roc_auc is not None else ""
        text.append(f"{Path(ev.folder).name} acc {ev.accuracy:.1%}{auc}")
        text.append(f" ({local_time(ev.created)})", style="dim")
    if len(evaluations) > limit:
        text.append(f" · {len(evaluations) - limit} more", style="dim")
    text.append("   e: evaluate", style="dim")
    return text


def show_evaluations(screen: RunDetailScreen) -> None:
    widget = screen.query_one("#run-evaluations", Static)
    widget.styles.padding = (0, 1)
    text = evaluations_text(screen.run.run_dir)
    widget.display = text is not None  # hidden for runs never evaluated
    if text is not None:
        widget.update(text)


async def open_evaluate(screen: AnyDftuiScreen, run: RunSummary) -> None:
    await open_with_weights(screen, run, "evaluate", "to evaluate")
