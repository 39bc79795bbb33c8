#!/usr/bin/env bash
# The GPU comparison (bench/gpu_throughput.py): full and LoRA in bf16 at batch 64, feature extraction
# with the cache, and predict throughput, against the HF Trainer and pipeline on a BERT-base-sized
# random model; then accelerate's own FSDP2 path (tests/sharded_worker.py under `accelerate launch
# --use_fsdp`: sharded checkpoints, resume, best restore, save). Meant for the lent GPU machine
# (torch, transformers, accelerate, peft; no network; pytest, datasets and evaluate carried as wheels):
#   run: bash bench/gpu_check.sh        (about 5 minutes on an H100; writes $OUT/gpu.json and the GPU test logs)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false TRANSFORMERS_VERBOSITY=error
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch, transformers, accelerate, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'accelerate', accelerate.__version__, 'peft', peft.__version__)"

# The few-label features on a GPU (issue 17): the contrastive strategy's pair stage and head, temperature
# scaling fitted and folded into the output layer, seeds and k-shot sampling, the reliability tables.
# The tests train on whatever device accelerate finds, so here the GPU; a failure is a device bug.
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_contrastive.py tests/test_calibration.py \
  tests/test_few_shot.py tests/test_reliability.py 2>&1 | tee "${OUT:-/tmp}/pytest_gpu.log" | tail -25 || true
timeout 90 python3 -m pytest -q -p no:cacheprovider tests/test_strategies.py -k contrastive 2>&1 \
  | tee "${OUT:-/tmp}/pytest_gpu_strategies.log" | tail -8 || true

timeout 480 python3 bench/gpu_throughput.py --examples "${EXAMPLES:-8192}"

# FSDP2 as accelerate sets it up on a GPU: every strategy FSDP runs, uninterrupted, then interrupted
# and resumed; the runs must have trained on shards and the resumed weights must equal the others.
fsdp=$(mktemp -d)
python3 -c "import sys; sys.path.insert(0, 'tests'); from pathlib import Path; from conftest import _build_bert; _build_bert(Path('$fsdp/bert'))"
launch="python3 -m accelerate.commands.launch --use_fsdp --fsdp_version 2 --fsdp_auto_wrap_policy TRANSFORMER_BASED_WRAP --fsdp_transformer_layer_cls_to_wrap BertLayer --num_processes 1 --mixed_precision no --dynamo_backend no"
for mode in launched launched-interrupt launched-resume; do
  out="$fsdp/whole"; [ "$mode" = launched ] || out="$fsdp/resumed"
  timeout 300 $launch tests/sharded_worker.py "$fsdp/bert" "$out" "$mode" > "$fsdp/$mode.log" 2>&1 || { tail -20 "$fsdp/$mode.log"; echo "FSDP check: $mode failed"; }
done
python3 - "$fsdp" <<'PY'
import json, sys
from pathlib import Path
from safetensors.torch import load_file
root = Path(sys.argv[1])
for strategy in ("full", "partial", "lora", "feature_extraction"):
    whole, resumed = (json.loads((root / run / strategy / "result.json").read_text()) for run in ("whole", "resumed"))
    same = all((load_file(str(f))[k] == load_file(str(root / "resumed" / strategy / "model" / f.relative_to(root / "whole" / strategy / "model")))[k]).all()
               for f in (root / "whole" / strategy / "model").rglob("*.safetensors") for k in load_file(str(f)))
    print(f"FSDP {strategy}: trained sharded {whole['trained_sharded']}, resume identical {same}, "
          f"accuracy {whole['metrics']['accuracy']:.3f}")
PY
