"""The offline tagging demo: which strategy finds named entities best from 300 sentences?

`nlp-transfer demo --ner` compares every strategy and the from-scratch control on the bundled
MiniLM and the bundled support_entities data (PRODUCT, PER, LOC, DATE; written for the project,
see its README), chooses on the validation sentences, reports entity-level F1 on the test
sentences, keeps the best model, and tags a few new messages with it.
"""

from __future__ import annotations

from pathlib import Path

from nlp_transfer.config.run import RunConfig

__all__ = ["NER_DEMO_CONFIG", "NER_DEMO_SENTENCES", "run_ner_demo"]

NER_DEMO_CONFIG = Path(__file__).parent / "recipes" / "ner_demo.yaml"

# New messages, in none of the bundled splits, with names and products the data never shows.
NER_DEMO_SENTENCES = (
    "Hi, I ordered a Solstice Pro speaker on 3 February and it still hasn't reached Leeds.",
    "can Priya Natarajan pick up my Ember tablet from the Bristol store on Saturday?",
    "The Halcyon X4 headphones you sent to my flat in Glasgow stopped charging after a week.",
)


def run_ner_demo(config: RunConfig) -> str:
    """Run the comparison; return the report to show (table, per-type F1, best model, entities)."""
    from nlp_transfer.api import predict
    from nlp_transfer.selection.comparison import compare
    from nlp_transfer.storage.run_folder import find_model_folder

    comparison = compare(config)
    best_folder = find_model_folder(comparison.path)
    lines = [comparison.table(), "", f"Best model ({comparison.best}) saved in {best_folder}; on new messages:"]
    for row in predict(best_folder, list(NER_DEMO_SENTENCES)):
        lines.append(f"  {row['text']}")
        lines += [f"      {e['entity_group']:<8} {e['score']:4.2f}  {e['word']}" for e in row["entities"]] or ["      (none)"]
    lines += ["", f"Use it:  nlp-transfer predict {comparison.path} --text \"your message\""]
    return "\n".join(lines)
