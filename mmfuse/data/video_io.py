"""Reading video frames: a folder of frames, a ``.npy`` / ``.npz`` array, or a video file (PyAV).

Every reader decodes only what it is asked for: :func:`count_frames` reads no pixels (a folder's
listing, an array's header, the container's frame count or its packets), and :func:`read_frames`
converts only the requested indices and stops decoding after the last one.

* **folder**: image files (``.png .jpg .jpeg .bmp .webp``) in natural order (``f2`` before ``f10``).
* **array**: ``[T, H, W, C]`` or ``[T, C, H, W]`` with ``C`` 1 or 3, ``uint8`` or float in ``[0, 1]``;
  ``.npy`` is memory-mapped; ``.npz`` takes the array named ``frames`` or ``video``, else its only one.
* **video file**: ``.mp4 .webm .mkv .avi .mov .gif`` through PyAV (the ``av`` package, FFmpeg).

Frames come back as uint8 ``[K, 3, H, W]``; frames of different sizes are resized to ``size`` (or to
the first frame's size). Every failure is a :class:`DataError` naming the file (and the question id).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from mmfuse.data.transforms import resize_uint8
from mmfuse.errors import DataError, ShortVideo

VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".gif")
ARRAY_SUFFIXES = (".npy", ".npz")
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")

__all__ = ["ARRAY_SUFFIXES", "FRAME_SUFFIXES", "VIDEO_SUFFIXES", "ShortVideo", "count_frames", "read_frames",
           "video_kind"]


def video_kind(path: str) -> str:
    """``folder``, ``array`` or ``file``; anything else is a DataError listing what is read."""
    if os.path.isdir(path):
        return "folder"
    suffix = Path(path).suffix.lower()
    if suffix in ARRAY_SUFFIXES:
        return "array"
    if suffix in VIDEO_SUFFIXES:
        return "file"
    raise DataError(f"{path}: not a video: expected a folder of frames, {'/'.join(ARRAY_SUFFIXES)} or "
                    f"{'/'.join(VIDEO_SUFFIXES)}")


def _natural_key(name: str) -> list[Any]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def _frame_files(path: str) -> list[str]:
    names = sorted((n for n in os.listdir(path) if Path(n).suffix.lower() in FRAME_SUFFIXES), key=_natural_key)
    return [os.path.join(path, n) for n in names]


def _load_array(path: str) -> np.ndarray:
    if path.lower().endswith(".npy"):
        return np.load(path, mmap_mode="r", allow_pickle=False)
    with np.load(path, allow_pickle=False) as z:
        keys = list(z.keys())
        key = next((k for k in ("frames", "video") if k in keys), keys[0] if len(keys) == 1 else None)
        if key is None:
            raise ValueError(f"npz holds arrays {keys}; name the frames 'frames' or 'video', or store one array")
        return z[key]


def _to_tchw(arr: np.ndarray) -> np.ndarray:
    """Check an array video's layout; returns it as ``[T, C, H, W]`` (a view where possible)."""
    if arr.ndim != 4:
        raise ValueError(f"array has shape {arr.shape}; expected [T, H, W, C] or [T, C, H, W] with C = 1 or 3")
    if arr.shape[-1] in (1, 3):
        return arr.transpose(0, 3, 1, 2)
    if arr.shape[1] in (1, 3):
        return arr
    raise ValueError(f"array has shape {arr.shape}; expected [T, H, W, C] or [T, C, H, W] with C = 1 or 3")


def _as_uint8(frames: np.ndarray) -> Tensor:
    """``[K, C, H, W]`` uint8 or float in [0, 1] → uint8 ``[K, 3, H, W]``."""
    if frames.dtype != np.uint8:
        if not np.issubdtype(frames.dtype, np.floating):
            raise ValueError(f"array dtype is {frames.dtype}; expected uint8 or float in [0, 1]")
        if frames.size and (np.nanmin(frames) < 0 or np.nanmax(frames) > 1 or np.isnan(frames).any()):
            raise ValueError("float array values must lie in [0, 1]")
        frames = np.rint(frames * 255.0).astype(np.uint8)
    t = torch.from_numpy(np.ascontiguousarray(frames))
    return t.expand(-1, 3, -1, -1).contiguous() if t.shape[1] == 1 else t


def _open_stream(path: str) -> tuple[Any, Any]:
    import av  # imported here: image-only users never load FFmpeg

    container = av.open(path)
    if not container.streams.video:
        container.close()
        raise ValueError("no video stream")
    stream = container.streams.video[0]
    # one decoding thread: clips are short and many; FFmpeg's thread pools cost more than they save
    stream.codec_context.thread_count = 1
    return container, stream


def _count_file(path: str) -> int:
    container, stream = _open_stream(path)
    with container:
        if stream.frames:  # the container's header count (mp4, mov): no decoding
            return int(stream.frames)
        return sum(1 for p in container.demux(stream) if p.size)  # webm, gif: count packets, decode nothing


_REFORMATTER: Any = None


def _reformatter() -> Any:
    """One FFmpeg pixel-format converter per process: ``frame.to_ndarray(format=...)`` builds a new one
    per frame and a new one per video costs as much again, each about 20x the decoding of a 32 px frame."""
    global _REFORMATTER
    if _REFORMATTER is None:
        from av.video.reformatter import VideoReformatter

        _REFORMATTER = VideoReformatter()
    return _REFORMATTER


def _decode_file(path: str, wanted: set[int]) -> tuple[dict[int, np.ndarray], int]:
    """Decode frames up to max(wanted); convert only the wanted ones to RGB arrays.

    Returns the wanted frames found and how many frames were decoded."""
    last = max(wanted)
    out: dict[int, np.ndarray] = {}
    decoded = 0
    rgb = _reformatter()
    container, stream = _open_stream(path)
    with container:
        for i, frame in enumerate(container.decode(stream)):
            decoded = i + 1
            if i in wanted:
                out[i] = rgb.reformat(frame, format="rgb24").to_ndarray()  # [H, W, 3]
            if i >= last:
                break
    return out, decoded


def count_frames(path: str, question_id: Any = None) -> int:
    """The number of frames of the video at ``path`` (no pixels are decoded)."""
    where = _where(path, question_id)
    kind = video_kind(path)
    with _as_data_error(where):
        if kind == "folder":
            n = len(_frame_files(path))
        elif kind == "array":
            n = int(_to_tchw(_load_array(path)).shape[0])
        else:
            n = _count_file(path)
    if n < 1:
        raise DataError(f"video {where} has no frames")
    return n


def _where(path: str, question_id: Any) -> str:
    return path + (f" (question_id {question_id!r})" if question_id is not None else "")


@contextmanager
def _as_data_error(where: str) -> Iterator[None]:
    """Any failure inside becomes a DataError naming ``where`` (PyAV, numpy and PIL raise their own types)."""
    try:
        yield
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"video not found: {where}") from None
    except Exception as e:
        raise DataError(f"cannot read video {where}: {type(e).__name__}: {e}") from None


def _stack(frames: Sequence[Tensor], size: tuple[int, int] | None) -> Tensor:
    """Resize frames of any sizes to ``size`` (or the first frame's) and stack: ``[K, 3, H, W]``."""
    target = cast(tuple[int, int], tuple(size) if size is not None else tuple(frames[0].shape[-2:]))  # (H, W)
    return torch.stack([resize_uint8(f, target) for f in frames])


def read_frames(path: str, indices: Sequence[int] | None = None, size: tuple[int, int] | None = None,
                question_id: Any = None) -> Tensor:
    """Frames ``indices`` (repeats allowed, any order; None = all) of the video at ``path``.

    Returns uint8 ``[len(indices), 3, H, W]``; ``size=(H, W)`` resizes every frame to it, otherwise
    frames are resized to the first one's size when they differ.

    Raises:
        DataError: missing or unreadable file, an index past the end; names the file and ``question_id``.
    """
    where = _where(path, question_id)
    kind = video_kind(path)
    with _as_data_error(where):
        if indices is None:
            indices = range(count_frames(path, question_id))
        idx = [int(i) for i in indices]
        if not idx:
            raise ValueError("no frame indices requested")
        if min(idx) < 0:
            raise ValueError(f"negative frame index {min(idx)}")
        if kind == "folder":
            files = _frame_files(path)
            available = len(files)
            frames = {i: _read_image(files[i]) for i in set(idx) if i < available}
        elif kind == "array":
            arr = _to_tchw(_load_array(path))
            available = int(arr.shape[0])
            uniq = sorted(i for i in set(idx) if i < available)
            got = _as_uint8(np.asarray(arr[uniq]))
            frames = {i: got[j] for j, i in enumerate(uniq)}
        else:
            decoded, available = _decode_file(path, set(idx))
            frames = {i: torch.from_numpy(a).permute(2, 0, 1) for i, a in decoded.items()}
        missing = sorted(set(idx) - set(frames))
        if missing:
            raise ShortVideo(f"video {where}: frame {missing[0]} requested but it has {available} frame(s)", available)
        return _stack([frames[i] for i in idx], size)


def _read_image(path: str) -> Tensor:
    with Image.open(path) as im:
        rgb = im.convert("RGB")
    return torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1).contiguous()
