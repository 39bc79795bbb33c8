"""Training and scoring on accelerate; knows nothing of strategies or modalities.

| module | holds |
|---|---|
| `engine` | the one training loop, inference with gathering, the accelerator and process state |
| `checkpoints` | resumable checkpoints (weights, buffers, optimizer, schedule, random state) |
| `features` | the frozen-feature cache (encode once, train the head on cached features) |
| `metrics` | task metrics through `evaluate`, from the bundled metric scripts (`evaluate_modules/`) |
| `memory` | peak-memory measurement of a run |
| `sharding` | training state read whole and written back under FSDP (torch's distributed-checkpoint API) |
| `launch` | what a launch actually ran (distributed type, machines, FSDP), and requests it did not honour |
| `tracking` | experiment trackers through accelerate (`train.report_to`) |
"""
