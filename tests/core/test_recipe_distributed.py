"""The recipe options with two processes (gloo on the CPU, spawned as torchrun would start
them): a frozen backbone, class-weighted loss and EMA work there, every rank ending with
the same weights and the same average; class-balanced sampling is refused on every rank
with a message saying what to use instead."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def _rank_main(rank: int, port: int, train: str, val: str, out: str, results: str,
               balance: str) -> None:
    import hashlib
    import os

    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    import torch

    from dftui.core import distributed
    from dftui.core import train as train_mod
    from dftui.core.config import TrainConfig
    from dftui.core.events import LogMessage
    from dftui.core.train import fit

    seen: dict[str, object] = {"notes": []}
    original = train_mod._Trainer.run

    def run_and_keep(trainer):  # the trained model and its average, as each rank ends
        final = original(trainer)
        net, ema = trainer.net, trainer.recipe.ema
        digest = hashlib.sha256()
        for module in (net.model, ema.module if ema is not None else None):
            if module is not None:
                for value in module.state_dict().values():
                    digest.update(value.detach().cpu().numpy().tobytes())
        seen["digest"] = digest.hexdigest()
        seen["features_grad"] = any(p.requires_grad for p in net.model.features.parameters())
        return final

    train_mod._Trainer.run = run_and_keep

    def emit(event) -> None:
        if isinstance(event, LogMessage):
            seen["notes"].append(event.text)  # type: ignore[union-attr]

    distributed.init_from_env("cpu")
    torch.manual_seed(0)
    config = TrainConfig(train_dir=Path(train), val_dir=Path(val), epochs=2, batch_size=8,
                         img_size=32, workers=0, pretrained="none", device="cpu",
                         precision="fp32", out_dir=Path(out), runs_dir=Path(out) / "runs",
                         freeze_epochs=1, ema=True, ema_decay=0.9, balance=balance)
    final = fit(config, emit)
    distributed.shutdown()
    Path(results, f"rank{rank}.json").write_text(json.dumps({**seen, **final.to_dict()}, default=str))


def _spawn(dataset, tmp_path: Path, balance: str) -> list[dict]:
    import torch.multiprocessing as mp

    from dftui.cli.launch import free_port

    mp.spawn(_rank_main, args=(free_port(), str(dataset["train"]), str(dataset["val"]),
                               str(tmp_path / "out"), str(tmp_path), balance), nprocs=2, join=True)
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]


@pytest.mark.slow
def test_frozen_backbone_weighted_loss_and_ema_on_two_processes(dataset, tmp_path, capfd):
    finals = _spawn(dataset, tmp_path, "loss")
    # Unfrozen, the model is wrapped again without DDP's unused-parameter search (torch
    # warns when that search finds nothing, once per rank).
    assert "find_unused_parameters=True was specified" not in capfd.readouterr().err
    for final in finals:
        assert final["event"] == "run_finished" and final["status"] == "finished", final
        assert final["features_grad"]  # unfrozen for epoch 2
    assert finals[0]["digest"] == finals[1]["digest"]  # same weights, same average
    notes = finals[0]["notes"]
    assert any("backbone frozen until epoch 1" in n for n in notes), notes
    assert any("epoch 2: backbone unfrozen" in n for n in notes), notes
    assert any("class-weighted cross-entropy" in n for n in notes), notes


@pytest.mark.slow
def test_balanced_sampler_is_refused_on_every_rank(dataset, tmp_path):
    for final in _spawn(dataset, tmp_path, "sampler"):
        assert final["event"] == "run_failed"
        assert "class-balanced sampling is not supported with several processes" in final["message"]
