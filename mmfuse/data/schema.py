"""``QARecord``: the one in-memory form every data source produces."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

QuestionId = int | str


@dataclass(frozen=True)
class QARecord:
    """One question about one image (or video).

    Attributes:
        question_id: unique id within its split (int for VQAv2 / easy-VQA, any str for JSONL).
        image: absolute path of the visual input (already resolved and checked to lie inside the
            data root by the source): an image file, or with ``media="video"`` a video file, a
            folder of frames or a ``.npy``/``.npz`` frame array (:mod:`mmfuse.data.video_io`).
        question: the question text.
        answers: raw annotator answers (VQAv2: 10; easy-VQA: 1). Empty for unlabelled test data.
        answer_type: e.g. ``"yes/no"``, ``"number"``, ``"other"``; None when unknown.
        question_type: e.g. ``"what color is the"``; None when unknown.
        image_id: key shared by all questions about the same image (defaults to ``image``);
            used to encode each image once per batch.
        media: ``"image"`` or ``"video"``: what ``image`` points at.
        origin: where the record was read, for error messages (``"<file> line N"`` for JSONL, the
            questions file for VQAv2); None when not from a user's file.
    """

    question_id: QuestionId
    image: str
    question: str
    answers: tuple[str, ...] = field(default_factory=tuple)
    answer_type: str | None = None
    question_type: str | None = None
    image_id: str | None = None
    media: str = "image"
    origin: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        # A split holds 10 answers per question, mostly the same few strings, and each image's path once per
        # question: share one string object each (a VQAv2 train split: ~400 MB less).
        for name in ("image", "answer_type", "question_type", "image_id"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, sys.intern(value))
        object.__setattr__(self, "answers", tuple(sys.intern(a) if isinstance(a, str) else a for a in self.answers))

    @property
    def image_key(self) -> str:
        """The grouping key for image-once encoding."""
        return self.image_id if self.image_id is not None else self.image

    @property
    def is_video(self) -> bool:
        return self.media == "video"
