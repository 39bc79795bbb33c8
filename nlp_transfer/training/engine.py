"""The one training loop, on accelerate: CPU, one GPU or many, fp32/bf16/fp16.

It knows nothing of strategies or modalities: it trains whatever parameters require grad, over
whatever batches its loaders yield, and scores evaluations with the function it is given.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from nlp_transfer.config.settings import TrainingConfig
from nlp_transfer.training.sharding import StateAccess, meta_template

if TYPE_CHECKING:
    from nlp_transfer.training.checkpoints import Progress

__all__ = ["TrainingHistory", "make_accelerator", "process_state", "run_inference", "train_loop", "end_distributed", "quiet"]

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
    backbone_tuning: dict[str, Any] | None = None  # a stage before the head (contrastive pairs): what it did

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def make_accelerator(settings: TrainingConfig):
    """An Accelerator for these settings; in a single process, earlier settings are replaced.

    An unset `mixed_precision` is left to accelerate, which reads the launcher's choice
    (`accelerate launch --mixed_precision bf16`, an `accelerate config` file); what actually runs
    is ``accelerator.mixed_precision``, and that is what runs record.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import parse_choice_from_env

    on_cpu = settings.cpu or _no_gpu()
    # The launcher's choice reaches the process as ACCELERATE_MIXED_PRECISION; read it here rather
    # than leave it to accelerate, which keeps whatever an earlier Accelerator in this process used.
    precision = settings.mixed_precision or parse_choice_from_env("ACCELERATE_MIXED_PRECISION", "no")
    check_precision(precision, on_cpu)
    kwargs = dict(mixed_precision=precision, cpu=on_cpu, gradient_accumulation_steps=settings.gradient_accumulation_steps)
    if settings.report_to:
        from accelerate.utils import ProjectConfiguration

        folder = settings.logging_dir or "runs"
        kwargs.update(log_with=list(settings.report_to), project_config=ProjectConfiguration(project_dir=folder,
                                                                                             logging_dir=folder))
    try:
        accelerator = Accelerator(**kwargs)
    except ValueError:
        # accelerate keeps one global state; a second fit with another precision in the same
        # (single) process must be allowed to change it.
        if PartialState().num_processes > 1:
            raise
        AcceleratorState._reset_state()  # private, and the only way: accelerate (1.16) has no public reset
        accelerator = Accelerator(**kwargs)
    return accelerator


def check_precision(precision: str, on_cpu: bool) -> None:
    """Refuse a precision the device cannot run; warn where it runs but slowly."""
    from nlp_transfer.errors import ConfigError

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
    Batches that carry ``output_lengths`` have an output per position (a tag per word): each row is
    cut to its length, and outputs and targets come back as lists of arrays, one per example.
    """
    prepared = getattr(accelerator, "_dataloaders", None)  # private: accelerate's list of prepared loaders
    kept = len(prepared) if prepared is not None else 0
    try:
        return _gathered_outputs(forward, accelerator.prepare_data_loader(loader), accelerator, desc)
    finally:
        # accelerate keeps every loader it prepares (for save_state): one per predict chunk or
        # evaluation would keep their tokens alive, and memory would grow with the input
        if prepared is not None:
            del prepared[kept:]


def _gathered_outputs(forward, loader, accelerator, desc: str) -> tuple[np.ndarray, np.ndarray | None]:
    """`run_inference` over a prepared `loader`."""
    from tqdm.auto import tqdm

    size = len(loader.dataset)
    outputs: np.ndarray | None = None
    targets: np.ndarray | None = None
    seen = np.zeros(size, dtype=bool)
    with torch.no_grad():
        for batch in tqdm(loader, desc=desc, leave=False, disable=quiet(accelerator)):
            with accelerator.autocast():
                out = forward(batch).float()
            if "output_lengths" in batch:
                if outputs is None:
                    outputs, targets = [None] * size, ([None] * size if "labels" in batch else None)
                _keep_positions(accelerator, batch, out, outputs, targets, seen)
                continue
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


def _keep_positions(accelerator, batch, out: torch.Tensor, outputs: list, targets: list | None, seen: np.ndarray) -> None:
    """Store each row of a per-position batch, cut to its ``output_lengths``, at its index."""
    from nlp_transfer.tasks import IGNORED

    def gathered(tensor: torch.Tensor, pad: float) -> np.ndarray:
        if tensor.dim() > 1:  # positions differ per process: pad them first, then the rows
            tensor = accelerator.pad_across_processes(tensor, dim=1, pad_index=pad)
        return accelerator.gather(accelerator.pad_across_processes(tensor, pad_index=pad)).cpu().numpy()

    index = gathered(batch["index"], -1)
    lengths = gathered(batch["output_lengths"], 0)
    out = gathered(out, 0)
    labels = gathered(batch["labels"], IGNORED) if targets is not None else None
    for row in np.flatnonzero((index >= 0) & _first_occurrence(index)):
        if seen[index[row]]:
            continue
        outputs[index[row]] = out[row, : lengths[row]]
        if labels is not None:
            targets[index[row]] = labels[row, : lengths[row]]
        seen[index[row]] = True


def _first_occurrence(index: np.ndarray) -> np.ndarray:
    _, first = np.unique(index, return_index=True)
    mask = np.zeros(len(index), dtype=bool)
    mask[first] = True
    return mask


def train_loop(
    model: nn.Module,
    param_groups: Callable[[], list[dict[str, Any]]],
    train_loader: DataLoader,
    eval_loader: DataLoader | None,
    settings: TrainingConfig,
    score: ScoreFn,
    accelerator,
    metric_name: str,
    greater_is_better: bool,
    checkpointer=None,
    resume: bool = False,
    identity: dict[str, Any] | None = None,
    on_epoch_start: Callable[[int], bool] | None = None,
    on_unsharded: Callable[[nn.Module], None] | None = None,
    hyperparameters: dict[str, Any] | None = None,
) -> TrainingHistory:
    """Train for `settings.epochs`, evaluating after each; restores the best weights when asked.

    `param_groups()` gives AdamW groups over the parameters that train now. `on_epoch_start(epoch)`
    runs before each epoch and returns True when it made more parameters trainable: they join the
    optimizer as new groups (the Adam state of the others is kept) and the schedule covers them.
    With a `checkpointer`, saves after each epoch (and every `save_steps`); `resume` continues
    from its newest checkpoint exactly where it stopped (data order, random state, schedule).
    A model that accelerate sharded (FSDP) stays sharded in place; `on_unsharded(plain)` receives a
    plain copy with the trained weights at the end, for the caller to use from then on.
    With ``settings.report_to``, the trackers get `hyperparameters`, the steps and the epochs
    (`tracking`); they stay open for the caller to close (`tracking.end`).
    """
    latest = _checkpoint_to_resume(checkpointer) if resume else None  # before any work: it may refuse
    job = _Job(param_groups, eval_loader, settings, score, accelerator, metric_name, greater_is_better, checkpointer,
               on_epoch_start or (lambda epoch: False), on_unsharded or _no_plain_copy_wanted)
    run = _Run(job, model, train_loader)
    if settings.report_to:
        from nlp_transfer.training import tracking

        tracking.start(accelerator, hyperparameters or {"train": {k: getattr(settings, k) for k in settings.__dataclass_fields__}})
    restore_rng = run.start(latest, identity or {})
    started = time.perf_counter()
    for epoch in range(run.progress.epoch, settings.epochs + 1):
        if run.tracker.should_stop:  # a run resumed after its early stop has nothing left to do
            break
        run.epoch(epoch, restore_rng)
        restore_rng = None
        if run.tracker.should_stop:
            logger.info("Early stopping: no improvement of %s for %d evaluations.", metric_name, run.tracker.patience)
            break
    return run.finish(time.perf_counter() - started)


@dataclass(frozen=True)
class _Job:
    """What `train_loop` was asked to do; fixed for the whole run (see its docstring)."""

    param_groups: Callable[[], list[dict[str, Any]]]
    eval_loader: DataLoader | None
    settings: TrainingConfig
    score: ScoreFn
    accelerator: Any
    metric_name: str
    greater_is_better: bool
    checkpointer: Any
    on_epoch_start: Callable[[int], bool]
    on_unsharded: Callable[[nn.Module], None]


class _Run:
    """One run of the loop: the prepared model, optimizer and schedule, where training stands
    (`progress`, what a checkpoint saves) and the best epoch (`tracker`, which records into it)."""

    progress: Progress
    tracker: _BestTracker

    def __init__(self, job: _Job, model: nn.Module, train_loader: DataLoader) -> None:
        accelerator, settings = job.accelerator, job.settings
        self.job = job
        self.sampler = train_loader.batch_sampler  # ours, taken before accelerate wraps the loader
        self.state = StateAccess(accelerator)
        # FSDP shards the model in place and forbids copies after; keep its shape to rebuild it plain
        self.template = meta_template(model) if self.state.sharded else None
        job.on_epoch_start(1)
        optimizer = _adamw(job.param_groups())
        self.model, self.optimizer, self.train_loader = accelerator.prepare(model, optimizer, train_loader)
        total = math.ceil(len(self.train_loader) / settings.gradient_accumulation_steps) * settings.epochs
        self.scheduler = accelerator.prepare(_schedule(settings, self.optimizer, total, accelerator.num_processes))
        _log_banner(model, self.train_loader, job.eval_loader, settings, accelerator, total)

    @property
    def unwrapped(self) -> nn.Module:
        return self.job.accelerator.unwrap_model(self.model)

    def start(self, latest, identity: dict[str, Any]) -> Callable[[], None] | None:
        """Fresh progress, or the `latest` checkpoint's (weights, optimizer, schedule and best restored).

        Returns, when resuming mid-epoch, a function that restores the random state: it must run
        after the epoch's data iterator exists, as it did when the state was saved.
        """
        from nlp_transfer.training.checkpoints import Progress

        if latest is None:
            self.progress, best_state, restore_rng = Progress(identity=identity, epoch_sums=_fresh_sums()), None, None
        else:
            best_state, restore_rng = self._resume(latest, identity)
        job = self.job
        self.tracker = _BestTracker(job.metric_name, job.greater_is_better, job.settings.early_stopping_patience,
                                    self.progress, self.state, best_state)
        return restore_rng

    def _resume(self, latest, identity: dict[str, Any]):
        """Load the checkpoint `latest` into this run; its best state, and the random-state restore
        still to run (None when it has run)."""
        from nlp_transfer.training.checkpoints import _load_rng

        checkpointer = self.job.checkpointer
        # Replay the epochs that had started when the checkpoint was saved: the optimizer must hold
        # the same groups, in the same order, as it did then, before its state is loaded. (The saved
        # best state already holds the weights unfrozen since the best epoch.)
        if any([self._grow(epoch) for epoch in range(2, _started_epoch(latest) + 1)]):  # a list: every epoch replays
            self.model = _rewrap(self.job.accelerator, self.model)
        self.progress, best_state = checkpointer.load(latest, self.model, self.optimizer, self.scheduler, identity)
        logger.info("Resuming from %s: epoch %d, %d batches into it, optimizer step %d.", latest, self.progress.epoch,
                    self.progress.batches_done, self.progress.step)
        restore = lambda: _load_rng(latest, checkpointer.accelerator.process_index)  # noqa: E731
        if self.progress.batches_done == 0:  # saved at an epoch's end: before the next epoch's iterator
            restore()
            return best_state, None
        return best_state, restore

    def _grow(self, epoch: int) -> bool:
        """Let `on_epoch_start` unfreeze more; what it made trainable joins the optimizer."""
        if not self.job.on_epoch_start(epoch):
            return False
        _add_new_parameters(self.optimizer, self.scheduler, self.job.param_groups())
        return True

    def epoch(self, epoch: int, restore_rng: Callable[[], None] | None) -> None:
        """Train `epoch` (or what is left of it), evaluate it, and checkpoint when asked."""
        job, progress = self.job, self.progress
        if epoch > 1 and self._grow(epoch):
            self.tracker.cover(self.unwrapped)
            self.model = _rewrap(job.accelerator, self.model)
        row = _train_epoch(self.model, self._epoch_loader(epoch), self.optimizer, self.scheduler, job.settings,
                           job.accelerator, progress, restore_rng, self.save if job.settings.save_steps else None)
        if job.eval_loader is not None:
            self._evaluate(epoch, row)
        row["step"] = progress.step
        progress.epochs.append(row)
        if job.settings.report_to:
            from nlp_transfer.training import tracking

            tracking.log(job.accelerator, {"epoch": epoch, "train/epoch_loss": row["train_loss"],
                                           **{f"eval/{k[5:]}": v for k, v in row.items() if k.startswith("eval_")}},
                         progress.step)
        progress.epoch, progress.batches_done = epoch + 1, 0
        progress.epoch_sums = _fresh_sums()
        if job.settings.save_each_epoch:
            self.save()

    def _epoch_loader(self, epoch: int):
        loader = self.train_loader
        if self.progress.batches_done:
            loader = self.job.accelerator.skip_first_batches(loader, self.progress.batches_done)
        # accelerate re-seeds the batch sampler with its loader's own iteration count each time it
        # iterates; pin both to the epoch (zero-based) so a resumed run, whose loaders are new
        # objects, draws the same batches as an uninterrupted one. The dataset hears it too: image
        # augmentation is seeded per (epoch, example).
        for target in (loader, self.sampler, self.train_loader.dataset):
            if hasattr(target, "set_epoch"):
                target.set_epoch(epoch - 1)
        return loader

    def _evaluate(self, epoch: int, row: dict[str, Any]) -> None:
        """Score the evaluation set into `row` and let the tracker see it."""
        job, model = self.job, self.model
        model.eval()
        outputs, targets = run_inference(lambda b: model(**_inputs(b))["logits"], job.eval_loader, job.accelerator,
                                         "Evaluating")
        row.update({f"eval_{k}": v for k, v in job.score(outputs, targets).items()})
        improved = self.tracker.update(row[f"eval_{job.metric_name}"], epoch, self.model, row.get("eval_loss"))
        logger.info("epoch %d: %s%s", epoch, _short(row), " (best so far)" if improved else "")

    def save(self) -> None:
        if self.job.checkpointer is not None:
            self.job.checkpointer.save(self.progress, self.model, self.optimizer, self.scheduler,
                                       self.tracker.best_state)

    def finish(self, seconds: float) -> TrainingHistory:
        """Restore the best epoch's weights when asked, let go of the wrappers, and report."""
        job, progress, tracker = self.job, self.progress, self.tracker
        if job.settings.load_best_model_at_end and tracker.best_state is not None:
            tracker.restore(self.model)
            logger.info("Restored the weights of epoch %d (%s=%.4f).", progress.best_epoch, job.metric_name,
                        progress.best)
        if self.template is not None:  # sharded: hand back plain weights, as a DDP run leaves them
            from nlp_transfer.training.sharding import unsharded_copy

            job.on_unsharded(unsharded_copy(self.template, self.model, job.accelerator.device))
        job.accelerator.free_memory()  # drop the DDP wrapper before anyone tears the process group down
        return TrainingHistory(progress.epochs, progress.steps, job.metric_name if job.eval_loader is not None else None,
                               progress.best_epoch, progress.best, seconds, tracker.should_stop)


def _no_plain_copy_wanted(model: nn.Module) -> None:
    raise RuntimeError("internal error: a sharded (FSDP) run needs on_unsharded to hand its weights back")


def _schedule(settings: TrainingConfig, optimizer, total_steps: int, processes: int):
    """The learning-rate schedule of `settings` over `total_steps` optimizer steps."""
    from transformers import get_scheduler

    # accelerate steps a prepared scheduler once per process per optimizer step.
    warmup = math.ceil(total_steps * settings.warmup_ratio) * processes
    # transformers' "constant" ignores warmup; "constant_with_warmup" is constant after it
    schedule = "constant_with_warmup" if settings.scheduler == "constant" and warmup > 0 else settings.scheduler
    return get_scheduler(schedule, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps * processes)


def _checkpoint_to_resume(checkpointer):
    """The newest complete checkpoint, or a ConfigError that says how to start instead."""
    from nlp_transfer.errors import ConfigError

    latest = checkpointer.latest() if checkpointer is not None else None
    if latest is None:
        where = f"in {checkpointer.folder}" if checkpointer is not None else "(train.checkpoint_dir is not set)"
        raise ConfigError(f"Nothing to resume: no complete checkpoint {where}. Start without resume, or set "
                          "train.checkpoint_dir to the folder of the run to continue.")
    return latest


def _started_epoch(path) -> int:
    """The last epoch that had begun when the checkpoint was saved (one saved at an epoch's end
    already points at the next epoch, which had not begun)."""
    from nlp_transfer.training.checkpoints import read_progress

    progress = read_progress(path)
    return progress.epoch if progress.batches_done else progress.epoch - 1


def _add_new_parameters(optimizer, scheduler, groups: list[dict[str, Any]]) -> None:
    """Add the parameters of `groups` that the optimizer does not hold yet, as new groups.

    A new optimizer would reset the Adam moments of the weights already training; adding groups
    keeps them. The schedule (a LambdaLR: every transformers schedule is one) gets the new groups'
    base rates, so they follow the same warmup and decay from the current step on.
    """
    held = [p for group in optimizer.param_groups for p in group["params"]]
    if not all(p.requires_grad for p in held):
        raise RuntimeError("internal error: a strategy froze weights during a run; it may only unfreeze more")
    schedule = getattr(scheduler, "scheduler", scheduler)  # accelerate's wrapper, or the schedule itself
    if not hasattr(schedule, "lr_lambdas"):
        raise TypeError(f"internal error: cannot extend a {type(schedule).__name__} with new parameter groups")
    held_ids = {id(p) for p in held}
    for group in groups:
        new = [p for p in group["params"] if id(p) not in held_ids]
        if not new:
            continue
        factor = schedule.lr_lambdas[0](schedule.last_epoch)
        optimizer.add_param_group({**group, "params": new, "initial_lr": group["lr"], "lr": group["lr"] * factor})
        schedule.base_lrs.append(group["lr"])
        schedule.lr_lambdas.append(schedule.lr_lambdas[0])
        schedule._last_lr.append(group["lr"] * factor)


def _rewrap(accelerator, prepared):
    """The model wrapped again for several processes, after more of its parameters started training.

    DDP registers its gradient all-reduce only for the parameters that required grad when it
    wrapped the model: without a new wrapper, weights unfrozen later would train apart on each
    process. A single process has no wrapper, and nothing to do.
    """
    if accelerator.num_processes == 1:
        return prepared
    import gc

    model = accelerator.unwrap_model(prepared, keep_fp32_wrapper=False)
    # The old wrapper must go before the new one exists: its reducer's gradient hooks stay on the
    # parameters until it is freed. accelerate keeps a list of prepared models; drop it from there.
    # Private: its only public release, `free_memory`, also drops the optimizer, schedule and loaders.
    accelerator._models = [m for m in accelerator._models if m is not prepared]
    del prepared
    gc.collect()
    return accelerator.prepare_model(model)


def _fresh_sums() -> dict[str, float]:
    return {"loss": 0.0, "batches": 0, "samples": 0, "window_loss": 0.0, "window_batches": 0}


def _adamw(groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
    """AdamW, fused where torch supports it (one kernel for all tensors: about 10% faster full
    fine-tuning of MiniLM on 2 CPU cores, measured); the per-tensor loop elsewhere."""
    try:
        return torch.optim.AdamW(groups, fused=True)
    except (RuntimeError, TypeError, ValueError):  # an old torch, or parameters it cannot fuse
        return torch.optim.AdamW(groups)


def _inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in batch.items() if k != "labels"}


def _train_epoch(model, loader, optimizer, scheduler, settings, accelerator, progress, restore_rng, on_save) -> dict[str, Any]:
    """One epoch (or its remainder when resumed); running sums live in `progress` so a checkpoint
    taken mid-epoch carries them."""
    from tqdm.auto import tqdm

    model.train()
    sums = progress.epoch_sums
    samples_now = 0
    started = time.perf_counter()
    # what trains is fixed for the epoch; clipping only these skips a walk over every frozen weight
    # per step (a frozen encoder's hundreds of tensors: most of a cached-feature head's step time)
    trainable = [p for p in model.parameters() if p.requires_grad]
    bar = tqdm(loader, desc=f"Epoch {progress.epoch}/{settings.epochs}", disable=quiet(accelerator))
    for batch in bar:
        if restore_rng is not None:
            # The first batch is fetched: the data iterator now exists (creating it draws from the
            # global RNG), as it did when the state was saved mid-epoch.
            restore_rng()
            restore_rng = None
        value = _step(model, batch, optimizer, scheduler, settings, accelerator, trainable)
        samples_now += len(batch["index"])
        for key, add in (("loss", value), ("batches", 1), ("samples", len(batch["index"])), ("window_loss", value),
                         ("window_batches", 1)):
            sums[key] += add
        progress.batches_done += 1
        if not accelerator.sync_gradients:
            continue
        progress.step += 1
        if progress.step % settings.logging_steps == 0:
            rate = samples_now * accelerator.num_processes / (time.perf_counter() - started)
            bar.set_postfix(loss=f"{_log_window(progress, scheduler, rate):.4f}")
            if settings.report_to:
                from nlp_transfer.training import tracking

                last = progress.steps[-1]
                tracking.log(accelerator, {"train/loss": last["loss"], "train/learning_rate": last["learning_rate"],
                                           "train/samples_per_second": rate}, progress.step)
        if on_save is not None and progress.step % settings.save_steps == 0:
            on_save()
    if restore_rng is not None:  # saved after the epoch's last batch: nothing was left to iterate
        restore_rng()
    seconds = time.perf_counter() - started
    return {"epoch": progress.epoch, "train_loss": sums["loss"] / max(sums["batches"], 1), "train_seconds": seconds,
            "train_samples_per_second": samples_now * accelerator.num_processes / max(seconds, 1e-9)}


def _step(model, batch, optimizer, scheduler, settings, accelerator, trainable) -> float:
    """Forward and backward one batch; the optimizer steps when accelerate's accumulation says so
    (its prepared optimizer and schedule skip the calls in between)."""
    with accelerator.accumulate(model):
        loss = model(**batch)["loss"]
        accelerator.backward(loss)
        if accelerator.sync_gradients and settings.max_grad_norm is not None:
            accelerator.clip_grad_norm_(trainable, settings.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    return loss.detach().float().item()


def _log_window(progress, scheduler, samples_per_second: float) -> float:
    """Record the mean loss since the last logging step as a step row, start a new window, return it."""
    sums = progress.epoch_sums
    window = sums["window_loss"] / sums["window_batches"]
    progress.steps.append({"epoch": progress.epoch, "step": progress.step, "loss": window,
                           "learning_rate": max(scheduler.get_last_lr()), "samples_per_second": samples_per_second})
    sums["window_loss"], sums["window_batches"] = 0.0, 0
    return window


class _BestTracker:
    """Chooses the best evaluation and counts patience.

    Its numbers (best metric, its epoch, evaluations since) are fields of the `progress` it records
    into, so a checkpoint saves and restores them with the rest; beside them it keeps a CPU copy of
    the model state that training changes at the best epoch (trainable weights and buffers, see
    `checkpoints.training_state`), which a checkpoint saves as ``best.safetensors``.
    """

    def __init__(self, metric: str, greater_is_better: bool, patience: int | None, progress: Progress,
                 state: StateAccess, best_state: dict[str, torch.Tensor] | None = None) -> None:
        self.metric, self.greater, self.patience = metric, greater_is_better, patience
        self.progress = progress
        self.state = state
        self.best_state = best_state
        self._warned_nan = False

    def update(self, value: float, epoch: int, model: nn.Module, loss: float | None = None) -> bool:
        """Record one evaluation; True when it is the best so far: a better metric, or an equal one
        with a lower evaluation loss (49 held-out photos give accuracy in steps of 2%: many epochs tie,
        and the first of them is rarely the best model)."""
        record = self.progress
        if math.isnan(value):  # never "best": a NaN compares false with everything and would pin the choice
            if not self._warned_nan:
                self._warned_nan = True
                logger.warning("eval_%s is NaN at epoch %d (e.g. a correlation of constant predictions, or too few "
                               "evaluation examples); epochs whose %s is NaN are never chosen as the best.",
                               self.metric, epoch, self.metric)
            record.stale += 1
            return False
        better = record.best is None or (value > record.best if self.greater else value < record.best)
        tied_lower_loss = (not better and value == record.best and loss is not None and not math.isnan(loss)
                           and record.best_loss is not None and loss < record.best_loss)
        if better or tied_lower_loss:
            record.best, record.best_loss, record.best_epoch = float(value), loss, epoch
            self.best_state = self.state.snapshot(model)  # under FSDP: every process gathers, the main one keeps
        if better:
            record.stale = 0
        else:  # a tie is no progress for early stopping, even when its weights are kept
            record.stale += 1
        return better or tied_lower_loss

    def cover(self, model: nn.Module) -> None:
        """Call when more weights start training: they were frozen since the best epoch, so their
        values now are their values then, and restoring the best epoch must put them back too."""
        if self.best_state is None:
            return
        for name, parameter in model.named_parameters():
            if parameter.requires_grad and name not in self.best_state:
                self.best_state[name] = parameter.detach().to("cpu", copy=True)

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.progress.stale >= self.patience

    def restore(self, model: nn.Module) -> None:
        """Put the best epoch's state back into the prepared `model` (collective under FSDP)."""
        self.state.restore(model, self.best_state, main_only=self.state.sharded)


def _log_banner(model, train_loader, eval_loader, settings, accelerator, total_steps) -> None:
    from nlp_transfer.training.launch import describe_launch, launch_warnings

    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    everything = sum(p.numel() for p in model.parameters())
    launch = describe_launch(accelerator)
    for warning in launch_warnings(accelerator):
        logger.warning("%s", warning)
    logger.info(
        "Training: %d examples%s, %d epochs, batch %d per device x %d process(es) x %d accumulation = %d per step, "
        "%d optimizer steps, trainable parameters %s of %s (%.2f%%), %s on %d machine(s)%s, device %s, precision %s.",
        len(train_loader.dataset), f" ({len(eval_loader.dataset)} for evaluation)" if eval_loader is not None else "",
        settings.epochs, settings.batch_size, accelerator.num_processes, settings.gradient_accumulation_steps,
        settings.batch_size * accelerator.num_processes * settings.gradient_accumulation_steps, total_steps,
        f"{trainable:,}", f"{everything:,}", 100.0 * trainable / max(everything, 1), launch["distributed_type"],
        launch["num_machines"], f" (FSDP v{launch['fsdp']['fsdp_version']})" if "fsdp" in launch else "",
        accelerator.device, accelerator.mixed_precision)


def _short(row: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4f}" for k, v in row.items() if isinstance(v, float) and k != "train_seconds")


def quiet(accelerator) -> bool:
    """No progress bars: on processes other than each machine's main one, and where TQDM_DISABLE is set
    (an explicit ``disable=`` would override tqdm's own reading of it)."""
    return not accelerator.is_local_main_process or os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true", "yes")


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
