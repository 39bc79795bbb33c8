"""Settings: the typed dataclass tree, YAML recipes and dotted overrides. No torch import here.

| module | holds |
|---|---|
| `settings` | the sections a classifier uses (`TrainingConfig`, `DataConfig`, model and strategy options), `build` and the checks |
| `run` | the run tree (`RunConfig`: model, strategy, data, train, eval, output, run, rank), YAML in and out, overrides |
| `rank` | `RankConfig`, the settings of `nlp-transfer rank` / `rank_backbones` (the `rank:` section) |
"""

from __future__ import annotations

from nlp_transfer.config.rank import RankConfig
from nlp_transfer.config.run import *  # noqa: F401,F403
from nlp_transfer.config.run import __all__ as _run_names
from nlp_transfer.config.settings import *  # noqa: F401,F403
from nlp_transfer.config.settings import __all__ as _settings_names

__all__ = [*_settings_names, *_run_names, "RankConfig"]
