"""The run configuration: every shipped recipe loads, errors name key, file and fix, round trips are exact."""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nlp_transfer.config.run import (
    VERSION_KEY,
    RunConfig,
    defaults_yaml,
    dump_config,
    load_config,
    resolve,
    with_overrides,
)
from nlp_transfer.errors import ConfigError

ROOT = Path(__file__).parent.parent
RECIPES = sorted([*ROOT.glob("configs/**/*.yaml"), *ROOT.glob("nlp_transfer/demos/recipes/*.yaml")])


def test_recipes_are_shipped():
    names = {p.relative_to(ROOT).as_posix() for p in RECIPES}
    for strategy in ("feature-extraction", "partial", "full", "lora"):
        for model in ("bert-base", "roberta-base"):
            assert f"configs/glue-sst2/{model}-{strategy}.yaml" in names
        assert f"configs/offline/minilm-intents-{strategy}.yaml" in names
    assert "configs/tests/tiny.yaml" in names and "nlp_transfer/demos/recipes/demo.yaml" in names


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_shipped_recipe_validates_and_round_trips(recipe, tmp_path):
    config = resolve(load_config(recipe))
    assert config.train.epochs >= 1 and config.train.learning_rate > 0
    dumped = tmp_path / "config.yaml"
    dumped.write_text(dump_config(config))
    assert load_config(dumped) == config


def test_glue_recipes_name_the_strategy_they_are_called_after():
    for recipe in ROOT.glob("configs/glue-sst2/*.yaml"):
        config = load_config(recipe)
        assert config.strategy.name.replace("_", "-") in recipe.stem
        assert config.data.dataset == "nyu-mll/glue" and config.data.dataset_config == "sst2"


def test_dump_is_stamped_with_the_package_version():
    from nlp_transfer import __version__

    assert yaml.safe_load(dump_config(RunConfig()))[VERSION_KEY] == __version__


def test_overrides_are_typed_yaml_values():
    config = load_config(None, ["train.epochs=3", "strategy.name=lora", "strategy.lora.r=16",
                                "model.labels=[neg, pos]", "train.learning_rate=1e-3", "data.test=null"])
    assert config.train.epochs == 3 and config.strategy.name == "lora" and config.strategy.lora.r == 16
    assert config.model.labels == ["neg", "pos"] and config.train.learning_rate == 1e-3
    assert config.strategy.options()["r"] == 16


def test_overrides_apply_on_top_of_a_file(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train:\n  epochs: 5\n  batch_size: 8\n")
    config = load_config(recipe, ["train.epochs=2"])
    assert (config.train.epochs, config.train.batch_size) == (2, 8)
    assert with_overrides(config, ["train.batch_size=4"]).train.batch_size == 4


def test_float_written_without_a_dot_is_read_as_a_number(tmp_path):
    # PyYAML reads 1e-3 as a string; a learning rate written that way must still work.
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train:\n  learning_rate: 1e-3\n  head_learning_rate: 5e-4\n")
    config = load_config(recipe)
    assert config.train.learning_rate == 1e-3 and config.train.head_learning_rate == 5e-4


def test_misspelt_key_in_a_file_names_path_file_and_closest_key(tmp_path):
    recipe = tmp_path / "my recipe.yaml"
    recipe.write_text("train:\n  epochs: 3\n  lerning_rate: 0.001\n")
    with pytest.raises(ConfigError) as error:
        load_config(recipe)
    message = str(error.value)
    assert "'train.lerning_rate'" in message and str(recipe) in message and "did you mean 'train.learning_rate'" in message


def test_misspelt_section_and_nested_key(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'train'"):
        load_config(None, ["trian.epochs=3"])
    with pytest.raises(ConfigError, match="did you mean 'strategy.lora.r'"):
        load_config(None, ["strategy.lora.rr=3"])
    recipe = tmp_path / "r.yaml"
    recipe.write_text("strategy:\n  lora:\n    lora_alpa: 8\n")
    with pytest.raises(ConfigError, match="'strategy.lora.lora_alpa' in .*r.yaml: did you mean 'strategy.lora.lora_alpha'"):
        load_config(recipe)


@pytest.mark.parametrize("override, expected", [
    ("train.epochs=three", "train.epochs must be an int or null, got 'three'"),
    ("train.batch_size=1.5", "train.batch_size must be an int, got 1.5"),
    ("model.trust_remote_code=maybe", "model.trust_remote_code must be a bool"),
    ("strategy.name=lorra", "did you mean 'lora'"),
    ("model.pooling=maen", "did you mean 'mean'"),
    ("eval.splits=[dev]", "eval.splits must be a list of one of 'validation', 'test'"),
    ("strategy.lora.r=0", "strategy.lora.r must be at least 1, got 0"),
    ("train.warmup_ratio=1.5", "train.warmup_ratio must be in [0, 1)"),
])
def test_wrong_types_and_values_name_what_was_expected(override, expected):
    with pytest.raises(ConfigError) as error:
        load_config(None, [override])
    assert expected in str(error.value)


def test_wrong_type_in_a_file_names_the_file(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("data:\n  max_length: long\n")
    with pytest.raises(ConfigError, match=r"data.max_length must be an int, got 'long' \(str\). \(in .*r.yaml\)"):
        load_config(recipe)


@pytest.mark.parametrize("text, expected", [
    ("- a\n- b\n", "must hold a mapping of sections"),
    ("train: 3\n", "train in .* must be a mapping"),
    ("train:\n  epochs: [3\n", "not valid YAML"),
])
def test_malformed_files(tmp_path, text, expected):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(text)
    with pytest.raises(ConfigError, match=expected):
        load_config(recipe)


def test_missing_file_and_malformed_override():
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("no/such/recipe.yaml")
    with pytest.raises(ConfigError, match="not key=value"):
        load_config(None, ["train.epochs"])
    with pytest.raises(ConfigError, match="train is a section"):
        load_config(None, ["train=3"])


def test_resolve_fills_strategy_defaults_run_name_and_folder_without_touching_the_input():
    config = load_config(None, ["strategy.name=full"])
    resolved = resolve(config)
    assert config.train.epochs is None and config.output.dir is None  # validation and resolving never mutate
    assert resolved.train.epochs == 3 and resolved.train.learning_rate == 5e-5
    assert resolved.run.name == "all-MiniLM-L6-v2-full" and resolved.output.dir == "runs/all-MiniLM-L6-v2-full"
    explicit = resolve(load_config(None, ["strategy.name=full", "train.epochs=7", "train.learning_rate=1e-5"]))
    assert (explicit.train.epochs, explicit.train.learning_rate) == (7, 1e-5)


def test_defaults_listing_has_every_setting_with_its_help(tmp_path):
    text = defaults_yaml()
    defaults = RunConfig()
    for section in dataclasses.fields(RunConfig):
        assert f"\n{section.name}:" in text
        for leaf in _leaves(getattr(defaults, section.name)):
            line = next((l for l in text.splitlines() if l.strip().startswith(f"{leaf}:")), None)
            assert line is not None and len(line.split("#", 1)[1].strip()) > 5, f"{section.name}.{leaf} has no help"
    listing = tmp_path / "defaults.yaml"
    listing.write_text(text)
    assert load_config(listing) == defaults  # the listing is itself a valid recipe of the defaults


def _leaves(section) -> list[str]:
    names = []
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        names += _leaves(value) if dataclasses.is_dataclass(value) else [f.name]
    return names


@pytest.mark.parametrize("modality", ["text", "vision"])
def test_every_python_keyword_is_one_config_field_with_its_default_and_help(modality):
    # from_pretrained declares no setting of its own: each keyword is a field of a config section
    # (same default, same help), so YAML, overrides, --help and Python cannot disagree.
    from nlp_transfer.classifiers.image import ImageClassifier
    from nlp_transfer.classifiers.text import TextClassifier
    from nlp_transfer.config.keywords import model_keywords, model_settings
    from nlp_transfer.config.run import ModelSection
    from nlp_transfer.strategies import STRATEGIES

    cls = TextClassifier if modality == "text" else ImageClassifier
    signature = inspect.signature(cls.from_pretrained)
    assert [p.name for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD] == ["name_or_path", "model",
                                                                                              "strategy"]
    keywords = model_keywords(modality)
    for keyword, (section, name) in keywords.items():
        assert dataclasses.is_dataclass(section) and name in {f.name for f in dataclasses.fields(section)}
        assert section.__dataclass_fields__[name].metadata["help"]
    model_fields = {f.name for f in dataclasses.fields(ModelSection)
                    if f.metadata.get("modality") in (None, modality)} - {"name_or_path", "type"}
    assert {k for k, (section, _) in keywords.items() if section is ModelSection} == model_fields
    # no keyword given: every setting is its field's default (one default, resolved in one place)
    chosen = model_settings(modality, "resnet18" if modality == "vision" else "some/model", {})
    for f in dataclasses.fields(ModelSection):
        if f.name not in ("name_or_path", "type"):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            assert getattr(chosen.model, f.name) == default, f.name
    assert chosen.strategy.name == "feature_extraction" and chosen.given == frozenset()
    # each strategy option is a keyword of exactly its strategy's options dataclass
    for strategy, spec in STRATEGIES.items():
        for option in dataclasses.fields(spec.options):
            value = option.default if option.default is not dataclasses.MISSING else option.default_factory()
            picked = model_settings(modality, "resnet18", {"strategy": strategy, option.name: value})
            assert getattr(getattr(picked.strategy, strategy), option.name) == value


def test_python_keywords_are_checked_like_yaml_keys():
    from nlp_transfer.config.keywords import fit_settings, model_settings
    from nlp_transfer.config.settings import DataConfig
    from nlp_transfer.strategies import LoraOptions

    with pytest.raises(ConfigError, match="did you mean 'unfreeze_last'"):
        model_settings("text", "m", {"strategy": "partial", "unfreze_last": 1})
    with pytest.raises(ConfigError, match="option of strategy lora"):
        model_settings("text", "m", {"r": 4})  # LoRA's rank without LoRA
    with pytest.raises(ConfigError, match="image_size"):
        model_settings("text", "m", {"image_size": 64})  # a vision setting on a text model
    assert model_settings("vision", "resnet18", {}, strategy=LoraOptions(r=4)).strategy.lora.r == 4
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        fit_settings({"epocs": 3}, training=None, data=DataConfig())
    training, data = fit_settings({"epochs": 2, "max_length": 32}, training=None, data=DataConfig(text_column="t"))
    assert (training.epochs, data.max_length, data.text_column) == (2, 32, "t")


def test_loading_a_config_does_not_import_torch():
    code = ("import sys; from nlp_transfer.config.run import load_config, resolve; "
            "resolve(load_config('configs/offline/minilm-intents-lora.yaml', ['train.epochs=2'])); "
            "from nlp_transfer import cli; cli._parser(); "
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("statement", ["import nlp_transfer.strategies", "from nlp_transfer import STRATEGIES",
                                       "import nlp_transfer.config.run", "from nlp_transfer.config import RunConfig"])
def test_any_module_imports_first(statement):
    """The registry and the config tree read each other: no import order may be circular."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", statement], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
