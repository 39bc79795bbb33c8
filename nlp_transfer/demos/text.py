"""The offline demo: does a pretrained encoder learn from 200 examples where a random one cannot?

`nlp-transfer demo` compares every strategy and the from-scratch control on the bundled MiniLM and
the bundled support_intents data, keeps the best model, and shows it on a few new sentences.
"""

from __future__ import annotations

from pathlib import Path

from nlp_transfer.config.run import RunConfig

__all__ = ["DEMO_CONFIG", "DEMO_SENTENCES", "run_demo"]

DEMO_CONFIG = Path(__file__).parent / "recipes" / "demo.yaml"

# New sentences, in none of the bundled splits.
DEMO_SENTENCES = (
    "the tracking page hasn't changed since monday",
    "why did you take money from my card twice??",
    "I can't sign in, it keeps saying my code is wrong",
    "the earbuds disconnect every few minutes",
    "does the Nimbus tablet come in a bigger size?",
)


def run_demo(config: RunConfig) -> str:
    """Run the comparison; return the report to show (table, best model, predictions)."""
    from nlp_transfer.api import predict
    from nlp_transfer.selection.comparison import compare
    from nlp_transfer.storage.run_folder import find_model_folder

    comparison = compare(config)
    best_folder = find_model_folder(comparison.path)
    lines = [comparison.table(), "", f"Best model ({comparison.best}) saved in {best_folder}; on new sentences:"]
    for row in predict(best_folder, list(DEMO_SENTENCES)):
        confidence = max(row["probabilities"].values())
        lines.append(f"  {row['prediction']:<13} {confidence:5.2f}  {row['text']}")
    lines += ["", f"Use it:  nlp-transfer predict {comparison.path} --text \"your sentence\""]
    return "\n".join(lines)
