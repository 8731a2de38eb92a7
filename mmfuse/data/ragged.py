"""Compact per-question storage for large splits: one flat array and row offsets instead of a Python list
per question (a VQAv2 train split has 443k questions; lists of Python ints cost about ten times more)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

__all__ = ["RaggedIds", "RaggedTargets"]


class RaggedIds(Sequence[np.ndarray]):
    """Rows of integer ids (tokenised questions) stored flat; ``ids[i]`` is row ``i`` as an ``int32`` array."""

    def __init__(self, rows: Iterable[Sequence[int]] = ()) -> None:
        self._flat: list[np.ndarray] = []
        self._lengths: list[int] = []
        self.extend(rows)

    def extend(self, rows: Iterable[Sequence[int]]) -> None:
        """Append rows (kept as chunks until the first read)."""
        rows = list(rows)
        self._lengths += [len(r) for r in rows]
        self._flat.append(np.fromiter((t for r in rows for t in r), dtype=np.int32))
        self._offsets: np.ndarray | None = None

    def _index(self) -> tuple[np.ndarray, np.ndarray]:
        if self._offsets is None or len(self._flat) > 1:
            self._flat = [np.concatenate(self._flat) if self._flat else np.zeros(0, np.int32)]
            self._offsets = np.concatenate([[0], np.cumsum(self._lengths, dtype=np.int64)])
        return self._flat[0], self._offsets

    def __len__(self) -> int:
        return len(self._lengths)

    def __getitem__(self, i: int) -> np.ndarray:  # type: ignore[override]  # rows by integer index only
        flat, offsets = self._index()
        return flat[offsets[i]:offsets[i + 1]]


class RaggedTargets(Sequence[list[tuple[int, float]]]):
    """Sparse soft targets ``[(answer index, score)]`` per question, stored flat; ``targets[i]`` gives row ``i``
    back as that list (scores kept as float64, exactly the values given)."""

    def __init__(self, rows: Iterable[Sequence[tuple[int, float]]]) -> None:
        index: list[int] = []
        score: list[float] = []
        lengths: list[int] = []
        for row in rows:
            lengths.append(len(row))
            for a, s in row:
                index.append(a)
                score.append(s)
        self._index, self._score = np.asarray(index, dtype=np.int32), np.asarray(score, dtype=np.float64)
        self._offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, i: int) -> list[tuple[int, float]]:  # type: ignore[override]  # integer index only
        lo, hi = self._offsets[i], self._offsets[i + 1]
        return list(zip(self._index[lo:hi].tolist(), self._score[lo:hi].tolist()))
