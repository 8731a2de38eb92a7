"""Image loading: decode files to uint8 ``[3, H, W]`` RGB tensors, with clear errors.

Sources only resolve paths; images are opened here, after the records are built,
so one place decides what a missing or corrupt image does:

* :func:`load_image` raises :class:`DataError` naming the file and the question id;
* :func:`load_images` decodes each distinct image once (many questions share an
  image) and either stops at the first bad one (``skip_bad=False``) or collects
  the bad ones as :class:`BadImage` so the caller can drop their records and
  report how many were dropped (the in-memory path, ``data.cache_images``);
* :func:`check_images` reads only each file's header (the lazy path: images are
  decoded per batch, in DataLoader workers, by an :class:`ImageLoader`).

Given the model's input size, a JPEG is decoded at reduced scale (``Image.draft``)
and every image is resized as soon as it is decoded.

``resolve_inside`` (re-exported from :mod:`mmfuse.data.sources.base`, where the
sources use it) refuses paths that escape the data root.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from mmfuse.data.schema import QARecord, QuestionId
from mmfuse.data.sources.base import resolve_inside
from mmfuse.errors import DataError

__all__ = ["BadImage", "DataError", "ImageLoader", "check_image", "check_images", "load_image", "load_images",
           "resolve_inside"]


@dataclass(frozen=True)
class BadImage:
    """An image that could not be loaded, and the questions that referenced it."""

    path: str
    image_key: str
    question_ids: tuple[QuestionId, ...]
    reason: str


def to_rgb(im: Image.Image) -> Image.Image:
    """``im`` as 8-bit RGB. Pillow's own ``convert("RGB")`` clips 16-bit and 32-bit modes at 255 (a 16-bit
    PNG comes out all white) and float images likewise; those are scaled instead: 16/32-bit integers by
    1/257 (65535 -> 255), floats in [0, 1] by 255 (other floats taken as 0-255), then clipped."""
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        a = np.asarray(im, dtype=np.float64) / 257.0  # [H,W]
    elif im.mode == "F":
        a = np.nan_to_num(np.asarray(im, dtype=np.float64))
        if a.size and a.max() <= 1.0:
            a = a * 255.0
    else:
        return im.convert("RGB")
    return Image.fromarray(np.clip(a, 0, 255).round().astype(np.uint8), "L").convert("RGB")


def _decode(path: str, size: tuple[int, int] | None = None, reduced: bool = True) -> torch.Tensor:
    with Image.open(path) as im:
        if size is not None and reduced and im.format == "JPEG":
            # the JPEG decoder's own 1/2, 1/4 or 1/8 scaling, never below the wanted (W, H): a 640x480
            # photo for a 224 px model decodes a quarter of the pixels; the exact resize comes after
            im.draft("RGB", (size[1], size[0]))
            if im.decoderconfig and im.decoderconfig[0] > 1:
                # the second field is Pillow's draft flag: its JPEG decoder then asks libjpeg for the fastest
                # IDCT and plain (not "fancy") chroma upsampling. Under 1 grey level of mean difference before
                # the resize; on photo-sized files a good part of the reduced decode's time (README "Data
                # path at scale")
                im.decoderconfig = (im.decoderconfig[0], 1)
        rgb = to_rgb(im)  # forces the full decode, so truncation surfaces here
    hwc = torch.from_numpy(np.array(rgb, dtype=np.uint8))  # [H,W,3]
    if size is None or tuple(hwc.shape[:2]) == tuple(size):
        return hwc.permute(2, 0, 1).contiguous()
    # torch's uint8 bilinear resize (antialiased when shrinking; a channels-last view, no float copy): the
    # pixels Pillow's resize gives, at 2x its speed and 4x a float round trip
    out = F.interpolate(hwc.permute(2, 0, 1)[None], size=tuple(size), mode="bilinear", antialias=True,
                        align_corners=False)
    return out[0].contiguous()  # [3,H,W]


def _first_origins(records: list[QARecord]) -> dict[str, str]:
    """image key -> where its first question was read (records without an origin left out)."""
    out: dict[str, str] = {}
    for r in records:
        if r.origin is not None:
            out.setdefault(r.image_key, r.origin)
    return out


@contextlib.contextmanager
def _data_errors(path: str, question_id: QuestionId | None, origin: str | None = None) -> Iterator[None]:
    """Any failure to read ``path`` as a :class:`DataError` naming the file, the question and where the
    question was read (``origin``: the JSONL file and line, or the questions file)."""
    about = ([f"question_id {question_id!r}"] if question_id is not None else []) + \
        ([f"from {origin}"] if origin is not None else [])
    qid = f" ({', '.join(about)})" if about else ""
    try:
        yield
    except FileNotFoundError:
        raise DataError(f"image file not found: {path}{qid}") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        # PIL reports corrupt data as OSError / UnidentifiedImageError, some plugins
        # as SyntaxError or ValueError; absurdly large images as DecompressionBombError.
        raise DataError(f"cannot read image {path}{qid}: {type(e).__name__}: {e}") from None


def load_image(path: str, question_id: QuestionId | None = None, size: tuple[int, int] | None = None,
               reduced: bool = True, origin: str | None = None) -> torch.Tensor:
    """Load ``path`` as a uint8 ``[3, H, W]`` RGB tensor; with ``size`` ``(H, W)``, at that size (with
    ``reduced``, a JPEG is decoded at the smallest of its built-in reduced scales that still covers
    ``size``; then resized).

    Raises:
        DataError: the file is missing, not an image, truncated or otherwise
            unreadable; the message names the file, ``question_id`` and ``origin`` (the record's file and
            line).
    """
    with _data_errors(path, question_id, origin):
        return _decode(path, size, reduced)


def check_image(path: str, question_id: QuestionId | None = None, origin: str | None = None) -> tuple[int, int]:
    """``(width, height)`` from the file's header alone (nothing decoded): the start-up check of the lazy
    path. A file corrupt past its header passes here and fails when it is first decoded.

    Raises:
        DataError: missing, not an image, or an unreadable header; names the file and ``question_id``.
    """
    with _data_errors(path, question_id, origin), Image.open(path) as im:
        return im.size


class ImageLoader:
    """``(record) -> uint8 [3, H, W]`` at ``size``: the per-batch decoder of the lazy path (picklable, so
    DataLoader workers can run it)."""

    def __init__(self, size: tuple[int, int], reduced: bool = True) -> None:
        self.size, self.reduced = size, reduced

    def __call__(self, record: QARecord) -> torch.Tensor:
        return load_image(record.image, record.question_id, self.size, self.reduced, record.origin)


def group_by_image(records: Iterable[QARecord]) -> dict[str, tuple[str, list[QuestionId]]]:
    """image key -> (its file, the ids of its questions), in first-use order; one key naming two files is
    a DataError (image-once encoding would be wrong)."""
    groups: dict[str, tuple[str, list[QuestionId]]] = {}
    for r in records:
        key = r.image_key
        if key not in groups:
            groups[key] = (r.image, [r.question_id])
            continue
        path, qids = groups[key]
        if path != r.image:  # one key must mean one image, or image-once encoding is wrong
            raise DataError(
                f"image_id {key!r} names two files: {path} (question_id {qids[0]!r}) "
                f"and {r.image} (question_id {r.question_id!r})"
            )
        qids.append(r.question_id)
    return groups


def load_images(
    records: Iterable[QARecord], skip_bad: bool = False, size: tuple[int, int] | None = None,
    reduced: bool = True,
) -> tuple[dict[str, torch.Tensor], list[BadImage]]:
    """Decode every distinct image referenced by ``records`` once (at ``size`` when given: each image is
    resized as soon as it is decoded, so only the resized set is ever held).

    A plain loop: all 5,000 easy-VQA PNGs take about 2-3 s; a 2-thread
    ThreadPoolExecutor was measured to be no faster (slightly slower) on the
    2-core machine, since for 64x64 images the per-file Python overhead dominates.

    Args:
        records: the records; images are grouped by ``record.image_key``.
        skip_bad: False: the first bad image raises :class:`DataError` (file and the
            first question id using it). True: bad images are returned instead.

    Returns:
        ``(images, bad)``: ``images`` maps image_key -> uint8 ``[3, H, W]`` tensor
        for every good image; ``bad`` lists the :class:`BadImage` s (empty unless
        ``skip_bad``), in first-use order. Drop records whose image_key is in
        ``{b.image_key for b in bad}``; ``sum(len(b.question_ids) for b in bad)``
        is the number of records dropped.
    """
    images: dict[str, torch.Tensor] = {}
    bad: list[BadImage] = []
    records = list(records)
    origins = _first_origins(records)
    for key, (path, qids) in group_by_image(records).items():
        try:
            images[key] = load_image(path, qids[0], size=size, reduced=reduced, origin=origins.get(key))
        except DataError as e:
            if not skip_bad:
                raise
            bad.append(BadImage(path=path, image_key=key, question_ids=tuple(qids), reason=str(e)))
    return images, bad


def check_images(records: Iterable[QARecord], skip_bad: bool = False) -> tuple[list[str], list[BadImage]]:
    """The header check of every distinct image of ``records`` (:func:`check_image`, nothing decoded).

    Returns ``(keys, bad)``: the image keys that passed, sorted, and the :class:`BadImage` s (empty unless
    ``skip_bad``; else the first bad one raises :class:`DataError`)."""
    keys: list[str] = []
    bad: list[BadImage] = []
    records = list(records)
    origins = _first_origins(records)
    for key, (path, qids) in group_by_image(records).items():
        try:
            check_image(path, qids[0], origins.get(key))
            keys.append(key)
        except DataError as e:
            if not skip_bad:
                raise
            bad.append(BadImage(path=path, image_key=key, question_ids=tuple(qids), reason=str(e)))
    return sorted(keys), bad
