"""Train a run from a YAML recipe; the same file under python, accelerate launch or torchrun.

    python scripts/train.py configs/offline/minilm-intents-lora.yaml train.epochs=5
    accelerate launch scripts/train.py configs/glue-sst2/bert-base-full.yaml           # one GPU
    accelerate launch --multi_gpu --num_processes 2 scripts/train.py CONFIG            # DDP (gloo on CPU)
    accelerate config && accelerate launch scripts/train.py CONFIG                     # FSDP / DeepSpeed

It is `nlp-transfer train` and nothing more: the recipe and the overrides decide everything.
"""

import sys

from nlp_transfer.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
