"""The one training loop, on accelerate: CPU, one GPU or many, fp32/bf16/fp16.

It knows nothing of strategies or modalities: it trains whatever parameters require grad, over
whatever batches its loaders yield, and scores evaluations with the function it is given.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from .config import TrainingConfig

__all__ = ["TrainingHistory", "make_accelerator", "process_state", "run_inference", "train_loop", "end_distributed"]

logger = logging.getLogger(__name__)

ScoreFn = Callable[[np.ndarray, np.ndarray], dict[str, Any]]


@dataclass(frozen=True)
class TrainingHistory:
    """What `fit` returns: one row per epoch, one per logging step, and the best evaluation."""

    epochs: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    metric_name: str | None = None
    best_epoch: int | None = None
    best_metric: float | None = None
    train_seconds: float = 0.0
    stopped_early: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def make_accelerator(settings: TrainingConfig):
    """An Accelerator for these settings; in a single process, earlier settings are replaced."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState

    on_cpu = settings.cpu or _no_gpu()
    check_precision(settings.mixed_precision, on_cpu)
    kwargs = dict(mixed_precision=settings.mixed_precision, cpu=on_cpu,
                  gradient_accumulation_steps=settings.gradient_accumulation_steps)
    try:
        return Accelerator(**kwargs)
    except ValueError:
        # accelerate keeps one global state; a second fit with another precision in the same
        # (single) process must be allowed to change it.
        if PartialState().num_processes > 1:
            raise
        AcceleratorState._reset_state()
        return Accelerator(**kwargs)


def check_precision(precision: str, on_cpu: bool) -> None:
    """Refuse a precision the device cannot run; warn where it runs but slowly."""
    from .errors import ConfigError

    if precision == "fp16" and on_cpu:
        raise ConfigError("mixed_precision='fp16' needs a GPU (its loss scaling is CUDA's); on a CPU use 'bf16' "
                          "(same speed-up where the CPU supports it, no loss scaling needed) or 'no'.")
    if precision == "bf16" and not on_cpu and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"mixed_precision='bf16': this GPU ({torch.cuda.get_device_name()}) has no bf16; use 'fp16'.")
    if precision == "bf16" and on_cpu and not _cpu_has_bf16():
        logger.warning("This CPU has no native bf16 instructions; bf16 autocast will run, but slower than fp32.")


def _cpu_has_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # private API: when it is gone, assume support
        return True


def process_state():
    """accelerate's view of this process (rank, how many), with the same CPU rule as `make_accelerator`."""
    from accelerate import PartialState

    return PartialState(cpu=_no_gpu())


def _no_gpu() -> bool:
    # accelerate treats several processes on a machine without a GPU as one each unless told "cpu"
    # (torchrun sets no ACCELERATE_USE_CPU), so say it whenever there is no GPU.
    return not torch.cuda.is_available()


def run_inference(forward: Callable[[dict[str, torch.Tensor]], torch.Tensor], loader: DataLoader, accelerator,
                  desc: str = "Predicting") -> tuple[np.ndarray, np.ndarray | None]:
    """Outputs (and targets) for every example, in the dataset's order, across all processes.

    Batches carry each row's ``index``; outputs are gathered with it and put back in place, so any
    batch order (length-sorted) and any sharding (with padded duplicates) gives the same result.
    """
    from tqdm.auto import tqdm

    loader = accelerator.prepare_data_loader(loader)
    size = len(loader.dataset)
    outputs: np.ndarray | None = None
    targets: np.ndarray | None = None
    seen = np.zeros(size, dtype=bool)
    with torch.no_grad():
        for batch in tqdm(loader, desc=desc, leave=False, disable=not accelerator.is_local_main_process):
            with accelerator.autocast():
                out = forward(batch).float()
            index = accelerator.gather(accelerator.pad_across_processes(batch["index"], pad_index=-1)).cpu().numpy()
            out = accelerator.gather(accelerator.pad_across_processes(out)).cpu().numpy()
            labels = batch.get("labels")
            if labels is not None:
                labels = accelerator.gather(accelerator.pad_across_processes(labels.float())).cpu().numpy()
            keep = (index >= 0) & ~seen[np.clip(index, 0, None)]
            keep &= _first_occurrence(index)
            if outputs is None:
                outputs = np.zeros((size, *out.shape[1:]), dtype=np.float32)
                if labels is not None:
                    targets = np.zeros((size, *labels.shape[1:]), dtype=np.float32)
            outputs[index[keep]] = out[keep]
            if labels is not None:
                targets[index[keep]] = labels[keep]
            seen[index[keep]] = True
    if not seen.all():
        raise RuntimeError(f"internal error: {int((~seen).sum())} examples were not predicted")
    return outputs, targets


def _first_occurrence(index: np.ndarray) -> np.ndarray:
    _, first = np.unique(index, return_index=True)
    mask = np.zeros(len(index), dtype=bool)
    mask[first] = True
    return mask


def train_loop(
    model: nn.Module,
    groups: list[dict[str, Any]],
    train_loader: DataLoader,
    eval_loader: DataLoader | None,
    settings: TrainingConfig,
    score: ScoreFn,
    accelerator,
    metric_name: str,
    greater_is_better: bool,
) -> TrainingHistory:
    """Train for `settings.epochs`, evaluating after each; restores the best weights when asked."""
    from transformers import get_scheduler

    sampler = train_loader.batch_sampler
    optimizer = _adamw(groups)
    prepared, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
    steps_per_epoch = math.ceil(len(train_loader) / settings.gradient_accumulation_steps)
    total = steps_per_epoch * settings.epochs
    # accelerate steps a prepared scheduler once per process per optimizer step.
    scheduler = accelerator.prepare(get_scheduler(
        settings.scheduler, optimizer, num_warmup_steps=math.ceil(total * settings.warmup_ratio) * accelerator.num_processes,
        num_training_steps=total * accelerator.num_processes))
    _log_banner(model, train_loader, eval_loader, settings, accelerator, total)

    tracker = _BestTracker(metric_name, greater_is_better, settings.early_stopping_patience)
    epochs: list[dict[str, Any]] = []
    steps: list[dict[str, Any]] = []
    started = time.perf_counter()
    for epoch in range(1, settings.epochs + 1):
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        row = _train_epoch(prepared, train_loader, optimizer, scheduler, settings, accelerator, epoch, steps)
        if eval_loader is not None:
            prepared.eval()
            outputs, targets = run_inference(lambda b: prepared(**_inputs(b))["logits"], eval_loader, accelerator, "Evaluating")
            row.update({f"eval_{k}": v for k, v in score(outputs, targets).items()})
            improved = tracker.update(row[f"eval_{metric_name}"], epoch, accelerator.unwrap_model(prepared))
            logger.info("epoch %d: %s%s", epoch, _short(row), " (best so far)" if improved else "")
        epochs.append(row)
        if tracker.should_stop:
            logger.info("Early stopping: no improvement of %s for %d evaluations.", metric_name, tracker.patience)
            break
    seconds = time.perf_counter() - started
    unwrapped = accelerator.unwrap_model(prepared)
    if settings.load_best_model_at_end and tracker.best_state is not None:
        tracker.restore(unwrapped)
        logger.info("Restored the weights of epoch %d (%s=%.4f).", tracker.best_epoch, metric_name, tracker.best)
    accelerator.free_memory()  # drop the DDP wrapper before anyone tears the process group down
    return TrainingHistory(epochs, steps, metric_name if eval_loader is not None else None, tracker.best_epoch,
                           tracker.best, seconds, tracker.should_stop)


def _adamw(groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
    """AdamW, fused where torch supports it (one kernel for all tensors: about 10% faster full
    fine-tuning of MiniLM on 2 CPU cores, measured); the per-tensor loop elsewhere."""
    try:
        return torch.optim.AdamW(groups, fused=True)
    except (RuntimeError, TypeError, ValueError):  # an old torch, or parameters it cannot fuse
        return torch.optim.AdamW(groups)


def _inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in batch.items() if k != "labels"}


def _train_epoch(model, loader, optimizer, scheduler, settings, accelerator, epoch, steps) -> dict[str, Any]:
    from tqdm.auto import tqdm

    model.train()
    total_loss, batches, samples = 0.0, 0, 0
    window_loss, window_batches = 0.0, 0
    step = steps[-1]["step"] if steps else 0  # optimizer steps so far, across epochs
    started = time.perf_counter()
    progress = tqdm(loader, desc=f"Epoch {epoch}/{settings.epochs}", disable=not accelerator.is_local_main_process)
    for batch in progress:
        with accelerator.accumulate(model):
            loss = model(**batch)["loss"]
            accelerator.backward(loss)
            if accelerator.sync_gradients and settings.max_grad_norm is not None:
                accelerator.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        value = loss.detach().float().item()
        total_loss, batches, samples = total_loss + value, batches + 1, samples + len(batch["index"])
        window_loss, window_batches = window_loss + value, window_batches + 1
        step += int(accelerator.sync_gradients)
        if accelerator.sync_gradients and step % settings.logging_steps == 0:
            elapsed = time.perf_counter() - started
            steps.append({"epoch": epoch, "step": step,
                          "loss": window_loss / window_batches, "learning_rate": max(scheduler.get_last_lr()),
                          "samples_per_second": samples * accelerator.num_processes / elapsed})
            progress.set_postfix(loss=f"{window_loss / window_batches:.4f}")
            window_loss, window_batches = 0.0, 0
    seconds = time.perf_counter() - started
    return {"epoch": epoch, "train_loss": total_loss / max(batches, 1), "train_seconds": seconds,
            "train_samples_per_second": samples * accelerator.num_processes / seconds}


class _BestTracker:
    """Best metric so far, a CPU copy of the trainable weights at that point, and patience."""

    def __init__(self, metric: str, greater_is_better: bool, patience: int | None) -> None:
        self.metric, self.greater, self.patience = metric, greater_is_better, patience
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.stale = 0

    def update(self, value: float, epoch: int, model: nn.Module) -> bool:
        better = self.best is None or (value > self.best if self.greater else value < self.best)
        if math.isnan(value):
            better = self.best is None
        if better:
            self.best, self.best_epoch, self.stale = float(value), epoch, 0
            self.best_state = {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}
        else:
            self.stale += 1
        return better

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.stale >= self.patience

    def restore(self, model: nn.Module) -> None:
        parameters = dict(model.named_parameters())
        with torch.no_grad():
            for name, value in self.best_state.items():
                parameters[name].copy_(value)


def _log_banner(model, train_loader, eval_loader, settings, accelerator, total_steps) -> None:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    everything = sum(p.numel() for p in model.parameters())
    logger.info(
        "Training: %d examples%s, %d epochs, batch %d per device x %d process(es) x %d accumulation = %d per step, "
        "%d optimizer steps, trainable parameters %s of %s (%.2f%%), device %s, precision %s.",
        len(train_loader.dataset), f" ({len(eval_loader.dataset)} for evaluation)" if eval_loader is not None else "",
        settings.epochs, settings.batch_size, accelerator.num_processes, settings.gradient_accumulation_steps,
        settings.batch_size * accelerator.num_processes * settings.gradient_accumulation_steps, total_steps,
        f"{trainable:,}", f"{everything:,}", 100.0 * trainable / max(everything, 1), accelerator.device,
        settings.mixed_precision)


def _short(row: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4f}" for k, v in row.items() if isinstance(v, float) and k != "train_seconds")


def end_distributed() -> None:
    """Tear down the process group at the end of a launched run (a no-op in a single process).

    The DDP-wrapped model must be gone first, or gloo can abort at exit ("terminate called
    without an active exception"): callers drop their models, then this collects and destroys.
    """
    import gc

    import torch.distributed as dist

    gc.collect()
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
