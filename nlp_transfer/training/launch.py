"""What a launch actually ran: the distributed type, processes, machines, precision and FSDP settings
the accelerator used, and what the launcher asked for when that differs.

accelerate turns some requests into something else without failing: ``--use_fsdp`` (or an
``accelerate config`` with ``distributed_type: FSDP``) on a machine without GPUs trains plain DDP
(accelerate 1.16 enables FSDP for accelerator devices only). A run's banner, ``environment.json``,
``metrics.json`` and card say what ran, and a warning says when it is not what was asked for.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["describe_launch", "launch_warnings"]

# what `accelerate launch` sets for each request (an `accelerate config` file becomes the same variables)
_REQUESTS = {"FSDP": "ACCELERATE_USE_FSDP", "DEEPSPEED": "ACCELERATE_USE_DEEPSPEED"}


def describe_launch(accelerator) -> dict[str, Any]:
    """The launch as it ran, as plain JSON values."""
    state = accelerator.state
    report: dict[str, Any] = {
        "distributed_type": str(accelerator.distributed_type.value if hasattr(accelerator.distributed_type, "value")
                                else accelerator.distributed_type),
        "num_processes": accelerator.num_processes,
        "num_machines": _machines(accelerator.num_processes),
        "mixed_precision": accelerator.mixed_precision,
        "device": str(accelerator.device),
        "backend": getattr(state, "backend", None),
        "requested": requested_engines(),
    }
    plugin = getattr(state, "fsdp_plugin", None)
    if report["distributed_type"] == "FSDP" and plugin is not None:
        report["fsdp"] = _fsdp_settings(plugin)
    return report


def requested_engines() -> list[str]:
    """Sharding engines the launcher asked for (FSDP, DEEPSPEED), from accelerate's environment."""
    return [name for name, variable in _REQUESTS.items() if os.environ.get(variable, "").lower() in ("true", "1")]


def launch_warnings(accelerator) -> list[str]:
    """A sentence per request the launch did not honour, with why and what to do."""
    ran = describe_launch(accelerator)["distributed_type"]
    found = []
    for engine in requested_engines():
        if ran == engine:
            continue
        why = ("accelerate enables it on GPUs (or other accelerators) only, and this machine has none"
               if engine == "FSDP" and accelerator.device.type == "cpu" else "accelerate did not enable it")
        found.append(f"{engine} was requested (accelerate launch / accelerate config) but this run trains as {ran} with "
                     f"{accelerator.num_processes} process(es): {why}. Every process holds the whole model. Launch on "
                     "GPUs for sharding, or drop the request to silence this warning.")
    return found


def _machines(processes: int) -> int:
    """Nodes in the launch: torchrun (and accelerate, which runs it) set both sizes."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", processes) or processes)
    return max(1, processes // max(local, 1))


def _fsdp_settings(plugin) -> dict[str, Any]:
    keys = ("fsdp_version", "sharding_strategy", "reshard_after_forward", "cpu_offload", "state_dict_type",
            "activation_checkpointing", "use_orig_params", "transformer_cls_names_to_wrap", "min_num_params")
    settings = {key: _plain(getattr(plugin, key, None)) for key in keys}
    wrap = getattr(plugin, "auto_wrap_policy", None)
    settings["auto_wrap_policy"] = getattr(wrap, "__name__", None) or getattr(getattr(wrap, "func", None), "__name__", None) \
        or (str(wrap) if wrap is not None else None)
    return settings


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    return getattr(value, "name", None) or str(value)
