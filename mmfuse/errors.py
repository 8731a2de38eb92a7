"""The public exceptions, in one module that every layer may import (it imports nothing).

Each is also importable from where it is raised (``mmfuse.config.ConfigError``,
``mmfuse.data.sources.DataError``, ...), and from ``mmfuse`` itself. All derive from
:class:`MmfuseError`, so a tool can report any of them as one line; each keeps the builtin base it
always had (``ValueError`` or ``RuntimeError``), so existing ``except ValueError`` code still catches it.
"""

from __future__ import annotations

__all__ = [
    "CheckpointMismatch", "ConfigError", "CoverageError", "DataError", "Diverged", "FormatError",
    "MmfuseError", "RunFailed", "ShortVideo", "StaleRun", "UnsafeCheckpoint",
]


class MmfuseError(Exception):
    """Base of every mmfuse error: bad input named by file, record or key, never a bug."""


class ConfigError(MmfuseError, ValueError):
    """A config key, type or value is invalid; the message names the key and what is valid."""


class DataError(MmfuseError, ValueError):
    """Bad input data or data config (malformed file, missing image, unknown split, ...)."""


class ShortVideo(DataError):
    """A video file decoded to fewer frames than its header claimed; ``available`` is the real count."""

    def __init__(self, message: str, available: int) -> None:
        super().__init__(message)
        self.available = available


class FormatError(MmfuseError, ValueError):
    """A results / annotations / questions file that is not in the official format."""


class CoverageError(MmfuseError, ValueError):
    """The results do not cover exactly the annotated questions (the official ``loadRes`` assert)."""


class CheckpointMismatch(MmfuseError, ValueError):
    """Two checkpoints cannot be interpolated; the message says what differs first."""


class RunFailed(MmfuseError, RuntimeError):
    """One training run of a sweep raised; the message names the run and its folder."""


class StaleRun(MmfuseError, ValueError):
    """A finished run in the output folder was trained with another config than the one requested."""


class UnsafeCheckpoint(MmfuseError, ValueError):
    """A checkpoint holds more than plain data (tensors, numbers, strings, lists, dicts): unpickling it may run
    code. Refused unless the caller opts in (``--trust-checkpoint``, ``trust_checkpoint=True``)."""


class Diverged(MmfuseError, RuntimeError):
    """Training met a non-finite loss or gradient (``loss.nonfinite: stop``); the message names the step, the
    term that went non-finite first and the last checkpoint written before it."""
