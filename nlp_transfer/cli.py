"""`nlp-transfer`: the command line, a thin layer over the Python API (`api.py`, `compare.py`).

    nlp-transfer demo
    nlp-transfer train configs/offline/minilm-intents-lora.yaml train.epochs=5
    nlp-transfer evaluate runs/minilm-intents-lora --data support_intents:test
    nlp-transfer predict runs/minilm-intents-lora --text "my parcel never arrived"
    nlp-transfer compare configs/offline/minilm-intents-full.yaml --strategies feature_extraction,lora,scratch
    nlp-transfer rank configs/offline/minilm-intents-full.yaml --candidates sentence-transformers/all-MiniLM-L6-v2,sentence-transformers/all-MiniLM-L6-v2@layers=2
    nlp-transfer show-config configs/offline/minilm-intents-lora.yaml strategy.lora.r=16
    nlp-transfer push runs/minilm-intents-lora --repo-id me/support-intents
    nlp-transfer export runs/minilm-intents-lora --quantize int8 --output exports/intents
    nlp-transfer serve runs/minilm-intents-lora --port 8000
    accelerate launch --multi_gpu --num_processes 2 scripts/train.py configs/offline/minilm-intents-lora.yaml

Only argparse, YAML and the config tree load before a command runs, so ``--help`` and config
errors are instant. Errors of nlp_transfer are printed as one message, exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from nlp_transfer.errors import DataError, NLPTransferError

__all__ = ["main"]

logger = logging.getLogger(__name__)

_EXAMPLES = {
    "train": """examples:
  nlp-transfer train configs/offline/minilm-intents-lora.yaml
  nlp-transfer train my.yaml train.epochs=3 strategy.name=lora data.train=train.csv output.dir=runs/try1
  nlp-transfer train my.yaml --resume        (after a crash: continues from runs/<name>.checkpoints)
  accelerate launch --multi_gpu --num_processes 2 scripts/train.py my.yaml   (the same, in two processes)""",
    "evaluate": """examples:
  nlp-transfer evaluate runs/minilm-intents-lora --data dev.jsonl
  nlp-transfer evaluate runs/demo --data support_intents:test --output scores.json""",
    "predict": """examples:
  nlp-transfer predict runs/demo --text "where is my parcel" --text "I was charged twice"
  nlp-transfer predict runs/minilm-intents-lora --data new.csv --output predictions.jsonl
  nlp-transfer predict runs/minilm-intents-lora --data big.jsonl --output predictions.parquet --chunk-size 4096""",
    "show-config": """examples:
  nlp-transfer show-config --defaults
  nlp-transfer show-config configs/offline/minilm-intents-lora.yaml train.epochs=5""",
    "compare": """examples:
  nlp-transfer compare configs/offline/minilm-intents-full.yaml
  nlp-transfer compare my.yaml --strategies feature_extraction,lora,scratch train.epochs=5
  nlp-transfer compare my.yaml --strategies feature_extraction,lora --seeds 3""",
    "rank": """examples:
  nlp-transfer rank my.yaml --candidates bert-base-uncased,roberta-base@mean,distilroberta-base
  nlp-transfer rank my.yaml --candidates sentence-transformers/all-MiniLM-L6-v2,sentence-transformers/all-MiniLM-L6-v2@cls,sentence-transformers/all-MiniLM-L6-v2@layers=2,sentence-transformers/all-MiniLM-L6-v2@random
  nlp-transfer rank my.yaml --candidates bert-base-uncased@cls,bert-base-uncased@mean --target feature_extraction
  nlp-transfer rank my.yaml rank.folds=3 rank.twin=false      (the same settings as the options; or a rank: section)
a candidate is NAME[@option...]; options: cls or mean (pooling), layers=N (only the first N layers),
random (the same architecture with random weights: the control). Higher LogME is better. The pooling
counts only with --target feature_extraction: fine-tuning learns it. Every option is the setting
rank.<name> (YAML rank: section, or rank.key=value); an option given wins over both.""",
    "push": """examples:
  nlp-transfer push runs/minilm-intents-lora --repo-id me/support-intents-lora
  nlp-transfer push runs/demo --repo-id me/support-intents --private
  nlp-transfer push runs/minilm-intents-lora --repo-id me/support-intents --merge-lora
token: HF_TOKEN or the saved login (`hf auth login`); it is never printed or written.""",
    "export": """examples:
  nlp-transfer export runs/minilm-intents-lora --output exports/intents          (parity-checked fp32 ONNX)
  nlp-transfer export runs/minilm-intents-lora --quantize int8 --output exports/intents-int8
  nlp-transfer export my-model --quantize int8 --max-drop 0.5 --data dev.jsonl --output exports/mine
a run folder's own validation split checks the export unless --data is given; int8 needs one of them.""",
    "serve": """examples:
  nlp-transfer serve runs/minilm-intents-lora
  nlp-transfer serve runs/minilm-intents-lora --host 0.0.0.0 --port 9000 --max-batch-size 64 --no-access-log
  curl -s localhost:8000/predict -H 'content-type: application/json' -d '{"texts": ["where is my parcel"]}'
endpoints: POST /predict {"text": ...} | {"texts": [...]} (pairs: "text_pair", or [[a, b], ...]),
GET /health, GET /metadata, GET /docs. Ctrl+C or SIGTERM stops it after in-flight requests finish.""",
    "demo": """examples:
  nlp-transfer demo
  nlp-transfer demo train.epochs=2 --output runs/demo-quick
  nlp-transfer demo --vision --data ../shared/data/hymenoptera   # ImageNet EfficientNet-Lite0 on ants vs bees
  nlp-transfer demo --vision digits   # digits 0-4 -> 5-9 transfer with a ResNet (scikit-learn's digits, no extra)
  nlp-transfer demo --ner             # named-entity tagging on the bundled support_entities sentences""",
}


def _passive_openmp_wait() -> None:
    """Let PyTorch's idle OpenMP threads sleep instead of spin, unless the user chose otherwise.

    Spinning threads wait on each other when another process holds a core: one training step of
    MiniLM (batch 32) took 13.8 s with 2 spinning threads against one busy core, 2.8 s with
    OMP_WAIT_POLICY=PASSIVE, 2.3 s with one thread (bench note in README, "Busy machines"). OpenMP
    reads the variable once, when torch loads, so it is set here, before any torch import; the
    library itself never changes the environment.
    """
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv: Sequence[str] | None = None) -> int:
    _passive_openmp_wait()
    parser = _parser()
    # Overrides may come after options too (`compare my.yaml --strategies lora train.epochs=3`),
    # which argparse alone leaves unparsed.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "overrides") or not all("=" in item and not item.startswith("-") for item in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    try:
        return args.command(args)
    except NLPTransferError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nlp-transfer", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Transfer learning for text: train, compare and use strategies (feature_extraction, "
                    "partial, full, lora, gradual) on a pretrained encoder.",
        epilog="Run `nlp-transfer COMMAND --help` for a command's options and examples.")
    from nlp_transfer import __version__

    parser.add_argument("--version", action="version", version=f"nlp_transfer {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    def command(name: str, help: str, handler) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help, epilog=_EXAMPLES[name],
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.set_defaults(command=handler)
        return sub

    overrides_help = "settings as section.key=value (YAML values), e.g. train.epochs=3 strategy.name=lora"

    sub = command("train", "Train the run a YAML config describes and write its run folder.", _train)
    sub.add_argument("config", help="YAML recipe (see configs/)")
    sub.add_argument("overrides", nargs="*", help=overrides_help)
    sub.add_argument("--overwrite", action="store_true", help="replace an existing run folder once the new run finishes")
    sub.add_argument("--resume", action="store_true",
                     help="continue a killed run from its newest checkpoint (<output.dir>.checkpoints)")

    sub = command("evaluate", "Score a trained run (or saved model) on labelled data.", _evaluate)
    sub.add_argument("model", metavar="RUN_OR_MODEL", help="run folder, compare folder or saved model folder")
    sub.add_argument("--data", required=True, help="labelled file (.csv/.tsv/.json/.jsonl/.parquet) or support_intents:test")
    sub.add_argument("--output", help="JSON file for the metrics (default: eval-<data>.json in the run folder)")
    _column_options(sub, labels=True)

    sub = command("predict", "Predict labels and probabilities with a trained run (or saved model).", _predict)
    sub.add_argument("model", metavar="RUN_OR_MODEL", help="run folder, compare folder or saved model folder")
    source = sub.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="file with a text (or image path) column, or a folder of images")
    source.add_argument("--text", action="append", help="a text to classify (repeatable)")
    source.add_argument("--image", action="append", help="an image file to classify (repeatable)")
    sub.add_argument("--output", help="file to write, by its suffix: .jsonl, .csv (a prob_<label> column per label) or "
                                      ".parquet; it appears only once complete (default: print JSONL)")
    from nlp_transfer.data.streams import DEFAULT_CHUNK_SIZE

    sub.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE,
                     help="rows read, tokenised and written at a time; memory follows it, not the file's size "
                          f"(default: {DEFAULT_CHUNK_SIZE})")
    _column_options(sub, labels=False)

    sub = command("show-config", "Print a resolved config as YAML, or every setting with its help.", _show_config)
    sub.add_argument("config", nargs="?", help="YAML recipe (omit for the defaults)")
    sub.add_argument("overrides", nargs="*", help=overrides_help)
    sub.add_argument("--defaults", action="store_true", help="every setting with its default and help text")

    sub = command("compare", "Train several strategies and a from-scratch control on the same data; print a table.",
                  _compare)
    sub.add_argument("config", help="YAML recipe: model, data and budget shared by every strategy")
    sub.add_argument("overrides", nargs="*", help=overrides_help)
    sub.add_argument("--strategies", help="comma-separated: feature_extraction, partial, lora, full, contrastive, gradual, "
                                           "scratch (default: all but gradual that can learn the task; contrastive: "
                                           "single-label, single texts)")
    sub.add_argument("--output", help="folder for compare.json and the runs (default: output.dir or runs/<run.name>)")
    sub.add_argument("--overwrite", action="store_true", help="replace an existing folder once the comparison finishes")
    sub.add_argument("--seeds", type=int, help="runs per strategy, seeds train.seed, train.seed+1, ...: the table shows "
                                               "mean ± std and calls overlapping strategies a tie (default: train.seeds)")

    sub = command("rank", "Rank candidate pretrained models on the training data before fine-tuning (LogME, linear probe).",
                  _rank)
    sub.add_argument("config", help="YAML recipe: the data (data.train, columns, max_length) and seed")
    sub.add_argument("overrides", nargs="*", help=overrides_help)
    from nlp_transfer.config.rank import RankConfig

    _section_options(sub, "rank", RankConfig)  # --candidates, --max-samples, --folds, --twin/--no-twin, --target, ...
    sub.add_argument("--output", help="folder for rank.json, rank.md and rank.png (default: runs/<config name>-rank)")

    sub = command("push", "Push a trained run (or saved model) with its model card to the Hugging Face Hub.", _push)
    sub.add_argument("model", metavar="RUN_OR_MODEL", help="run folder, compare folder or saved model folder")
    sub.add_argument("--repo-id", required=True, help="Hub repository, user/name or org/name (created if missing)")
    sub.add_argument("--private", action="store_true", help="create the repository as private")
    sub.add_argument("--merge-lora", action="store_true", help="push LoRA merged into the encoder weights (no peft needed)")
    sub.add_argument("--commit-message", help="commit message on the Hub")

    sub = command("export", "Export a trained run (or saved model) to ONNX for onnxruntime, checked against PyTorch; "
                            "optionally int8.", _export)
    sub.add_argument("model", metavar="RUN_OR_MODEL", help="run folder or saved model folder")
    sub.add_argument("--output", required=True, help="folder to write (new, empty, or an earlier export)")
    sub.add_argument("--format", default="onnx", choices=("onnx",), help="export format (default: onnx)")
    sub.add_argument("--quantize", choices=("int8",), help="also write model_int8.onnx (dynamic int8), if it passes the gate")
    sub.add_argument("--max-drop", type=float, default=1.0,
                     help="int8 may lose at most this many points of the validation metric (default: 1.0)")
    sub.add_argument("--data", help="validation file for the checks (default: the run's validation split)")
    sub.add_argument("--allow-mismatch", action="store_true", help="write the export even if it fails the parity check")

    sub = command("serve", "Serve a trained run, saved model or ONNX export over HTTP, batching concurrent requests.",
                  _serve)
    sub.add_argument("model", metavar="RUN_OR_EXPORT", help="run folder, saved model folder or ONNX export folder")
    from nlp_transfer.serving.settings import ServerSettings

    _section_options(sub, "serve", ServerSettings)  # --host, --port, --max-batch-size, --max-wait-ms, ...

    sub = command("demo", "Offline demo: compare the strategies on the bundled MiniLM and the bundled intent data "
                          "(--ner: entity tagging; --vision: image transfer).", _demo)
    sub.add_argument("overrides", nargs="*", help=overrides_help)
    sub.add_argument("--output", help="folder for the demo runs (default: runs/demo, runs/ner-demo or runs/demo-vision, "
                                      "replaced on rerun)")
    kind = sub.add_mutually_exclusive_group()
    kind.add_argument("--vision", nargs="?", const="auto", choices=("auto", "ants-bees", "digits"),
                      help="the vision demo. ants-bees: ImageNet EfficientNet-Lite0 on the ants vs bees photos (needs "
                           "the vision-demo extra and the photos, see --data); digits: pre-train a ResNet on digits "
                           "0-4, transfer it to 5-9 from a few examples (needs nothing more). Default: ants-bees when "
                           "it can run, else digits")
    kind.add_argument("--ner", action="store_true",
                      help="the tagging demo: every strategy finds product, person, place and date names in 300 sentences")
    sub.add_argument("--shots", type=int, default=3, help="digits demo: training images per target class (default 3)")
    sub.add_argument("--data", help="ants-bees demo: the hymenoptera folder (train/ and val/); default: "
                                    "$NLP_TRANSFER_HYMENOPTERA or ../shared/data/hymenoptera")
    return parser


def _section_options(sub: argparse.ArgumentParser, section: str, cls: type) -> None:
    """One option per field of the config section `cls`: its name, type, choices and help, and the
    default shown in the help. An option left out sets nothing (``dest`` absent), so the YAML's
    ``section:`` and ``section.key=value`` overrides keep their say; `_given` reads the options given.
    """
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = _flag_kind(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        shown = "" if default is None else f" (default: {_yaml_word(default)})"
        options: dict[str, Any] = {"dest": f"{section}.{f.name}", "default": argparse.SUPPRESS,
                                   "help": (f.metadata.get("help", "") + shown).replace("%", "%%")}
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif kind is list:
            options.update(type=_comma_list, metavar="A,B,...")
        elif isinstance(kind, tuple):
            options["choices"] = kind
        else:
            options.update(type=kind, metavar=kind.__name__.upper())
        sub.add_argument(f"--{f.name.replace('_', '-')}", **options)


def _flag_kind(annotation: Any) -> Any:
    """bool, list, a tuple of choices (Literal), or the converter of an int/float/str field (None allowed)."""
    optional = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    kind = next(a for a in typing.get_args(annotation) if a is not type(None)) if optional else annotation
    if typing.get_origin(kind) is list:
        return list
    if typing.get_origin(kind) is Literal:
        return typing.get_args(kind)
    return kind


def _comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _yaml_word(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)  # as YAML writes it: true, not True


def _given(args: argparse.Namespace, section: str) -> dict[str, Any]:
    """The options of `section` given on the command line, by field name."""
    return {key.split(".", 1)[1]: value for key, value in vars(args).items() if key.startswith(f"{section}.")}


def _column_options(sub: argparse.ArgumentParser, labels: bool) -> None:
    sub.add_argument("--text-column", help="column with the text (default: the model's)")
    sub.add_argument("--text-pair-column", help="column with the second text of pairs (default: the model's)")
    sub.add_argument("--image-column", help="column with image paths, for vision models (default: the model's)")
    if labels:
        sub.add_argument("--label-column", help="column with the labels (default: the model's)")


def _columns(args: argparse.Namespace) -> dict[str, str]:
    names = ("text_column", "text_pair_column", "image_column", "label_column")
    return {name: getattr(args, name) for name in names if getattr(args, name, None)}


# ----------------------------------------------------------------- commands
def _train(args: argparse.Namespace) -> int:
    from nlp_transfer.config.run import load_config

    config = load_config(args.config, [*args.overrides, *(["output.overwrite=true"] if args.overwrite else [])])
    _logging(config.run.log_level)
    from nlp_transfer.api import train

    result = train(config, resume=args.resume)  # train resolves the defaults, once
    if _is_main():
        print(_metrics_table(result.metrics))
        print("".join(f"! {warning}\n" for warning in result.warnings), end="")  # negative transfer, said plainly
        print(f"run folder: {result.path}")
    del result
    _end_processes()
    return 0


def _quiet_loading() -> None:
    # Loading a saved model is quick; its per-tensor progress bar is noise here (downloads keep theirs elsewhere).
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    _logging("warning")


def _evaluate(args: argparse.Namespace) -> int:
    _quiet_loading()
    from nlp_transfer.api import evaluate
    from nlp_transfer.storage.run_folder import write_json

    metrics = evaluate(args.model, args.data, **_columns(args))
    output = Path(args.output) if args.output else _default_eval_path(Path(args.model), args.data)
    write_json(output, metrics)
    print(_metrics_table({Path(args.data).name: metrics}))
    print(f"metrics written to {output}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    _quiet_loading()
    from nlp_transfer.api import iter_predictions, load_model, write_predictions
    from nlp_transfer.data.prediction_files import prediction_format

    if args.output:
        prediction_format(Path(args.output))  # an unknown file type fails before the model loads
    clf = load_model(args.model)
    source = args.data or args.text or args.image
    if args.output:  # written chunk by chunk into a staging file: the output appears only when complete
        count = write_predictions(clf, source, args.output, chunk_size=args.chunk_size, progress=True, **_columns(args))
        print(f"{count} predictions written to {args.output}")
        return 0
    chunks = iter_predictions(clf, source, chunk_size=args.chunk_size, **_columns(args))
    if args.text and clf.task.name == "token_classification":
        for rows in chunks:
            print("\n".join(_entities_text(row) for row in rows))
    else:
        for rows in chunks:
            print("\n".join(json.dumps(row, ensure_ascii=False) for row in rows))
    return 0


def _entities_text(row: dict[str, Any]) -> str:
    """A text and its entities, one per line: the span, its type, its score."""
    found = [f"  {e['word']:<30} {e['entity_group']:<10} {e['score']:.2f}  [{e['start']}:{e['end']}]"
             for e in row["entities"]]
    return "\n".join([row.get("text") or " ".join(row["tokens"]), *(found or ["  (no entities)"])])


def _show_config(args: argparse.Namespace) -> int:
    from nlp_transfer.config.run import defaults_yaml, dump_config, load_config, resolve

    overrides = list(args.overrides)
    config_path = args.config
    if config_path and "=" in config_path and not Path(config_path).is_file():
        overrides.insert(0, config_path)  # `show-config train.epochs=3`: no file, only overrides
        config_path = None
    if args.defaults:
        print(defaults_yaml(), end="")
        return 0
    print(dump_config(resolve(load_config(config_path, overrides))), end="")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from nlp_transfer.config.run import load_config

    config = load_config(args.config, [*args.overrides, *(["output.overwrite=true"] if args.overwrite else [])])
    _logging(config.run.log_level)
    from nlp_transfer.selection.comparison import compare

    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()] if args.strategies else None
    result = compare(config, strategies, output_dir=args.output, seeds=args.seeds)
    if _is_main():
        print(result.table())
        print(f"written to {result.path}/compare.json")
    _end_processes()
    return 0


def _rank(args: argparse.Namespace) -> int:
    from nlp_transfer.config.run import load_config
    from nlp_transfer.config.settings import build

    config = load_config(args.config, args.overrides)
    given = _given(args, "rank")  # the options win over the YAML's rank: section and rank.* overrides
    if given:
        rank = build(type(config.rank), {**dataclasses.asdict(config.rank), **given}, "rank.", "the command-line options")
        config = dataclasses.replace(config, rank=rank)
    _logging(config.run.log_level)
    from nlp_transfer.selection.ranking import rank_from_config

    output = args.output or f"runs/{Path(args.config).stem}-rank"
    ranking = rank_from_config(config, output_dir=output)
    print(ranking.table())
    print(f"written to {ranking.path}/rank.json")
    return 0


def _push(args: argparse.Namespace) -> int:
    _quiet_loading()
    logging.getLogger("nlp_transfer").setLevel(logging.INFO)
    from nlp_transfer.api import push_run

    url = push_run(args.model, args.repo_id, private=args.private, merge_lora=args.merge_lora,
                   commit_message=args.commit_message)
    print(f"pushed to {url}")
    return 0


def _export(args: argparse.Namespace) -> int:
    _quiet_loading()
    from nlp_transfer.data.sources import resolve_data
    from nlp_transfer.export.folder import export_run

    result = export_run(args.model, args.output, quantize=args.quantize, max_drop=args.max_drop,
                        validation=resolve_data(args.data, "--data") if args.data else None,
                        allow_mismatch=args.allow_mismatch)
    parity = result.parity
    print(f"parity: max |difference| {parity.max_abs_diff:.2e} on {parity.examples} examples ({parity.source}), "
          f"tolerance {parity.tolerance:g}")
    if result.gate is not None:
        gate = result.gate
        print(f"int8 gate: {gate.metric} {gate.fp32:.2f} (fp32) -> {gate.int8:.2f} (int8), drop {gate.drop:.2f} "
              f"points, allowed {gate.max_drop:g}")
    print(f"export folder: {result.path} ({', '.join(result.files.values())})")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from nlp_transfer.config.settings import build
    from nlp_transfer.serving.settings import ServerSettings

    settings = build(ServerSettings, _given(args, "serve"), source="the command-line options")
    _quiet_loading()
    logging.getLogger("nlp_transfer").setLevel(settings.log_level.upper())
    from nlp_transfer.serving.server import serve

    serve(args.model, settings)  # returns once stopped (Ctrl+C, SIGTERM)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from nlp_transfer.config.run import load_config

    if args.vision:
        return _vision_demo(args)
    if args.ner:
        from nlp_transfer.demos.ner import NER_DEMO_CONFIG as recipe
        from nlp_transfer.demos.ner import run_ner_demo as run
    else:
        from nlp_transfer.demos.text import DEMO_CONFIG as recipe
        from nlp_transfer.demos.text import run_demo as run
    default_dir = "runs/ner-demo" if args.ner else "runs/demo"
    config = load_config(recipe, [*args.overrides, f"output.dir={args.output or default_dir}"])
    _logging(config.run.log_level)
    report = run(config)
    if _is_main():
        print(report)
    _end_processes()
    return 0


def _vision_demo(args: argparse.Namespace) -> int:
    from nlp_transfer.config.run import load_config
    from nlp_transfer.demos.ants_bees import ANTS_BEES_CONFIG, ants_bees_available, run_ants_bees_demo

    kind = args.vision
    if kind in ("auto", "ants-bees"):
        available, why = ants_bees_available(args.data)
        if not available and kind == "ants-bees":
            raise DataError(f"The ants-bees demo cannot run: {why}.")
        if not available:
            logger.warning("Running the digits demo instead of ants vs bees: %s.", why)
        kind = "ants-bees" if available else "digits"
    if kind == "ants-bees":
        _logging(load_config(ANTS_BEES_CONFIG, args.overrides).run.log_level)  # bad overrides fail here, before any work
        report = run_ants_bees_demo(args.data, args.output or "runs/demo-ants-bees", tuple(args.overrides))
    else:
        from nlp_transfer.demos.vision import TARGET_CONFIG, run_vision_demo

        _logging(load_config(TARGET_CONFIG, args.overrides).run.log_level)
        report = run_vision_demo(args.output or "runs/demo-vision", args.shots, tuple(args.overrides))
    if _is_main():
        print(report)
    return 0


# ----------------------------------------------------------------- output helpers
def _metrics_table(metrics: dict[str, dict]) -> str:
    names = [k for k in next(iter(metrics.values()), {}) if isinstance(next(iter(metrics.values()))[k], float)]
    if not names:
        return "(no metrics: set data.validation or data.test)"
    width = max(len(split) for split in metrics) + 2
    cells = [max(len(name) + 2, 10) for name in names]
    lines = [f"{'':<{width}}" + "".join(f"{name:>{w}}" for name, w in zip(names, cells))]
    for split, scores in metrics.items():
        lines.append(f"{split:<{width}}" + "".join(f"{scores.get(n, float('nan')):>{w}.4f}" for n, w in zip(names, cells)))
    return "\n".join(lines)


def _default_eval_path(model: Path, data: str) -> Path:
    stem = Path(data.replace(":", "-")).stem
    folder = model if (model / "model").is_dir() else Path(".")
    return folder / f"eval-{stem}.json"


def _logging(level: str) -> None:
    import warnings

    # Deprecation notes between transformers and peft are for library authors, not for CLI users.
    warnings.filterwarnings("ignore", category=FutureWarning)
    # Under `accelerate launch` every process would repeat each line; the others log only warnings.
    chosen = getattr(logging, level.upper()) if _is_main() else logging.WARNING
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    logging.getLogger("nlp_transfer").setLevel(chosen)


def _end_processes() -> None:
    if "RANK" in os.environ:  # launched by accelerate/torchrun: leave the process group cleanly
        from nlp_transfer.training.engine import end_distributed

        end_distributed()


def _is_main() -> bool:
    return os.environ.get("RANK", "0") == "0"


if __name__ == "__main__":
    sys.exit(main())
