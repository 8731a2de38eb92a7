"""Reading checkpoints without running code hidden in them.

A ``.ckpt`` is a pickle: a file from elsewhere can carry a ``__reduce__`` payload that runs when it is
unpickled. Everything mmfuse writes into a checkpoint is plain data (tensors, numbers, strings, lists,
dicts: the config as a plain container, the tokenizer as JSON, vocabularies as lists), which
``torch.load(..., weights_only=True)`` reads without executing anything. Every load in mmfuse goes
through :func:`read_checkpoint` (or passes ``weights_only=not trust`` to Lightning after
:func:`check_checkpoint`), so a file that needs more is refused with :class:`UnsafeCheckpoint`, naming
the file and the opt-in (``--trust-checkpoint`` on the tools, ``trust_checkpoint=True`` in Python,
``trust_checkpoint=true`` in a config) for files the user made.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from mmfuse.errors import UnsafeCheckpoint

__all__ = ["AtomicCheckpointIO", "UnsafeCheckpoint", "check_checkpoint", "read_checkpoint"]


def read_checkpoint(path: str | Path, trust: bool = False, mmap: bool = False) -> dict[str, Any]:
    """The checkpoint dict at ``path`` on the CPU (``mmap``: tensors not read until used).

    Raises:
        FileNotFoundError: naming ``path`` if it is absent.
        UnsafeCheckpoint: the file needs more than plain data to load and ``trust`` is False; nothing in it
            has run.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    mmap = mmap and zipfile.is_zipfile(path)  # torch maps only its zip format; older files are read whole
    if trust:
        return torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:  # torch's restricted unpickler met a global it does not allow
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UnsafeCheckpoint(
            f"{path}: refusing to load this checkpoint: it holds more than plain data (tensors, numbers, "
            f"strings, lists, dicts), and unpickling it may run code ({first}). If you made this file "
            "yourself, opt in with --trust-checkpoint (tools) or trust_checkpoint=True (Python)") from None


def check_checkpoint(path: str | Path, trust: bool = False) -> None:
    """Raise as :func:`read_checkpoint` would, before Lightning reads ``path`` (``weights_only=not trust``)."""
    read_checkpoint(path, trust=trust, mmap=True)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made atomic on local disks: the file is written beside its target as
    ``.<name>.tmp-<pid>``, flushed to disk and renamed over it, so a process killed mid-write leaves the
    previous ``last.ckpt`` whole (a rename within one directory is atomic). Lightning's own writer goes
    through the system temp directory, which is often another file system (``tmpfs``), where the final
    move is a copy. URLs (``s3://``...) go to Lightning's writer."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        for stale in target.parent.glob(f".{target.name}.tmp-*"):  # left by a process killed mid-write
            stale.unlink(missing_ok=True)
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
