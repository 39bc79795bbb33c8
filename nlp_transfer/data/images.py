"""Reading the user's images, checking them, and turning them into tensors with the model's own preprocessing.

Accepted sources: an ImageFolder-style directory (one sub-folder of images per class), a CSV/JSONL
(or any table `read_table` reads) with an image column of paths (relative to the file) and a label
column, a `datasets` image dataset, a list of dicts, or in-memory ``(images, labels)`` arrays.
Every file is opened (header only) before training, so a broken image fails in seconds, by name.

    >>> images = ImageColumns.from_source("photos/", DataConfig(), where="train", need_labels=True)
    >>> dataset = ImageDataset(images, targets, transform=eval_transform(data_config))
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from nlp_transfer.config.settings import DataConfig
from nlp_transfer.errors import DataError
from nlp_transfer.storage.cache import update_with_file

__all__ = ["IMAGE_EXTENSIONS", "FOLDER_EXTENSIONS", "ImageColumns", "ImageDataset", "ImageCollator", "make_transform",
           "looks_like_image", "open_rgb", "decode_size"]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
# What an image folder's class folders are read for: torchvision ImageFolder's extensions (no GIF:
# in photo collections a .gif is mostly an animation or a placeholder, e.g. "image not found").
FOLDER_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def looks_like_image(value: Any) -> bool:
    """True for a path to one image file (as opposed to a data table or folder)."""
    return isinstance(value, (str, Path)) and Path(value).suffix.lower() in IMAGE_EXTENSIONS


@dataclass(frozen=True)
class ImageColumns:
    """Validated images (paths, PIL images or arrays) and their labels (when present).

    Arrays are read by their dtype, never stretched per image (a dark image stays dark): uint8 as
    is, float as [0, 1] (values outside are an error), uint16 as 16-bit (divided by 257), bool as
    black/white, other integer types as 8-bit values 0-255 (what ``np.array`` of byte values gives).
    """

    images: list[Any]
    labels: list[Any] | None

    def __len__(self) -> int:
        return len(self.images)

    def take(self, rows: Sequence[int]) -> ImageColumns:
        return ImageColumns([self.images[i] for i in rows], [self.labels[i] for i in rows] if self.labels is not None else None)

    @classmethod
    def from_source(cls, source: Any, config: DataConfig, where: str, need_labels: bool) -> ImageColumns:
        if isinstance(source, (str, Path)) and Path(source).is_dir():
            columns = _image_folder(Path(source), where, config.skip_bad_images)
        elif looks_like_image(source) or _is_image(source):
            columns = cls([source], None)
        elif isinstance(source, tuple) and len(source) == 2 and not isinstance(source[0], (str, dict)):
            images, labels = source  # (images, labels) in memory
            columns = cls(list(images), list(labels))
            if len(columns.images) != len(columns.labels):
                raise DataError(f"{where}: {len(columns.images)} images but {len(columns.labels)} labels.")
        elif isinstance(source, (list, tuple, np.ndarray)) and len(source) and not isinstance(source[0], dict):
            columns = cls(list(source), None)  # bare images for predict
        else:
            columns = _from_table(source, config, where)
        if not columns.images:
            raise DataError(f"{where}: the data is empty (no images).")
        if need_labels and columns.labels is None:
            raise DataError(f"{where}: no labels. Give a folder with one sub-folder per class, a table with a "
                            f"{config.label_column!r} column, or (images, labels).")
        return _readable(columns, where, config.skip_bad_images)


def _is_image(value: Any) -> bool:
    """One image (not a batch): a PIL image, an [H, W] array or an [H, W, C] array with 1, 3 or 4 channels."""
    if type(value).__module__.startswith("PIL."):
        return True
    return isinstance(value, np.ndarray) and (value.ndim == 2 or (value.ndim == 3 and value.shape[-1] in (1, 3, 4)))


def _image_folder(root: Path, where: str, skip_bad_images: bool = False) -> ImageColumns:
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        files = sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith("."))
        images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
        if images:  # a flat folder of images: something to predict on (any format PIL reads, GIF too)
            _warn_skipped(root, [p for p in files if p not in images], where, IMAGE_EXTENSIONS)
            return ImageColumns([str(p) for p in images], None)
        raise DataError(f"{where}: {str(root)!r} has no class sub-folders and no images. Lay it out as "
                        f"{root}/<label>/<image>.png, one sub-folder per class.")
    images, labels, others = [], [], []
    for folder in classes:
        files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
        chosen = [p for p in files if p.suffix.lower() in FOLDER_EXTENSIONS]
        others += [p for p in files if p.suffix.lower() not in FOLDER_EXTENSIONS]
        if not chosen:
            raise DataError(f"{where}: the class folder {str(folder)!r} has no images ({', '.join(FOLDER_EXTENSIONS[:4])}, ...). "
                            "Add images or remove the folder.")
        images += [str(p) for p in chosen]
        labels += [folder.name] * len(chosen)
    _warn_skipped(root, others, where, FOLDER_EXTENSIONS)  # as torchvision's ImageFolder: photo formats only
    return ImageColumns(images, labels)


def _warn_skipped(root: Path, skipped: list[Path], where: str, extensions: tuple[str, ...]) -> None:
    """One warning naming the files a folder read left out."""
    if skipped:
        named = ", ".join(repr(str(p.relative_to(root))) for p in skipped[:5])
        logger.warning("%s: skipped %d file(s) in %s that are not photos (%s): %s%s", where, len(skipped), root,
                       "/".join(extensions), named, ", ..." if len(skipped) > 5 else "")


def _from_table(source: Any, config: DataConfig, where: str) -> ImageColumns:
    from nlp_transfer.data.tables import read_table

    table = read_table(source, where)
    column = config.image_column
    if column not in table:
        raise DataError(f"{where}: no image column {column!r}; columns found: {sorted(table)}. "
                        "Set image_column to the column that holds image paths (or images).")
    images = table[column]
    base = Path(source).parent if isinstance(source, (str, Path)) else None
    resolved = []
    for row, image in enumerate(images):
        if image is None or (isinstance(image, str) and not image.strip()):
            raise DataError(f"{where}: row {row} has an empty {column!r}; drop it or give the image path.")
        if isinstance(image, dict):  # a datasets Image feature not decoded: {"bytes": ..., "path": ...}
            image = image.get("bytes") or image.get("path")
        if isinstance(image, str) and base is not None and not Path(image).is_absolute():
            image = str(base / image)  # paths in a data file are relative to that file
        resolved.append(image)
    return ImageColumns(resolved, table.get(config.label_column))


def _readable(columns: ImageColumns, where: str, skip_bad_images: bool) -> ImageColumns:
    """`columns` once every image opens; a file that does not is an error naming it, or, with
    `skip_bad_images`, left out with one warning that names them all."""
    bad: list[tuple[int, str]] = []
    for row, image in enumerate(columns.images):
        problem = _problem(image, row, where)
        if problem is not None:
            bad.append((row, problem))
    if not bad:
        return columns
    if not skip_bad_images or len(bad) == len(columns.images):
        first = bad[0][1]
        more = f" ({len(bad) - 1} more unreadable)" if len(bad) > 1 else ""
        raise DataError(f"{where}: {first}{more}. Remove or replace it, or set data.skip_bad_images=true to leave "
                        "unreadable images out with a warning." if not skip_bad_images else
                        f"{where}: no image could be read; the first: {first}.")
    logger.warning("%s: left out %d unreadable image(s) (data.skip_bad_images): %s", where, len(bad),
                   "; ".join(problem for _, problem in bad[:5]) + ("; ..." if len(bad) > 5 else ""))
    dropped = {row for row, _ in bad}
    return columns.take([row for row in range(len(columns.images)) if row not in dropped])


def _problem(image: Any, row: int, where: str) -> str | None:
    """Why `image` cannot be used, or None. Files are opened header-first (not every pixel), so a
    broken image fails in seconds, by name, before any training."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, (str, Path, bytes)):
        if not isinstance(image, bytes) and not Path(image).is_file():
            return f"image file {str(image)!r} does not exist"
        name = f"in row {row}" if isinstance(image, bytes) else repr(str(image))
        try:
            with Image.open(io.BytesIO(image) if isinstance(image, bytes) else image) as opened:
                kind = opened.format
                opened.verify()  # reads the header and structure, not every pixel
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
            return f"cannot read the image {name} ({error})"
        if kind == "JPEG" and not _ends_like_a_jpeg(image):  # verify() does not see a file cut short
            return f"the image {name} is truncated (no JPEG end marker: an interrupted copy or download?)"
        return None
    if isinstance(image, np.ndarray):
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] not in (1, 3, 4)):
            raise DataError(f"{where}: an image array must be [H, W] or [H, W, C] with C in 1, 3, 4; got shape {image.shape}.")
        _as_bytes(image, f"{where}: the image array in row {row}")  # a bad range fails now, not mid-epoch
        return None
    if not type(image).__module__.startswith("PIL."):
        raise DataError(f"{where}: cannot use {type(image).__name__} as an image; give file paths, PIL images or arrays.")
    return None


def _ends_like_a_jpeg(image: str | Path | bytes) -> bool:
    """Whether the end-of-image marker (FF D9) is in the last kilobyte (cameras may append a little after it)."""
    if isinstance(image, bytes):
        return b"\xff\xd9" in image[-1024:]
    with open(image, "rb") as handle:
        handle.seek(max(0, Path(image).stat().st_size - 1024))
        return b"\xff\xd9" in handle.read()


def _as_bytes(array: np.ndarray, name: str) -> np.ndarray:
    """Pixel values as uint8, scaled by the array's dtype (see `ImageColumns`), never by its content."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if array.dtype == np.uint16:
        return np.round(array / 257.0).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        low, high = float(np.min(array)), float(np.max(array))
        if not (0.0 <= low and high <= 1.0):  # also NaN
            raise DataError(f"{name} is {array.dtype} with values from {low:g} to {high:g}; float images must be in "
                            "[0, 1]. Divide by 255 (for 0-255 values) or give uint8 arrays.")
        return np.round(array * 255.0).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        low, high = int(np.min(array)), int(np.max(array))
        if low < 0 or high > 255:
            raise DataError(f"{name} is {array.dtype} with values from {low} to {high}; integer images other than "
                            "uint16 must hold 0-255. Convert to uint8, uint16 or float in [0, 1].")
        return array.astype(np.uint8)
    raise DataError(f"{name} has dtype {array.dtype}; give uint8, uint16, bool or float (in [0, 1]) pixel values.")


def open_rgb(image: Any, min_side: int | None = None):
    """Any accepted image as an RGB PIL image, upright: the EXIF orientation a camera wrote is
    applied, grayscale is repeated (16-bit grey scaled to 8 bits, as uint16 arrays are), transparency
    laid on white.

    With `min_side`, a large JPEG is decoded at the smallest of libjpeg's 1/2, 1/4, 1/8 scales that
    keeps its shorter side at least `min_side` pixels (a 2592 px photo decodes about 10x faster;
    the model's own resize follows). Arrays are scaled by dtype (see `ImageColumns`): float in
    [0, 1], uint16 / 257, bool 0 / 255.
    """
    from PIL import Image, ImageOps

    if isinstance(image, (str, Path, bytes)):
        with Image.open(io.BytesIO(image) if isinstance(image, bytes) else image) as opened:
            if min_side and opened.format == "JPEG":
                width, height = opened.size
                scale = min_side / max(min(width, height), 1)
                opened.draft("RGB", (max(1, round(width * scale)), max(1, round(height * scale))))
            picture = ImageOps.exif_transpose(opened)  # a copy, turned as the camera meant
    elif isinstance(image, np.ndarray):
        array = image.squeeze(-1) if image.ndim == 3 and image.shape[-1] == 1 else image
        picture = Image.fromarray(_as_bytes(array, "an image array"))
    else:
        picture = ImageOps.exif_transpose(image)
    if picture.mode.startswith("I"):  # 16-bit (or 32-bit integer) grey: PIL's convert("RGB") would clip it to white
        array = np.asarray(picture, dtype=np.int64)
        picture = Image.fromarray(np.clip(np.round(array / 257.0), 0, 255).astype(np.uint8))  # as uint16 arrays
    if picture.mode in ("RGBA", "LA", "PA") or (picture.mode == "P" and "transparency" in picture.info):
        background = Image.new("RGB", picture.size, (255, 255, 255))
        background.paste(picture.convert("RGBA"), mask=picture.convert("RGBA").getchannel("A"))
        return background
    return picture.convert("RGB")


def decode_size(data_config: dict[str, Any]) -> int:
    """The shorter side a photo needs before the model's resize: the input size over the crop share
    (224 px at timm's crop_pct 0.875: 256 px), so decoding smaller never loses pixels the model sees."""
    size = max(data_config["input_size"][1:])
    return int(math.ceil(size / float(data_config.get("crop_pct") or 1.0)))


def make_transform(data_config: dict[str, Any], training: bool, augment: bool = True, hflip: bool = True):
    """timm's transforms for the model's data config. Training with `augment`: a mild random resized
    crop (70-100% of the image) and, with `hflip`, horizontal flips; no colour jitter (small data
    needs the images it has, not new colours). Otherwise: resize, centre crop, normalise."""
    from timm.data import create_transform

    if not training or not augment:
        return create_transform(**data_config, is_training=False)
    return create_transform(**{k: v for k, v in data_config.items() if k not in ("crop_pct", "crop_mode")},
                            is_training=True, scale=(0.7, 1.0), hflip=0.5 if hflip else 0.0, color_jitter=None)


class ImageDataset(Dataset):
    """Images (decoded lazily, one at a time) with their targets and row indices.

    Training augmentation draws from its own generator, seeded per example from (`augment_seed`,
    epoch, row): the crop an image gets depends on nothing else, so two identical fits give the
    same model whatever else drew from Python's or torch's global random state (a library imported
    lazily, say), and a run resumed mid-epoch sees exactly the crops the uninterrupted run saw. The
    training loop tells the dataset the epoch (`set_epoch`), as it tells the batch sampler.
    """

    def __init__(self, columns: ImageColumns, targets: torch.Tensor | None, transform, eval_transform=None,
                 augment_seed: int | None = None, min_side: int | None = None) -> None:
        self.images = columns.images
        self.targets = targets
        self.transform = transform
        self.eval_transform = eval_transform or transform
        self.augment_seed = augment_seed  # None: the transform is deterministic (evaluation)
        self.min_side = min_side  # large JPEGs are decoded at a reduced scale down to this shorter side
        self.epoch = 0
        self.lengths = [1] * len(self.images)  # every image is the same size after preprocessing
        self._row_keys: list[str] | None = None
        self._keys_of_images = lambda: [_content_hash(image) for image in self.images]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        try:
            image = open_rgb(self.images[index], self.min_side)
        except OSError as error:  # a file damaged or changed since it was checked: say which one
            where = repr(str(self.images[index])) if isinstance(self.images[index], (str, Path)) else f"number {index}"
            raise DataError(f"Cannot decode the image {where} ({error}). Remove or replace it.") from error
        pixels = self.transform(image) if self.augment_seed is None else self._augmented(image, index)
        item: dict[str, Any] = {"pixel_values": pixels, "index": index}
        if self.targets is not None:
            item["labels"] = self.targets[index]
        return item

    def _augmented(self, image, index: int) -> torch.Tensor:
        # timm's and torchvision's random transforms draw from the global generators (Python's
        # `random` and torch's); give them a private, seeded state and put the global ones back.
        seed = (self.augment_seed * 1_000_003 + self.epoch) * 1_000_033 + index
        python_state = random.getstate()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            random.seed(seed)
            try:
                return self.transform(image)
            finally:
                random.setstate(python_state)

    def deterministic(self) -> ImageDataset:
        """The same images through the evaluation transform (what cached features are computed from)."""
        view = ImageDataset(ImageColumns(self.images, None), self.targets, self.eval_transform, min_side=self.min_side)
        view._keys_of_images = self.row_keys  # the same images: each file is hashed once, by whichever asks first
        return view

    def row_keys(self) -> list[str]:
        """One hash per example of what the model sees from it: the file's bytes (not its name or
        date, so a renamed or copied file is the same example and an edited one is not), or the
        pixels of an in-memory image."""
        if self._row_keys is None:
            self._row_keys = self._keys_of_images()
        return self._row_keys

    def fingerprint(self) -> str:
        """Stands for every example's content (`row_keys`, in any order) and how it is read and
        preprocessed; the feature cache lines its rows up with `row_keys`."""
        digest = hashlib.sha256(f"{_READER}:{self.min_side}:{self.transform!r}".encode())
        for key in sorted(self.row_keys()):
            digest.update(key.encode())
        return digest.hexdigest()


_READER = "exif-upright-16bit-v2"  # changes when decoding changes what an image file gives


def _content_hash(image: Any) -> str:
    digest = hashlib.sha256()
    if isinstance(image, (str, Path)):
        update_with_file(digest, image)
    elif isinstance(image, bytes):
        digest.update(image)
    elif isinstance(image, np.ndarray):
        digest.update(f"{image.shape}:{image.dtype}".encode())
        digest.update(np.ascontiguousarray(image).tobytes())
    else:  # a PIL image
        digest.update(f"{image.mode}:{image.size}".encode())
        digest.update(image.tobytes())
    return digest.hexdigest()


class ImageCollator:
    """Stacks preprocessed images into one tensor."""

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = {"pixel_values": torch.stack([item["pixel_values"] for item in items]),
                 "index": torch.tensor([item["index"] for item in items], dtype=torch.long)}
        if "labels" in items[0]:
            batch["labels"] = torch.stack([torch.as_tensor(item["labels"]) for item in items])
        return batch
