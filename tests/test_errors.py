"""The public exceptions live in mmfuse.errors, stay importable from where they were raised, and keep the
builtin bases existing ``except ValueError`` code relies on."""

from __future__ import annotations

import importlib

import pytest

import mmfuse
from mmfuse import errors

OLD_HOMES = {
    "ConfigError": ["mmfuse.config"],
    "DataError": ["mmfuse.data.sources", "mmfuse.data.sources.base"],
    "ShortVideo": ["mmfuse.data.video_io"],
    "FormatError": ["mmfuse.metrics.official_format"],
    "CoverageError": ["mmfuse.metrics.official_format", "mmfuse.evaluation.results", "mmfuse.evaluation"],
    "CheckpointMismatch": ["mmfuse.evaluation.interpolate"],
    "RunFailed": ["mmfuse.evaluation.pareto"],
    "StaleRun": ["mmfuse.evaluation.pareto"],
}


@pytest.mark.parametrize("name", sorted(OLD_HOMES))
def test_one_class_importable_from_its_old_home(name: str) -> None:
    cls = getattr(errors, name)
    assert issubclass(cls, errors.MmfuseError)
    for module in OLD_HOMES[name]:
        assert getattr(importlib.import_module(module), name) is cls, module


def test_builtin_bases_are_kept() -> None:
    for name in ("ConfigError", "DataError", "FormatError", "CoverageError", "CheckpointMismatch", "StaleRun"):
        assert issubclass(getattr(errors, name), ValueError), name
    assert issubclass(errors.RunFailed, RuntimeError)
    assert issubclass(errors.ShortVideo, errors.DataError)
    assert errors.ShortVideo("short", available=3).available == 3


def test_package_root_exports_them() -> None:
    assert mmfuse.ConfigError is errors.ConfigError and mmfuse.MmfuseError is errors.MmfuseError
    with pytest.raises(mmfuse.MmfuseError, match="unknown config key 'optim.lrr'"):
        mmfuse.load_config(None, ["optim.lrr=1"])
