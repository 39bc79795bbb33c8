"""The network a strategy acts on: a backbone's pooled features, a head, and the task's loss.

| module | holds |
|---|---|
| `heads` | `ClassificationHead` and its `HeadConfig` (linear or MLP, optional LayerNorm) |
| `transfer_model` | `TransferModel`: backbone + head + loss, with frozen parts kept in eval mode |
"""
