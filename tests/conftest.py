"""Shared fixtures: tiny randomly initialised encoders saved to disk, and a learnable toy task.

The models are built from configs and saved like any user's model, then loaded through the public
`TextClassifier.from_pretrained`, so the tests exercise the real loading path without a network.
"""

from __future__ import annotations

import os
import random
from contextlib import contextmanager
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Before anything imports torch (OpenMP reads it once): idle threads sleep rather than spin, so a
# busy CI machine slows the suite down in proportion instead of ten-fold (see README, "Busy machines").
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Subprocess tests wait this long before calling a run hung: a safety net, not a speed test.
SAFETY_NET_SECONDS = int(os.environ.get("NLP_TRANSFER_TEST_TIMEOUT", "3000"))

POSITIVE = ["good", "great", "fine", "love", "superb", "nice"]
NEGATIVE = ["bad", "awful", "poor", "hate", "boring", "dull"]
FILLER = ["movie", "film", "the", "a", "is", "was", "plot", "very", "story", "acting"]
TOPICS = ["sports", "music"]  # second label axis for multi-label data
TOPIC_WORDS = {"sports": ["goal", "match"], "music": ["song", "band"]}
WORDS = POSITIVE + NEGATIVE + FILLER + [w for ws in TOPIC_WORDS.values() for w in ws]

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)


def _build_bert(folder: Path) -> None:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (folder / "vocab.txt").write_text("\n".join(vocab), encoding="utf-8")
    tokenizer = BertTokenizerFast(str(folder / "vocab.txt"))
    config = BertConfig(vocab_size=len(vocab), max_position_embeddings=64, **TINY)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _build_roberta(folder: Path) -> None:
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizerFast

    folder.mkdir(parents=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([" ".join(WORDS)] * 5, vocab_size=300, min_frequency=1, show_progress=False,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(folder))
    tokenizer = RobertaTokenizerFast(str(folder / "vocab.json"), str(folder / "merges.txt"))
    config = RobertaConfig(vocab_size=len(tokenizer), max_position_embeddings=80, pad_token_id=tokenizer.pad_token_id, **TINY)
    RobertaModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _build_distilbert(folder: Path) -> None:
    from transformers import BertTokenizerFast, DistilBertConfig, DistilBertModel

    folder.mkdir(parents=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (folder / "vocab.txt").write_text("\n".join(vocab), encoding="utf-8")
    tokenizer = BertTokenizerFast(str(folder / "vocab.txt"))
    config = DistilBertConfig(vocab_size=len(vocab), dim=32, n_layers=2, n_heads=2, hidden_dim=37, max_position_embeddings=64)
    DistilBertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


BUILDERS = {"bert": _build_bert, "roberta": _build_roberta, "distilbert": _build_distilbert}


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    """Folders holding tiny random BERT, RoBERTa and DistilBERT models (built once per session)."""
    import torch

    root = tmp_path_factory.mktemp("models")
    folders = {}
    for name, build in BUILDERS.items():
        torch.manual_seed(0)
        build(root / name)
        folders[name] = root / name
    return folders


@pytest.fixture(params=["bert", "roberta"])
def tiny_model(request, model_dirs) -> Path:
    """Each test that takes this runs once on tiny BERT and once on tiny RoBERTa."""
    return model_dirs[request.param]


def sentiment_rows(n: int, seed: int = 0, labels: tuple[str, str] = ("neg", "pos")) -> list[dict]:
    """Learnable toy data: the label is the polarity of the one sentiment word in the text."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(labels)
        words = rng.sample(FILLER, 3) + [rng.choice(POSITIVE if label == labels[1] else NEGATIVE)]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label})
    return rows


def multi_label_rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        topics = [t for t in TOPICS if rng.random() < 0.5]
        words = rng.sample(FILLER, 2) + [rng.choice(TOPIC_WORDS[t]) for t in topics]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": topics})
    return rows


def regression_rows(n: int, seed: int = 0) -> list[dict]:
    """The target counts the positive words (0 to 3): learnable, and not constant."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        k = rng.randint(0, 3)
        words = rng.sample(POSITIVE, k) + rng.sample(FILLER, 4 - k)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": float(k)})
    return rows


def pair_rows(n: int, seed: int = 0) -> list[dict]:
    """Pairs: 'same' when both sentences have the same polarity."""
    first, second = sentiment_rows(n, seed), sentiment_rows(n, seed + 1)
    return [{"text": a["text"], "text_pair": b["text"], "label": "same" if a["label"] == b["label"] else "different"}
            for a, b in zip(first, second)]


TASK_DATA = {
    "single_label": sentiment_rows,
    "multi_label": multi_label_rows,
    "regression": regression_rows,
    "pairs": pair_rows,
}


@pytest.fixture(scope="session", autouse=True)
def _private_feature_cache(tmp_path_factory):
    """Cached features go to a folder of this session, not the user's ~/.cache."""
    previous = os.environ.get("NLP_TRANSFER_CACHE")
    os.environ["NLP_TRANSFER_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if previous is None:
        os.environ.pop("NLP_TRANSFER_CACHE", None)
    else:
        os.environ["NLP_TRANSFER_CACHE"] = previous


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Tiny models run fastest on one thread; two threads on two busy cores wait on each other."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@contextmanager
def interrupted_after_saves(count: int):
    """A killed run, in-process: the `count`-th checkpoint is written, then KeyboardInterrupt."""
    from nlp_transfer.training import checkpoints

    save, calls = checkpoints.Checkpointer.save, {"n": 0}

    def interrupting(self, *args, **kwargs):
        result = save(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == count:
            raise KeyboardInterrupt
        return result

    checkpoints.Checkpointer.save = interrupting
    try:
        yield
    finally:
        checkpoints.Checkpointer.save = save


# --------------------------------------------------------------------------- vision
TINY_RESNET = dict(layers=[1, 1, 1, 1], channels=(8, 16, 32, 64), stem_width=8)
IMAGE_SIZE = 32


@pytest.fixture(scope="session")
def resnet_dir(tmp_path_factory) -> Path:
    """A tiny random timm ResNet (pretrained=False) saved in timm's own format (config.json + model.safetensors)."""
    import timm
    import torch
    from timm.models._hub import save_for_hf

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("models") / "resnet"
    # zero_init_last=False: a pretrained ResNet has non-zero last-BatchNorm scales; timm's zero init would make
    # every residual branch dead behind a frozen BatchNorm, so LoRA on conv1/conv2 would get no gradient at all.
    model = timm.create_model("resnet18", pretrained=False, num_classes=0, zero_init_last=False, **TINY_RESNET)
    # model_args named: older timm (the GPU image's) does not infer them, and its config.json would describe a plain resnet18
    save_for_hf(model, str(folder), model_args=TINY_RESNET, safe_serialization=True)
    return folder


def square_images(n: int, seed: int = 0, size: int = 24):
    """Learnable toy images: 'bright' images carry a bright square on a dark noisy background, 'dark' ones do not."""
    import numpy as np

    rng = np.random.default_rng(seed)
    images, labels = [], []
    for i in range(n):
        image = rng.integers(0, 70, (size, size, 3)).astype(np.uint8)
        if i % 2:
            x, y = rng.integers(0, size // 2, 2)
            image[y : y + size // 2, x : x + size // 2] = rng.integers(190, 256)
        images.append(image)
        labels.append("bright" if i % 2 else "dark")
    return np.stack(images), labels


def image_folder(root: Path, n: int, seed: int = 0) -> Path:
    """`square_images` written as an ImageFolder tree: root/<label>/<i>.png."""
    from PIL import Image

    images, labels = square_images(n, seed)
    for i, (image, label) in enumerate(zip(images, labels)):
        (root / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / label / f"{i}.png")
    return root
