"""Answer vocabulary built from the training answers, and soft VQA targets over it."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from mmfuse.data.schema import QARecord
from mmfuse.metrics.scoring import answer_scores, normalize_answer


class AnswerVocab:
    """An ordered list of (normalised) answer strings; index = classifier output unit.

    Built from the training split only: every annotator answer is normalised with the
    official VQA answer processing and counted; answers are ordered by count (descending),
    ties broken alphabetically, so the order never depends on a dataset's file order.
    """

    def __init__(self, answers: Sequence[str]) -> None:
        if len(set(answers)) != len(answers):
            raise ValueError("answer vocabulary has duplicate entries")
        if not answers:
            raise ValueError("answer vocabulary is empty: the training split has no answers")
        self.answers: list[str] = list(answers)
        self._index = {a: i for i, a in enumerate(self.answers)}

    @classmethod
    def from_records(cls, records: Iterable[QARecord], top_k: int = 3000, min_count: int = 1) -> AnswerVocab:
        counts = Counter(normalize_answer(a) for r in records for a in r.answers)
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return cls([a for a, c in ranked if c >= min_count][:top_k])

    def __len__(self) -> int:
        return len(self.answers)

    def __contains__(self, answer: str) -> bool:
        return answer in self._index

    def index(self, answer: str) -> int:
        return self._index[answer]

    def soft_target(self, record: QARecord) -> list[tuple[int, float]]:
        """Sparse soft target ``[(answer index, VQA score)]``: the official per-annotator
        accuracy each vocabulary answer would get (10 answers: k matches → 0, .3, .6, .9, 1).
        Answers outside the vocabulary cannot be predicted and get no entry."""
        if not record.answers:
            return []
        return [(self._index[a], s) for a, s in answer_scores(record.answers).items() if a in self._index]

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"answers": self.answers}, indent=0))

    @classmethod
    def load(cls, path: str | Path) -> AnswerVocab:
        return cls(json.loads(Path(path).read_text())["answers"])
