"""Every random stream a training step draws from, as plain data for a checkpoint, and back.

Exact resume needs the resumed run to draw the same numbers as the uninterrupted one: the global streams
(torch, CUDA, NumPy, Python: dropout, sampling) and each system's own generators (PCGrad's task order, the
answer generator's random targets, RL rollouts). Checkpoints load with ``weights_only=True``, so states are
stored as tensors, ints and lists, never as NumPy objects.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

Stream = torch.Generator | random.Random
__all__ = ["Stream", "capture", "restore"]


def capture(streams: Mapping[str, Stream]) -> dict[str, Any]:
    """The global streams' states and those of ``streams`` (name -> generator)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()  # the legacy tuple form
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [name, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(gauss)],
        "python": random.getstate(),
        "streams": {k: _get(s) for k, s in streams.items()},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore(state: Mapping[str, Any], streams: Mapping[str, Stream]) -> None:
    """Set the global streams and ``streams`` to ``state`` (from :func:`capture`); a stream the state does
    not name keeps its own."""
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for k, s in streams.items():
        if k in state["streams"]:
            _set(s, state["streams"][k])


def _get(s: Stream) -> Any:
    return s.get_state() if isinstance(s, torch.Generator) else s.getstate()


def _set(s: Stream, value: Any) -> None:
    if isinstance(s, torch.Generator):
        s.set_state(value)
    else:
        s.setstate(_tuples(value))


def _tuples(value: Any) -> Any:
    """``random.setstate`` wants tuples; a checkpoint may hand lists back."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list | tuple) else value
