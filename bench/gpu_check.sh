#!/usr/bin/env bash
# The GPU comparison (bench/gpu_throughput.py): full and LoRA in bf16 at batch 64, feature extraction
# with the cache, and predict throughput, against the HF Trainer and pipeline on a BERT-base-sized
# random model. Meant for the lent GPU machine (torch, transformers, accelerate, peft; no network):
#   run: bash bench/gpu_check.sh        (about 5 minutes on an H100; writes $OUT/gpu.json)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false TRANSFORMERS_VERBOSITY=error
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch, transformers, accelerate, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'accelerate', accelerate.__version__, 'peft', peft.__version__)"
timeout 480 python3 bench/gpu_throughput.py --examples "${EXAMPLES:-8192}"
