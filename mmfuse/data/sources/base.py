"""Data-source registry and shared helpers.

A *data source* turns one split of a dataset into a list of :class:`QARecord`.
Each source is a function registered under a name::

    @register_source("jsonl")
    def load_jsonl(split: str, spec: Any, root: str | None) -> list[QARecord]: ...

and is called through :func:`load_records`. ``spec`` is the per-split config
value (its meaning is up to the source) and ``root`` is the data root that
relative image paths are resolved against.

Every problem with the *input data or config* raises :class:`DataError` (a
``ValueError``) whose message names the offending file and the line number or
question id, so a user can go straight to the bad entry.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable
from typing import Any

from mmfuse.data.schema import QARecord
from mmfuse.errors import DataError
from mmfuse.registry import Registry

Loader = Callable[[str, Any, str | None], list[QARecord]]


SOURCES: Registry[Loader] = Registry("data source")


def register_source(name: str) -> Callable[[Loader], Loader]:
    """Decorator registering ``loader(split, spec, root) -> list[QARecord]`` as source ``name``."""
    return SOURCES.register(name)


def list_sources() -> list[str]:
    """Names of all registered data sources, sorted."""
    return SOURCES.names()


def load_records(source: str, split: str, spec: Any, root: str | None) -> list[QARecord]:
    """Load split ``split`` of data source ``source``.

    Args:
        source: registered source name (see :func:`list_sources`).
        split: split name, e.g. ``"train"``.
        spec: the per-split config value (jsonl: a file path; vqav2: a mapping with
            ``questions``, ``annotations``, ``images``; easy_vqa: ignored).
        root: data root directory; relative image paths are resolved against it.

    Raises:
        KeyError: unknown source name (lists the registered ones).
        DataError: the source has no such split or its data is malformed.
    """
    loader = SOURCES.get(source)
    return loader(split, spec, root)


def unknown_split(source: str, split: str, available: Iterable[str]) -> DataError:
    """The error for a split a source does not have; lists the splits it does have."""
    names = ", ".join(repr(s) for s in available) or "(none configured)"
    return DataError(f"data source {source!r} has no split {split!r}; available splits: {names}")


@functools.lru_cache(maxsize=4096)
def _real_dir(path: str) -> str:
    return os.path.realpath(path)


def fast_realpath(path: str) -> str:
    """``os.path.realpath(path)``, but cheap for many files in few directories.

    ``realpath`` lstat()s every path component, which costs seconds for the
    ~40k-400k image paths of a VQA split; here the directory part is resolved
    once (cached) and only the file itself is checked for being a symlink.
    """
    # ".." must be applied after resolving the symlinks before it (as the kernel
    # does), which only the full realpath does; such paths are rare.
    if ".." in path.split(os.sep) or os.path.islink(path):
        return os.path.realpath(path)
    head, tail = os.path.split(os.path.abspath(path))
    return os.path.join(_real_dir(head), tail)


def resolve_inside(root: str, rel: str, where: str = "") -> str:
    """Resolve ``rel`` against ``root`` and return its absolute real path.

    Refuses (``DataError``) any path whose real location is outside ``root``:
    ``../x.png``, an absolute path elsewhere, or a symlink pointing out. We use
    ``realpath`` on both sides so a symlinked root itself is fine but a symlink
    *inside* the root cannot be used to read arbitrary files named by a data file.

    Args:
        root: the data root directory.
        rel: the path from the data file (relative to ``root``, or absolute).
        where: context for the error message, e.g. ``"data.jsonl line 3"``.
    """
    prefix = f"{where}: " if where else ""
    if not isinstance(rel, str) or not rel:
        raise DataError(f"{prefix}image path must be a non-empty string, got {rel!r}")
    root_real = _real_dir(os.path.abspath(root))
    # os.path.join drops root when rel is absolute, which is what we want: an
    # absolute path is allowed only if it happens to lie inside root.
    target = fast_realpath(os.path.join(root_real, rel))
    inside = root_real if root_real.endswith(os.sep) else root_real + os.sep
    if target != root_real and not target.startswith(inside):
        raise DataError(
            f"{prefix}image path {rel!r} resolves to {target}, outside the data root {root_real}; refused"
        )
    return target


def resolve_data_file(path: Any, root: str | None, what: str) -> str:
    """Absolute path of a data/annotation file named in the config.

    A relative path is tried against ``root`` first (the usual config layout is
    ``root: data/vqa`` + ``questions: v2_Questions_train.json``) and then as given
    (relative to the working directory). The file must exist.
    """
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise DataError(f"{what}: expected a file path, got {path!r}")
    path = os.fspath(path)
    candidates = [path]
    if root is not None and not os.path.isabs(path):
        candidates.insert(0, os.path.join(root, path))
    for cand in candidates:
        if os.path.isfile(cand):
            return os.path.abspath(cand)
    raise DataError(f"{what}: file not found: {path!r} (tried {', '.join(map(repr, candidates))})")
