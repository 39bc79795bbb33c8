"""Choosing: which strategy (`compare`), which backbone (`rank`), and whether transfer helped.

| module | holds |
|---|---|
| `comparison` | every strategy on the same data, chosen on validation, test beside it |
| `auto` | `strategy: auto`: the strategy the learning curves favour for this many examples per class |
| `seeds` | means and stds over seeds, the tie rule, reliability bins pooled over seeds |
| `ranking` | backbones ranked before training (LogME and a linear probe on frozen features) |
| `transferability` | the LogME and linear-probe scores |
| `negative_transfer` | the from-scratch twin and majority-label warnings |
| `charts` | PNG charts of a comparison or a ranking (matplotlib's object API, no global backend) |
"""
