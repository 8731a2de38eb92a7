"""``easy_vqa_noisy`` source: easy-VQA with simulated noisy annotators.

easy-VQA has a single, always-correct answer per question, so the VQA accuracy
of a prediction is 0 or 1. Here each question gets ``annotators`` answers like a
VQAv2 question: ``annotators`` copies of the true answer of which exactly
``round(noise * annotators)`` are replaced, at random positions, by a wrong
answer of the same answer type (drawn independently and uniformly from the
*other* answers of the type: yes/no -> the other one, colour -> one of the 7
other :data:`COLORS`, shape -> one of the 2 other :data:`SHAPES`). With the
defaults (10 annotators, noise 0.3) the true answer keeps 7 of 10 votes and the
official VQA accuracy of a wrong answer is graded (0, .3, .6, .9 or 1).

Why: a generator trained on one randomly drawn annotator answer per example
learns to *sample the annotator noise* (it says a wrong answer ~30% of the
time), so reinforcement learning with a VQA-accuracy reward has something to
fix -- unlike clean easy-VQA, where supervised training is already optimal.

Records are those of :func:`~mmfuse.data.sources.easy_vqa.load_easy_vqa`
(same splits ``train``/``test``, question ids, images, questions, ``answer_type``,
``question_type``, ``image_id``) except ``answers``: the ``annotators`` noisy
answers. The noise of a question depends only on (``seed``, split, question id),
so it is the same in every process and whatever subset or order is loaded.

``spec`` (the per-split config value): None for the defaults, or a mapping with
optional keys ``annotators`` (int >= 1, default 10), ``noise`` (float in [0, 1],
default 0.3) and ``seed`` (int, default 0). ``root`` is ignored.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from typing import Any

from mmfuse.data.schema import QARecord
from mmfuse.data.sources.base import register_source, unknown_split
from mmfuse.data.sources.easy_vqa import COLORS, SHAPES, SPLITS, answer_type_of, load_easy_vqa
from mmfuse.errors import DataError

DEFAULTS: dict[str, Any] = {"annotators": 10, "noise": 0.3, "seed": 0}
_EXPECTED = {"annotators": "an int >= 1", "noise": "a float in [0, 1]", "seed": "an int"}
_ANSWERS_OF_TYPE: dict[str, tuple[str, ...]] = {"yes/no": ("yes", "no"), "color": COLORS, "shape": SHAPES}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _valid(key: str, v: Any) -> bool:
    if key == "annotators":
        return _is_int(v) and v >= 1
    if key == "noise":
        return (_is_int(v) or isinstance(v, float)) and 0.0 <= v <= 1.0
    return _is_int(v)


def parse_spec(split: str, spec: Any) -> dict[str, Any]:
    """``spec`` merged over :data:`DEFAULTS`; a DataError for an unknown key or a bad value."""
    where = f"easy_vqa_noisy {split} spec"
    if spec is None:
        return dict(DEFAULTS)
    if not isinstance(spec, Mapping):
        raise DataError(f"{where}: expected None or a mapping with keys {sorted(DEFAULTS)}, got {spec!r}")
    out = dict(DEFAULTS)
    for key, v in spec.items():
        if key not in DEFAULTS:
            raise DataError(f"{where}: unknown key {key!r}; valid keys: {', '.join(sorted(DEFAULTS))}")
        if not _valid(key, v):
            raise DataError(f"{where}: key {key!r} must be {_EXPECTED[key]}, got {v!r}")
        out[key] = v
    return out


def noisy_answers(answer: str, annotators: int, noise: float, rng: random.Random) -> tuple[str, ...]:
    """``annotators`` copies of ``answer`` with ``round(noise * annotators)`` replaced by other answers of its type."""
    others = [a for a in _ANSWERS_OF_TYPE[answer_type_of(answer)] if a != answer]
    answers = [answer] * annotators
    for pos in rng.sample(range(annotators), round(noise * annotators)):
        answers[pos] = rng.choice(others)
    return tuple(answers)


@register_source("easy_vqa_noisy")
def load_easy_vqa_noisy(split: str, spec: Any = None, root: str | None = None) -> list[QARecord]:
    """Load split ``train`` or ``test`` of easy-VQA with noisy annotator answers (see the module doc)."""
    if split not in SPLITS:
        raise unknown_split("easy_vqa_noisy", split, SPLITS)
    opts = parse_spec(split, spec)
    n, noise, seed = opts["annotators"], float(opts["noise"]), opts["seed"]
    return [
        # str seeds are hashed with SHA-512 by random.Random: stable across processes.
        dataclasses.replace(r, answers=noisy_answers(r.answers[0], n, noise,
                                                     random.Random(f"{seed}/{split}/{r.question_id}")))
        for r in load_easy_vqa(split, None, root)
    ]
