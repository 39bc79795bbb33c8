"""What nlp_transfer writes: model folders, run folders, model cards, the Hub.

| module | holds |
|---|---|
| `atomic` | writing a file or folder so that a failure leaves the previous one intact |
| `model_folder` | `nlp_transfer.json` metadata, the weights layouts, safe tensor I/O |
| `run_folder` | the run folder (config, metrics, history, environment beside the model) |
| `card` | the model card |
| `hub` | push and download through `huggingface_hub` |
"""
