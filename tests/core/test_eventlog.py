"""The event log contract: what a writer appends and what a reader makes of it, including
damaged, cut, replaced and very long logs; and the status a run record reads as (running,
stalled, interrupted, another host's)."""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from pathlib import Path

import pytest

from dftui.core import eventlog
from dftui.core.eventlog import EventLogWriter, EventTail, LogGone, parse_record, read_history
from dftui.core.events import BatchEnd, EpochEnd, LogMessage, RunFinished, RunStarted
from dftui.core.runs import RunRecorder, read_run


def _batch(epoch: int, i: int, n: int = 10) -> BatchEnd:
    return BatchEnd(
        phase="train",
        epoch=epoch,
        epochs=3,
        batch=i,
        batches=n,
        loss=1.0 / i,
        images_per_s=100.0,
        data_wait=0.0,
        elapsed_s=float(i),
        eta_s=5.0,
        rss_mb=200.0,
    )


def _epoch(epoch: int) -> EpochEnd:
    return EpochEnd(
        epoch=epoch,
        epochs=3,
        train_loss=0.5,
        val_loss=0.4,
        val_accuracy=0.9,
        val_precision=0.9,
        val_recall=0.9,
        val_f1=0.9,
        seconds=1.0,
        images_per_s=10.0,
        data_wait=0.0,
        is_best=True,
        best_epoch=epoch,
    )


def _started(start_epoch: int = 0) -> RunStarted:
    return RunStarted(
        run_id="r",
        run_dir="/x",
        config={"epochs": 3, "backbone": "mobilenet_v2"},
        device="cpu",
        device_name="CPU",
        precision="fp32",
        channels_last=False,
        train_size=40,
        val_size=20,
        train_counts={"real": 20, "fake": 20},
        val_counts={"real": 10, "fake": 10},
        steps_per_epoch=5,
        start_epoch=start_epoch,
        params=1000,
        workers=0,
    )


def _finished(status: str = "finished") -> RunFinished:
    return RunFinished(
        status=status,
        epochs_completed=3,
        best_epoch=1,
        best_val_accuracy=0.9,
        weights_path="/w.pth",
        metadata_path="/w.json",
        run_dir="/x",
        seconds=3.0,
    )


def test_writer_header_and_reader_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLogWriter(path)
    log.write_header()
    for event in (_started(), _batch(1, 1), _epoch(1), _finished()):
        log.write(event.to_dict(), sync=isinstance(event, EpochEnd))
    log.close()
    header = json.loads(path.read_text().splitlines()[0])
    assert header["event"] == "log_opened" and header["schema"] == eventlog.SCHEMA_VERSION
    tail = EventTail(path)
    events = tail.read()
    assert [type(e).__name__ for e in events] == ["RunStarted", "BatchEnd", "EpochEnd", "RunFinished"]
    assert tail.schema == 1 and tail.writer_pid == os.getpid()
    assert isinstance(tail.ended, RunFinished)
    assert tail.read() == []  # nothing new


def test_reader_skips_damage_and_unknown_fields_and_waits_for_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    good = _epoch(1).to_dict()
    newer = {**_epoch(2).to_dict(), "a_field_from_the_future": [1, 2]}
    lines = [
        "not json at all",
        json.dumps([1, 2, 3]),
        json.dumps({"event": "an_event_from_the_future", "x": 1}),
        json.dumps({"event": "epoch_end", "epoch": "missing everything else"}),
        json.dumps({"event": "heartbeat", "t": 123.0}),
        json.dumps(good),
        json.dumps(newer),
    ]
    cut = json.dumps(_epoch(3).to_dict())
    path.write_text("\n".join(lines) + "\n" + cut[:20])  # the last line is still being written
    tail = EventTail(path)
    events = tail.read()
    assert [e.epoch for e in events] == [1, 2]  # type: ignore[attr-defined]
    assert tail.skipped_lines == 4
    assert tail.last_record_at == 123.0
    with open(path, "a") as fh:
        fh.write(cut[20:] + "\n")
    assert [e.epoch for e in tail.read()] == [3]  # type: ignore[attr-defined]


def test_reader_rereads_a_replaced_or_truncated_log(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(_epoch(i).to_dict()) + "\n" for i in (1, 2, 3)))
    tail = EventTail(path)
    assert len(tail.read()) == 3
    replacement = tmp_path / "new.jsonl"
    replacement.write_text(json.dumps(_epoch(1).to_dict()) + "\n")
    os.replace(replacement, path)  # a new inode, and smaller
    assert [e.epoch for e in tail.read()] == [1]  # type: ignore[attr-defined]
    assert tail.replaced == 1
    path.unlink()
    with pytest.raises(LogGone):
        tail.read()


def test_end_record_then_resume_is_not_ended(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLogWriter(path)
    log.write_header()
    log.write(_started().to_dict())
    log.write(_finished("interrupted").to_dict())
    tail = EventTail(path)
    tail.read()
    assert isinstance(tail.ended, RunFinished)
    log.write_header()  # a resume opens the log again
    log.write(_started(1).to_dict())
    log.close()
    tail.read()
    assert tail.ended is None


def test_failed_write_leaves_a_line_of_its_own(tmp_path: Path, monkeypatch) -> None:
    """A full disk mid-record: the next record starts on a fresh line, readers skip the cut."""
    path = tmp_path / "events.jsonl"
    log = EventLogWriter(path)
    log.write(_epoch(1).to_dict())
    real = log._fh

    class Full:
        def write(self, data: bytes) -> int:
            real.write(data[:15])  # part of it reached the file
            real.flush()
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self) -> None:
            pass

        def close(self) -> None:
            pass

    log._fh = Full()  # type: ignore[assignment]
    monkeypatch.setattr(log, "_reopen", lambda: setattr(log, "_fh", real))
    with pytest.raises(OSError):
        log.write(_epoch(2).to_dict())
    log.write(_epoch(3).to_dict())
    log.close()
    tail = EventTail(path)
    assert [e.epoch for e in tail.read()] == [1, 3]  # type: ignore[attr-defined]
    assert tail.skipped_lines == 1


def test_recorder_survives_a_full_disk(tmp_path: Path, monkeypatch) -> None:
    recorder = RunRecorder(tmp_path / "run")

    def full(record, sync=False):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(recorder._log, "write", full)
    recorder(_epoch(1))  # no exception: training goes on
    assert recorder.write_error and "disk is full" in recorder.write_error
    recorder.close()


def test_heartbeat_and_stop_request(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(eventlog, "HEARTBEAT_S", 0.2)
    monkeypatch.setattr(eventlog, "STOP_POLL_S", 0.05)
    from dftui.core.events import StopFlag

    stop = StopFlag()
    recorder = RunRecorder(tmp_path / "run", stop=stop)
    time.sleep(0.6)
    text = (tmp_path / "run" / "events.jsonl").read_text()
    assert '"heartbeat"' in text
    eventlog.request_stop(tmp_path / "run")
    eventlog.request_stop(tmp_path / "run")  # twice is fine
    assert stop.wait(2.0) and stop.reason == "stopped"
    recorder.close()
    # A new attempt (resume) does not inherit the old request.
    stop2 = StopFlag()
    RunRecorder(tmp_path / "run", resumed=True, stop=stop2).close()
    assert not (tmp_path / "run" / eventlog.STOP_FILE).exists()
    assert not stop2.is_set()


def test_long_log_is_thinned_but_keeps_epochs_and_last_batches(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(eventlog, "READ_CHUNK", 64 << 10)
    monkeypatch.setattr(eventlog, "HISTORY_BATCH_POINTS", 100)
    path = tmp_path / "events.jsonl"
    with open(path, "w") as fh:
        fh.write(json.dumps(_started().to_dict()) + "\n")
        for epoch in (1, 2, 3):
            for i in range(1, 2001):
                fh.write(json.dumps(_batch(epoch, i, 2000).to_dict()) + "\n")
            if epoch < 3:
                fh.write(json.dumps(_epoch(epoch).to_dict()) + "\n")
    events, tail = read_history(tmp_path)
    batches = [e for e in events if isinstance(e, BatchEnd)]
    assert 50 <= len(batches) <= 400
    assert [e.epoch for e in events if isinstance(e, EpochEnd)] == [1, 2]
    # The last batch of every epoch is there: progress is exact where it matters.
    for epoch in (1, 2, 3):
        assert max(b.batch for b in batches if b.epoch == epoch) == 2000
    assert events[-1] == _batch(3, 2000, 2000)
    assert tail.offset == path.stat().st_size


def test_parse_record_never_raises() -> None:
    for data in (None, 1, "x", [], {}, {"event": None}, {"event": "batch_end", "loss": "x"},
                 {"event": "log", "level": "info", "text": "hi", "extra": 1}):
        parse_record(data)
    assert parse_record({"event": "log", "level": "info", "text": "hi", "new": 1}) == \
        LogMessage(level="info", text="hi")


def _record(run_dir: Path, **info) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    base = {"run_id": run_dir.name, "status": "running", "backbone": "mobilenet_v2",
            "started": "2026-01-01T00:00:00+00:00", "epochs": 3}
    (run_dir / "run.json").write_text(json.dumps({**base, **info}))
    (run_dir / "events.jsonl").write_text("{}\n")


def test_status_of_a_running_record(tmp_path: Path) -> None:
    here = socket.gethostname()
    _record(tmp_path / "alive", pid=os.getpid(), host=here)
    assert read_run(tmp_path / "alive").status == "running"  # type: ignore[union-attr]
    _record(tmp_path / "stale", pid=os.getpid(), host=here)
    old = time.time() - 10 * eventlog.HEARTBEAT_S
    os.utime(tmp_path / "stale" / "events.jsonl", (old, old))
    assert read_run(tmp_path / "stale").status == "stalled"  # type: ignore[union-attr]
    _record(tmp_path / "dead", pid=2**22 + 12345, host=here)
    assert read_run(tmp_path / "dead").status == "interrupted"  # type: ignore[union-attr]
    # Another machine's run (a shared home folder): its pid means nothing here.
    _record(tmp_path / "remote", pid=2**22 + 12345, host="gpu-box-7")
    remote = read_run(tmp_path / "remote")
    assert remote is not None and remote.status == "running" and remote.host == "gpu-box-7"
    assert remote.status_text == "running on gpu-box-7" and remote.live
    _record(tmp_path / "done", status="finished", pid=2**22 + 12345, host="gpu-box-7")
    assert read_run(tmp_path / "done").status_text == "finished on gpu-box-7"  # type: ignore[union-attr]


def test_long_log_replay_on_the_runs_screen_is_sampled(tmp_path: Path, monkeypatch) -> None:
    from dftui.core import runs as runs_mod

    monkeypatch.setattr(runs_mod, "LONG_LOG_BYTES", 10_000)
    monkeypatch.setattr(eventlog, "HISTORY_BATCH_POINTS", 20)
    with open(tmp_path / "events.jsonl", "w") as fh:
        fh.write("damaged {\n")
        for i in range(1, 3001):
            fh.write(json.dumps(_batch(1, i, 3000).to_dict()) + "\n")
        fh.write(json.dumps(_epoch(1).to_dict()) + "\n")
    events, problems = runs_mod.read_events_checked(tmp_path)
    assert len(events) < 200 and isinstance(events[-1], EpochEnd)
    assert events[-2] == _batch(1, 3000, 3000)
    assert problems == ["1 line(s) damaged or not understood"]


def test_every_event_with_tuple_fields_reads_back() -> None:
    """An end record must always read back: a run_failed with its ways out (a tuple field)
    was refused by the checked reader, so attach and the Runs screen lost the failure."""
    from dftui.core.events import RunFailed

    failed = RunFailed(
        message="out of memory", run_dir="/x", fixes=("batch_size", "pretrained=none")
    )
    note = LogMessage(level="warning", text="weights missing", fixes=("pretrained=none",))
    for event in (failed, note):
        assert parse_record(json.loads(json.dumps(event.to_dict()))) == event
