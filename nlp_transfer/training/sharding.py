"""What training changes, read and written whole even when the model is sharded (FSDP).

Under FSDP every process holds a shard of each parameter (a DTensor); code that reads parameters
as local tensors (``state_dict()`` into safetensors, ``copy_`` into a parameter) fails or sees a
fraction of the weights. `StateAccess` is the loop's one way in: plain copies of the unwrapped
model under one process or DDP, and torch's distributed-checkpoint state-dict API
(``torch.distributed.checkpoint.state_dict``) under FSDP, which gathers full tensors to the main
process and scatters full tensors back into shards. Under FSDP its methods are collectives: every
process calls them, in the same order.

The optimizer state is kept in torch's plain format (parameters numbered in optimizer order)
either way, so a checkpoint written under FSDP has the same files as one written under DDP.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

__all__ = ["StateAccess", "is_sharded", "meta_template", "unsharded_copy"]


def is_sharded(accelerator) -> bool:
    """True when accelerate shards the model (FSDP, version 1 or 2)."""
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.FSDP


class StateAccess:
    """Snapshots and restores of the training state (trainable weights and buffers) and the optimizer
    state of a *prepared* model, whatever wraps or shards it."""

    def __init__(self, accelerator) -> None:
        self.accelerator = accelerator
        self.sharded = is_sharded(accelerator)

    def snapshot(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """CPU copies of the trainable weights and the buffers. Under FSDP only the main process gets
        them (the others an empty dict): a full copy on every process would defeat the sharding."""
        from nlp_transfer.training.checkpoints import training_state

        if not self.sharded:
            return training_state(self.accelerator.unwrap_model(model))
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        # ignore_frozen_params keeps buffers: the same set as `training_state`, minus non-persistent
        # buffers, which no step changes
        options = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True)
        state = get_model_state_dict(model, options=options)
        return {name: value.contiguous() for name, value in state.items()}

    def restore(self, model: nn.Module, state: dict[str, torch.Tensor], *, main_only: bool) -> None:
        """Copy a `snapshot` back. `main_only`: only the main process holds `state` (a snapshot
        taken in this run); otherwise every process has read it (a checkpoint file)."""
        from nlp_transfer.training.checkpoints import load_training_state

        if not self.sharded:
            load_training_state(self.accelerator.unwrap_model(model), state)
            return
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        options = StateDictOptions(full_state_dict=True, strict=False, broadcast_from_rank0=main_only)
        missing, unexpected = set_model_state_dict(model, dict(state), options=options)
        if unexpected:
            raise RuntimeError(f"internal error: saved state has tensors the model lacks: {sorted(unexpected)[:3]}")

    def optimizer_state(self, model: nn.Module, optimizer) -> dict[str, Any]:
        """The optimizer's state in torch's plain format (``{"state": {index: ...}, "param_groups"}``),
        whole; under FSDP gathered to the main process (the others get an empty state)."""
        inner = getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper, or the optimizer
        if not self.sharded:
            return inner.state_dict()
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        keyed = get_optimizer_state_dict(model, inner, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if not keyed:  # not the main process
            return {}
        order = [name for group in keyed["param_groups"] for name in group["params"]]
        index = {name: i for i, name in enumerate(order)}
        groups, start = [], 0
        for group in keyed["param_groups"]:
            groups.append({**group, "params": list(range(start, start + len(group["params"])))})
            start += len(group["params"])
        return {"state": {index[name]: values for name, values in keyed.get("state", {}).items()},
                "param_groups": groups}

    def load_optimizer_state(self, model: nn.Module, optimizer, state: dict[str, Any]) -> None:
        """Load an `optimizer_state` that every process has read."""
        inner = getattr(optimizer, "optimizer", optimizer)
        if not self.sharded:
            inner.load_state_dict(state)
            return
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        name_of = {id(p): name for name, p in model.named_parameters()}
        order = [name_of[id(p)] for group in inner.param_groups for p in group["params"]]
        groups, start = [], 0
        for group in state["param_groups"]:
            groups.append({**group, "params": order[start : start + len(group["params"])]})
            start += len(group["params"])
        keyed = {"state": {order[int(i)]: values for i, values in state["state"].items()}, "param_groups": groups}
        set_optimizer_state_dict(model, inner, keyed, options=StateDictOptions(full_state_dict=True))


def _without_wrappers(name: str) -> str:
    """A parameter or buffer name as the plain model has it: FSDP1 (and DDP, activation
    checkpointing) put their wrapper modules into the names; FSDP2 wraps in place and does not."""
    for wrapper in ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod."):
        name = name.replace(wrapper, "")
    return name.removeprefix("module.")


def meta_template(model: nn.Module) -> nn.Module:
    """A weightless copy of `model` (on the meta device) taken before it is sharded: what
    `unsharded_copy` fills once training is done. FSDP shards modules in place and cannot be
    deep-copied afterwards."""
    template = copy.deepcopy(model)
    return template.to("meta")


def unsharded_copy(template: nn.Module, model: nn.Module, device) -> nn.Module:
    """A plain module with the trained weights of the sharded `model` (every process gets one):
    what evaluation, prediction and `save` use after training, exactly as after a DDP run."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    plain = template.to_empty(device=device)
    # non-persistent buffers (BERT's position ids) are not in a state dict; FSDP leaves buffers whole
    buffers = dict(plain.named_buffers())
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            name = _without_wrappers(name)
            if name in buffers:
                buffers[name].copy_(buffer)
    missing = sorted(set(buffers) - {_without_wrappers(n) for n, _ in model.named_buffers()} - set(full))
    if missing:  # to_empty left them uninitialised: better no model than a silently wrong one
        raise RuntimeError(f"internal error: buffers not found in the sharded model: {missing[:3]}")
    plain.load_state_dict({name: value.detach().to(device) for name, value in full.items()})
    return plain
