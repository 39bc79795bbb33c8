"""Run by test_resume.py under torchrun (2 processes, on one "node" or two): LoRA training with
checkpoints, interrupted or resumed.

    python -m torch.distributed.run --standalone --nproc_per_node 2 ddp_resume_worker.py MODEL CKPT MODE METRICS_OUT

MODE: fresh | kill (every process SIGKILLs itself after the third checkpoint, as `kill -9` of all
workers would) | resume.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import sentiment_rows

from nlp_transfer import TextClassifier
from nlp_transfer.training import checkpoints
from nlp_transfer.training.engine import end_distributed, process_state

model_dir, ck, mode, out = sys.argv[1:5]
clf = TextClassifier.from_pretrained(model_dir, strategy="lora", pooling="mean")
if mode == "kill":
    import signal
    save, n = checkpoints.Checkpointer.save, {"n": 0}
    def interrupting(self, *a, **k):
        r = save(self, *a, **k); n["n"] += 1
        if n["n"] == 3: os.kill(os.getpid(), signal.SIGKILL)
        return r
    checkpoints.Checkpointer.save = interrupting
clf.fit(sentiment_rows(64), sentiment_rows(21, seed=1), epochs=3, batch_size=8, learning_rate=3e-3, save_steps=2,
        checkpoint_dir=ck, resume=mode == "resume", load_best_model_at_end=False)
m = clf.evaluate(sentiment_rows(21, seed=1))
from ddp_worker import _rank_difference

difference = _rank_difference(clf.model)  # every process takes part
state = process_state()
if state.is_main_process:
    from nlp_transfer.training.launch import describe_launch

    json.dump({"metrics": m, "rank_weight_difference": difference, "launch": describe_launch(clf._accelerator)},
              open(out, "w"))
del clf
end_distributed()
