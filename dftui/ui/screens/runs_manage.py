"""Run management on the Runs screen: mark runs to compare, name/tag/annotate, archive,
delete, copy the folder path, export metrics (CSV) and charts (SVG).

A mixin so the Runs screen's own module keeps to listing and opening runs; every action here
works on ``self.selected_run()`` and the run's user.json (dftui.core.run_manage)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text

from dftui.core.errors import describe_error
from dftui.core.run_manage import (
    ManageError,
    UserInfo,
    delete_run,
    read_user,
    safe_stem,
    update_user,
    weights_files,
    weights_shared_with,
    write_user,
)
from dftui.core.runs import RunSummary, read_run

if TYPE_CHECKING:
    from dftui.ui.screens.base import AnyDftuiScreen

# Curve colours of compared runs, in marking order (distinct in 256 colours and in the light
# theme); a run keeps its colour in the list, the table and the charts.
COMPARE_COLORS = ("dodger_blue1", "orange1", "green3", "magenta", "gold1", "cyan", "red",
                  "medium_purple1")
MAX_COMPARE = len(COMPARE_COLORS)


def run_label(run: RunSummary, info: UserInfo | None = None) -> str:
    """The user's name for the run, else its id."""
    return info.name if info is not None and info.name else run.run_id


def default_export_folder(screen: Any) -> Path:  # a Runs screen, or the mixin on it
    saved = screen.app.settings.data.get("export_dir")
    if isinstance(saved, str) and saved.strip():
        return Path(saved)
    return Path.cwd() / "dftui-exports"


async def export_run(screen: AnyDftuiScreen, run: RunSummary, folder: Path) -> list[Path]:
    """Write the run's metrics CSV and, from the screen as shown (its charts), an SVG, into
    ``folder``; notify where they went. The SVG is Textual's own screenshot of the screen."""
    from dftui.core.run_manage import export_metrics_csv, free_path

    info, _ = read_user(run.run_dir)
    stem = safe_stem(run_label(run, info))
    try:
        csv_path = export_metrics_csv(run.run_dir, folder, stem)
        svg_path = free_path(folder / f"{stem}-charts.svg")
        screen.app.save_screenshot(filename=svg_path.name, path=str(folder))
    except OSError as exc:
        screen.notify(f"cannot export to {folder}: {describe_error(exc)} (choose another folder "
                      "with x)", severity="error", timeout=10)
        return []
    screen.app.settings.update(export_dir=str(folder))
    screen.notify(f"exported to {folder}:\n{csv_path.name}\n{svg_path.name}", timeout=10)
    return [csv_path, svg_path]


class RunsManageMixin:
    """Actions of the Runs screen on the highlighted (or the marked) runs."""

    marked: list[str]
    show_archived: bool
    user: dict[str, UserInfo]

    # provided by RunsScreen / Screen
    selected_run: Any
    reload: Any
    notify: Any
    app: Any

    def _user_of(self, run: RunSummary) -> UserInfo:
        return self.user.get(str(run.run_dir)) or read_user(run.run_dir)[0]

    # -- compare ----------------------------------------------------------------------
    def action_mark(self) -> None:
        run = self.selected_run()
        if run is None:
            return
        key = str(run.run_dir)
        if key in self.marked:
            self.marked.remove(key)
        elif len(self.marked) >= MAX_COMPARE:
            self.notify(f"at most {MAX_COMPARE} runs are compared at once; unmark one with space",
                        severity="warning")
            return
        else:
            self.marked.append(key)
        self.reload()
        self._cursor_down()

    def _cursor_down(self) -> None:
        from textual.widgets import DataTable

        table = self.query_one("#runs-table", DataTable)  # type: ignore[attr-defined]
        if table.cursor_row < table.row_count - 1:
            table.move_cursor(row=table.cursor_row + 1)

    def mark_color(self, run: RunSummary) -> str | None:
        key = str(run.run_dir)
        return COMPARE_COLORS[self.marked.index(key)] if key in self.marked else None

    def action_compare(self) -> None:
        from dftui.ui.screens.compare import CompareScreen

        runs = [read_run(Path(k)) for k in self.marked]
        runs = [r for r in runs if r is not None]
        if len(runs) < 2:
            run = self.selected_run()
            if run is not None and len(runs) == 1 and runs[0].run_dir != run.run_dir:
                runs.append(run)  # one marked and another highlighted: compare those two
            else:
                self.notify("mark two or more runs with space, then press v to compare them",
                            severity="warning")
                return
        colors = {str(r.run_dir): COMPARE_COLORS[i] for i, r in enumerate(runs)}
        self.app.push_screen(CompareScreen(runs, colors))

    # -- name, tags, note ---------------------------------------------------------------
    def action_edit(self) -> None:
        from dftui.ui.screens.run_dialogs import EditRunScreen

        run = self.selected_run()
        if run is None:
            return
        info, problem = read_user(run.run_dir)
        if problem:
            self.notify(f"{problem}; saving replaces it", severity="warning", timeout=8)

        def saved(result: UserInfo | None) -> None:
            if result is None:
                return
            try:
                write_user(run.run_dir, result)
            except OSError as exc:
                self.notify(f"cannot save {run.run_dir / 'user.json'}: {describe_error(exc)}",
                            severity="error", timeout=8)
                return
            self.reload()

        self.app.push_screen(EditRunScreen(run.run_id, info), saved)

    # -- archive ------------------------------------------------------------------------
    def action_archive(self) -> None:
        run = self.selected_run()
        if run is None:
            return
        info = self._user_of(run)
        try:
            update_user(run.run_dir, archived=not info.archived)
        except OSError as exc:
            self.notify(f"cannot save {run.run_dir / 'user.json'}: {describe_error(exc)}",
                        severity="error", timeout=8)
            return
        if info.archived:
            self.notify(f"{run_label(run, info)} is back in the list")
        else:
            key = self.app.key_display_for("runs.show_archived", "h")
            self.notify(f"{run_label(run, info)} archived: hidden from the list ({key} shows "
                        "archived runs)")
        self.reload()

    def action_toggle_archived(self) -> None:
        self.show_archived = not self.show_archived
        self.notify("archived runs are shown" if self.show_archived else
                    "archived runs are hidden", timeout=3)
        self.reload()

    # -- delete -------------------------------------------------------------------------
    def action_delete(self) -> None:
        from dftui.ui.screens.run_dialogs import DeleteRunScreen

        run = self.selected_run()
        if run is None:
            return
        run = read_run(run.run_dir) or run  # it may have started or ended meanwhile
        if run.live:
            self.notify(f"run {run.run_id} is still {run.status}; stop it first (Training "
                        "screen, s)", severity="warning", timeout=8)
            return
        info = self._user_of(run)
        files = weights_files(run)
        shared = weights_shared_with(run) if files else []
        why_kept = f"run(s) {', '.join(shared)} use them too" if shared else ""

        def answered(result: tuple[bool, bool] | None) -> None:
            if not result or not result[0]:
                return
            try:
                removed = delete_run(run, with_weights=result[1])
            except (ManageError, OSError) as exc:
                self.notify(f"not deleted: {exc}", severity="error", timeout=10)
                return
            key = str(run.run_dir)
            if key in self.marked:
                self.marked.remove(key)
            kept = "" if result[1] or not files else " (its weights are kept)"
            self.notify(f"deleted {len(removed)} item(s): " + ", ".join(str(p) for p in removed)
                        + kept, timeout=10)
            self.reload()

        self.app.push_screen(
            DeleteRunScreen(run_label(run, info), run.run_dir, files, why_kept), answered)

    # -- path, export ---------------------------------------------------------------------
    def action_copy_path(self) -> None:
        run = self.selected_run()
        if run is None:
            return
        copy_path(self, run)

    def action_export(self) -> None:
        from dftui.ui.screens.run_dialogs import ExportScreen
        from dftui.ui.screens.runs import RunDetailScreen

        run = self.selected_run()
        if run is None:
            return

        def chosen(folder: Path | None) -> None:
            if folder is not None:
                # The charts are drawn on the run's own screen: open it, export once drawn.
                self.app.push_screen(RunDetailScreen(read_run(run.run_dir) or run,
                                                     export_to=folder))

        info = self._user_of(run)
        self.app.push_screen(ExportScreen(run_label(run, info), default_export_folder(self)),
                             chosen)


def copy_path(screen: Any, run: RunSummary) -> None:
    """Copy the run's folder to the clipboard (through the terminal) and show it."""
    path = str(run.run_dir.resolve())
    screen.app.copy_to_clipboard(path)
    screen.notify(f"copied the run's folder: {path}", timeout=8)


def user_cell(info: UserInfo, limit: int) -> Text:
    """The Name column: the user's name, then its tags as #tag, cut to ``limit``."""
    text = Text(no_wrap=True, overflow="ellipsis")
    if info.archived:
        text.append("[archived] ", style="dim italic")
    text.append(info.name)
    for tag in info.tags:
        text.append((" " if text.plain.strip() else "") + f"#{tag}", style="dim")
    text.truncate(limit, overflow="ellipsis")
    return text
