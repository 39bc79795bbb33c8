"""Run by test_resume.py in a subprocess: train (or resume) a tiny model with checkpoints, write the result.

    python resume_worker.py MODEL_DIR CHECKPOINT_DIR OUTPUT MODE [STRATEGY]

MODE: fresh | resume | slow (sleeps per batch so the test can kill it mid-epoch) |
die-in-save (kills itself with SIGKILL while writing its third checkpoint).
STRATEGY: a text strategy (MODEL_DIR a tiny BERT), or vision-<strategy> (MODEL_DIR a tiny timm ResNet,
trained with the default augmentation, so resuming must also replay the random crops).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from conftest import IMAGE_SIZE, sentiment_rows, square_images  # noqa: E402


def main(model_dir: str, checkpoint_dir: str, output: str, mode: str, strategy: str = "full") -> None:
    import logging

    import torch
    from safetensors.torch import save_file

    logging.basicConfig(level=logging.INFO)

    from nlp_transfer import ImageClassifier, TextClassifier
    from nlp_transfer.training import checkpoints

    torch.set_num_threads(1)
    vision = strategy.startswith("vision-")
    if vision:
        cls = ImageClassifier
        clf = ImageClassifier.from_pretrained(model_dir, strategy=strategy.removeprefix("vision-"), image_size=IMAGE_SIZE,
                                              **({"unfreeze_last": 1} if strategy == "vision-partial" else {}))
        images, labels = square_images(64)
        train, evaluation = (images, labels), square_images(16, seed=1)
    else:
        cls = TextClassifier
        clf = TextClassifier.from_pretrained(model_dir, strategy=strategy, pooling="mean")
        train, evaluation = sentiment_rows(64), sentiment_rows(16, seed=1)
    if mode == "slow":
        make_collator = cls._collator

        def slow_collator(self, accelerator):
            collate = make_collator(self, accelerator)
            return lambda items: (time.sleep(0.15), collate(items))[1]

        cls._collator = slow_collator
    if mode == "die-in-save":
        write_json, saves = checkpoints._write_json, {"n": 0}

        def dying_write(path, value):
            if path.name == "progress.json":
                saves["n"] += 1
                if saves["n"] == 3:  # tensors of the 3rd checkpoint are written, its progress.json is not
                    os.kill(os.getpid(), signal.SIGKILL)
            write_json(path, value)

        checkpoints._write_json = dying_write
    workers = {"num_workers": 2} if vision and not Path(model_dir).exists() else {}  # a named (ImageNet) model
    history = clf.fit(train, evaluation, epochs=3, batch_size=8, learning_rate=3e-3, **workers,
                      load_best_model_at_end=False, checkpoint_dir=checkpoint_dir, save_steps=2,
                      resume=mode == "resume")
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in clf.model.state_dict().items()}, str(out / "weights.safetensors"))
    (out / "history.json").write_text(json.dumps({"epochs": [{k: v for k, v in row.items() if "second" not in k}
                                                            for row in history.epochs],
                                                 "steps": [{k: v for k, v in row.items() if k != "samples_per_second"}
                                                           for row in history.steps]}))


if __name__ == "__main__":
    main(*sys.argv[1:])
