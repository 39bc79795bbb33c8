"""Settings: the typed dataclass tree, YAML recipes and dotted overrides. No torch import here.

| module | holds |
|---|---|
| `settings` | the sections a classifier uses (`TrainingConfig`, `DataConfig`, model and strategy options), `build` and the checks |
| `run` | the run tree (`RunConfig`: model, strategy, data, train, eval, output, run, rank), YAML in and out, overrides |
| `rank` | `RankConfig`, the settings of `nlp-transfer rank` / `rank_backbones` (the `rank:` section) |
"""

from __future__ import annotations

import importlib
from typing import Any

from nlp_transfer.config.settings import *  # noqa: F401,F403
from nlp_transfer.config.settings import __all__ as _settings_names

# The run tree is made from the strategy registry, which itself reads `settings`: importing `run` here
# would make `import nlp_transfer.strategies` (before anything else) circular, so its names load on use.
_LAZY = {"run": ("RunConfig", "ModelSection", "StrategySection", "DataSection", "EvalSection", "OutputSection",
                 "RunSection", "load_config", "with_overrides", "dump_config", "parse_overrides", "resolve",
                 "defaults_yaml", "VERSION_KEY"),
         "rank": ("RankConfig",)}

__all__ = [*_settings_names, *(name for names in _LAZY.values() for name in names)]


def __getattr__(name: str) -> Any:
    for module, names in _LAZY.items():
        if name in names:
            return getattr(importlib.import_module(f"{__name__}.{module}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
