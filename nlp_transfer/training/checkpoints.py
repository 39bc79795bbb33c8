"""Resumable checkpoints that survive a kill: only safetensors and JSON, complete or absent.

A checkpoint is a folder ``step-00000012`` holding what training needs to continue exactly:

    trainable.safetensors   the trainable weights and every buffer (BatchNorm running statistics move
                            in training too); frozen weights come from the base model
    optimizer.safetensors   AdamW moments and step counts   + optimizer.json (its param groups)
    scheduler.json          the learning-rate schedule's position
    rng-<rank>.safetensors  torch (and CUDA) random state   + rng-<rank>.json (python, numpy)
    best.safetensors        the best epoch's trainable weights and buffers, when there is one
    progress.json           epoch, batches done in it, step, history so far, best metric, identity

It is written as ``step-00000012.tmp`` and swapped in when complete (`storage.atomic.staged_folder`),
so a kill during the write leaves only a ``.tmp`` folder, which is ignored (and removed by the next
save). Nothing is unpickled.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nlp_transfer.errors import ConfigError
from nlp_transfer.storage.atomic import staged_folder
from nlp_transfer.training.sharding import StateAccess

__all__ = ["Progress", "Checkpointer", "read_progress", "training_state", "load_training_state"]

_PREFIX = "step-"


@dataclass
class Progress:
    """Where training stands; the JSON part of a checkpoint. The engine's best-epoch tracker records
    into `best`, `best_epoch` and `stale`, so they are saved and restored with the rest."""

    epoch: int = 1
    batches_done: int = 0
    step: int = 0
    epoch_sums: dict[str, float] = field(default_factory=lambda: {"loss": 0.0, "batches": 0, "samples": 0})
    epochs: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    best: float | None = None
    best_loss: float | None = None  # breaks ties of `best` (a small validation split often ties on accuracy)
    best_epoch: int | None = None
    stale: int = 0
    identity: dict[str, Any] = field(default_factory=dict)


class Checkpointer:
    """Writes, rotates and reads checkpoints in one folder (every process calls; the main one writes)."""

    def __init__(self, folder: str | Path, accelerator, keep: int = 2) -> None:
        self.folder = Path(folder)
        self.accelerator = accelerator
        self.keep = keep
        self.state = StateAccess(accelerator)

    def latest(self) -> Path | None:
        complete = sorted(p for p in self.folder.glob(f"{_PREFIX}*") if p.is_dir() and not p.name.endswith(".tmp")
                          and (p / "progress.json").is_file())
        return complete[-1] if complete else None

    def save(self, progress: Progress, model: nn.Module, optimizer, scheduler, best_state: dict | None) -> Path:
        """Checkpoint the *prepared* `model` (DDP- or FSDP-wrapped, or plain). Every process calls:
        each writes its random state; the main one writes the rest."""
        final = self.folder / f"{_PREFIX}{progress.step:08d}"
        weights = moments = None
        if self.state.sharded or self.accelerator.is_main_process:  # under FSDP gathering is a collective
            weights, moments = self.state.snapshot(model), self.state.optimizer_state(model, optimizer)
        with self._staged(final) as staging:
            _save_rng(staging, self.accelerator.process_index)
            if self.accelerator.is_main_process:
                _write_shared(staging, progress, weights, moments, scheduler, best_state)
        if self.accelerator.is_main_process:
            self._rotate(keep_also=progress)
        self.accelerator.wait_for_everyone()
        return final

    @contextmanager
    def _staged(self, final: Path) -> Iterator[Path]:
        """The folder ``<final>.tmp`` that every process writes into; the main one makes it and,
        once every process has written, swaps it in as `final`."""
        staging = final.with_name(final.name + ".tmp")
        main = self.accelerator.is_main_process
        if main:
            for stale in self.folder.glob(f"{_PREFIX}*.tmp"):  # left by a kill during an earlier write
                shutil.rmtree(stale, ignore_errors=True)
        with staged_folder(final, staging=staging) if main else nullcontext(staging):
            self.accelerator.wait_for_everyone()  # the folder exists
            yield staging
            self.accelerator.wait_for_everyone()  # every process has written its part

    def load(self, path: Path, model: nn.Module, optimizer, scheduler, identity: dict[str, Any]) -> tuple[Progress, dict | None]:
        from safetensors.torch import load_file

        progress = read_progress(path)
        _check_identity(progress.identity, identity, path)
        # every process reads the whole files (a folder every node sees); under FSDP each keeps its shard
        self.state.restore(model, load_file(str(path / "trainable.safetensors")), main_only=False)
        groups = json.loads((path / "optimizer.json").read_text(encoding="utf-8"))
        moments = _unflatten_optimizer(load_file(str(path / "optimizer.safetensors")), groups)
        self.state.load_optimizer_state(model, optimizer, moments)
        scheduler.load_state_dict(json.loads((path / "scheduler.json").read_text(encoding="utf-8")))
        _load_rng(path, self.accelerator.process_index)
        best = load_file(str(path / "best.safetensors")) if (path / "best.safetensors").is_file() else None
        return progress, best

    def _rotate(self, keep_also: Progress) -> None:
        """Keep the newest `keep` checkpoints, and the one saved at the best epoch's end."""
        complete = sorted(p for p in self.folder.glob(f"{_PREFIX}*") if p.is_dir() and not p.name.endswith(".tmp"))
        best_step = next((row.get("step") for row in keep_also.epochs if row["epoch"] == keep_also.best_epoch), None)
        for old in complete[: -self.keep]:
            if best_step is None or old.name != f"{_PREFIX}{best_step:08d}":
                shutil.rmtree(old, ignore_errors=True)


def read_progress(path: Path) -> Progress:
    """The progress part of the checkpoint at `path`."""
    return Progress(**json.loads((path / "progress.json").read_text(encoding="utf-8")))


def training_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """What training changes: the trainable parameters and every buffer (CPU copies).

    Buffers are model state too: a BatchNorm layer in training mode updates its running mean,
    variance and batch count at every step, and a model restored without them predicts with other
    statistics than the weights were trained with. Buffers are small (a few per layer), so all of
    them are kept rather than guessing which ones moved.
    """
    state = {name: p.detach().to("cpu", copy=True).contiguous() for name, p in model.named_parameters() if p.requires_grad}
    state.update({name: b.detach().to("cpu", copy=True).contiguous() for name, b in model.named_buffers()})
    return state


def load_training_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy a `training_state` back into `model`, in place."""
    tensors = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    unknown = sorted(set(state) - set(tensors))
    if unknown:
        raise RuntimeError(f"internal error: saved state has tensors the model lacks: {unknown[:3]}")
    with torch.no_grad():
        for name, value in state.items():
            tensors[name].copy_(value)


def _write_shared(folder: Path, progress: Progress, weights: dict[str, torch.Tensor], moments: dict[str, Any], scheduler,
                  best_state: dict | None) -> None:
    """What one process writes for all: weights, optimizer, schedule, best state, then progress."""
    from safetensors.torch import save_file

    save_file(weights, str(folder / "trainable.safetensors"))
    tensors, groups = _flatten_optimizer(moments)
    save_file(tensors, str(folder / "optimizer.safetensors"))
    _write_json(folder / "optimizer.json", groups)
    _write_json(folder / "scheduler.json", scheduler.state_dict())
    if best_state:
        save_file({k: v.contiguous() for k, v in best_state.items()}, str(folder / "best.safetensors"))
    _write_json(folder / "progress.json", asdict(progress))  # last: its presence marks completeness


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {f"{index}.{key}": value.detach().cpu().contiguous()
               for index, values in state["state"].items() for key, value in values.items() if torch.is_tensor(value)}
    return tensors, {"param_groups": state["param_groups"]}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], groups: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    param_groups = [{**group, "betas": tuple(group["betas"])} if "betas" in group else group for group in groups["param_groups"]]
    return {"state": state, "param_groups": param_groups}


def _save_rng(folder: Path, rank: int) -> None:
    from safetensors.torch import save_file

    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    save_file(tensors, str(folder / f"rng-{rank}.safetensors"))
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    _write_json(folder / f"rng-{rank}.json", {"python": _listify(random.getstate()),
                                               "numpy": [kind, keys.tolist(), pos, has_gauss, gauss]})


def _load_rng(folder: Path, rank: int) -> None:
    from safetensors.torch import load_file

    tensors = load_file(str(folder / f"rng-{rank}.safetensors"))
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[f"cuda{i}"] for i in range(len(tensors) - 1)]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    saved = json.loads((folder / f"rng-{rank}.json").read_text(encoding="utf-8"))
    random.setstate(_tupleify(saved["python"]))
    kind, keys, pos, has_gauss, gauss = saved["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))


def _check_identity(saved: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    differing = sorted(key for key in set(saved) | set(current) if saved.get(key) != current.get(key))
    if differing:
        details = "; ".join(f"{key}: checkpoint {saved.get(key)!r}, now {current.get(key)!r}" for key in differing[:4])
        raise ConfigError(
            f"The checkpoint {path} belongs to a different run ({details}). Resume with the same model, labels, "
            "strategy, data and settings, or start fresh without --resume (or point train.checkpoint_dir elsewhere)."
        )


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=1), encoding="utf-8")


def _listify(value: Any) -> Any:
    return [_listify(v) for v in value] if isinstance(value, (tuple, list)) else value


def _tupleify(value: Any) -> Any:
    return tuple(_tupleify(v) for v in value) if isinstance(value, list) else value
