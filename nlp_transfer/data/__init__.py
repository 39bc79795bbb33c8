"""From the user's data to batches.

| module | holds |
|---|---|
| `tables` | reading csv / tsv / json / jsonl / parquet / `datasets`, text columns, checks, the validation split |
| `batching` | tokenized datasets, collators, length-grouped and sorted batch samplers |
| `images` | image folders and columns, preprocessing, seeded augmentation |
| `sources` | a run's splits: files, bundled datasets (`bundled/`) or Hub datasets |
"""
