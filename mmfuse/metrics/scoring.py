"""VQA accuracy, equal to the official scorer, plus soft targets and the majority answer: pure Python (no
torch), so light tools (``tools/score.py``) import it in milliseconds. :mod:`mmfuse.metrics.vqa` re-exports
it with the torchmetrics ``VQAAccuracy``.

Reference: ``GT-Vision-Lab/VQA`` ``PythonEvaluationTools/vqaEvaluation/vqaEval.py`` at HEAD
``a013f00`` (2021-03-11, "Fixed processing answers bug"; Python 2.7). Older copies of that file
(LAVIS and its forks) never normalise the GT answers and give different numbers.
:func:`vqa_accuracy` equals the official per-question value bit for bit, quirks included, with
Python 2 semantics (``\\d`` is ``[0-9]``; ``lower()`` maps one character to one character).
Not emulated: Python 2.7's older Unicode database (5.2), in which U+180E is whitespace and case
pairs added later (Cherokee, Georgian Mtavruli, ...) have no lower case. :class:`VQAAccuracy`
(in :mod:`mmfuse.metrics.vqa_metric`, importable from :mod:`mmfuse.metrics.vqa`) differs from the official
script on purpose in one place: it normalises predictions first.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Sequence

from mmfuse.metrics._vqa_tables import ARTICLES, CONTRACTIONS, NUMBER_WORDS, PUNCTUATION
from mmfuse.metrics.rounding import official_aggregate, official_round, official_sum, py2_round

__all__ = [
    "answer_scores", "batch_vqa_accuracy", "majority_answer", "normalize_answer",
    "official_aggregate", "official_round", "official_sum", "py2_round", "vqa_accuracy",
]

# re.ASCII: the official patterns are Python 2 byte-string patterns, where \d matches [0-9] only.
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d", re.ASCII)
# Official: "(?!<=\d)(\.)(?!\d)". "(?!<=\d)" is a look-ahead for the literal "<=" and a digit; at a
# '.' it can never match, so the rule is "a '.' not followed by a digit".
_PERIOD = re.compile(r"\.(?!\d)", re.ASCII)
_MAX_PERIODS = 32  # official: periodStrip.sub("", text, re.UNICODE); that argument is count, == 32


def _clean(s: str) -> str:
    """The unconditional whitespace clean-up: ``\\n`` and ``\\t`` become spaces, then ``strip()``."""
    if "\n" in s or "\t" in s:  # (the test alone is cheaper than two no-op replaces)
        s = s.replace("\n", " ").replace("\t", " ")
    return s.strip()


def _lower_py2(s: str) -> str:
    """``unicode.lower()`` of Python 2: the simple one-to-one case mapping, character by character."""
    if s.isascii():
        return s.lower()
    # Per character there is no final-sigma context; U+0130 is the only full mapping longer than 1.
    return "".join("i" if c == "\u0130" else c.lower() for c in s)


def _process_punctuation(text: str) -> str:
    """Official ``processPunctuation`` (see :func:`normalize_answer`, rule 2)."""
    delete_all = _DIGIT_COMMA_DIGIT.search(text) is not None
    out = text
    for p in PUNCTUATION:
        if p in out:
            delete = delete_all or (p + " ") in text or (" " + p) in text
            out = out.replace(p, "" if delete else " ")
    return _PERIOD.sub("", out, count=_MAX_PERIODS)


def _process_digit_article(text: str) -> str:
    """Official ``processDigitArticle`` (see :func:`normalize_answer`, rule 3)."""
    words = []
    for word in _lower_py2(text).split():
        word = NUMBER_WORDS.get(word, word)
        if word not in ARTICLES:
            words.append(CONTRACTIONS.get(word, word))
    return " ".join(words)


@functools.lru_cache(maxsize=1 << 18)
def normalize_answer(s: str) -> str:
    """The official answer processing, in the official order (cached).

    1. Whitespace: ``\\n`` and ``\\t`` become spaces, then ``strip()``.
    2. Punctuation, for each of ``; / [ ] " { } ( ) = + \\ _ - > < @ ` , ? !``: every occurrence is
       deleted if the text from step 1 contains ``p + " "`` or ``" " + p``, or contains
       digit,comma,digit *anywhere* (a global test: ``"1,000-2,000"`` -> ``"10002000"``); otherwise
       every occurrence becomes a space (``"red-white"`` -> ``"red white"``, but ``"red - white"`` ->
       ``"red  white"``). Apostrophes, colons, ``*#$%&^~|`` and non-ASCII are untouched. Then the
       first 32 periods not followed by a digit are deleted: ``"2."`` -> ``"2"``, ``"u.s.a."`` ->
       ``"usa"``, ``"3.5"`` and ``".5"`` stay; the 33rd such period onwards is kept (the official
       code passes ``re.UNICODE == 32`` as ``count``). "Digit" means ASCII ``0-9`` only.
    3. ``lower()``, ``split()`` (runs of whitespace collapse), then per word: ``none``/``zero``..
       ``ten`` -> ``0``..``10``; the words ``a``, ``an``, ``the`` are dropped (so ``"a"`` -> ``""``);
       the official contractions table (``dont`` -> ``don't``; its keys ``Im``, ``Ive``, ``Id've``,
       ``I'dve`` contain upper case and never match; see ``_vqa_tables``). Joined by single spaces.

    Idempotent except when more than 32 periods are removable.
    """
    if not isinstance(s, str):
        raise TypeError(f"normalize_answer expects a str, got {type(s).__name__}: {s!r}")
    return _process_digit_article(_process_punctuation(_clean(s)))


def _leave_one_out(pred: str, gts: Sequence[str]) -> float:
    """Mean over i of ``min(1, #{j != i : gts[j] == pred} / 3)``, summed in the official order."""
    k = gts.count(pred)
    if k == 0 or k >= 4:  # every term is 0.0 (or 1.0): the official sum is exactly 0 (or len(gts))
        return 0.0 if k == 0 else 1.0
    total = 0.0
    for g in gts:
        total += min(1.0, (k - (g == pred)) / 3)
    return total / len(gts)


def _check_gts(gt_answers: Sequence[str], fn: str) -> None:
    if isinstance(gt_answers, str):
        raise TypeError(f"{fn}: gt_answers must be a sequence of strings, not one str: {gt_answers!r}")
    if len(gt_answers) == 0:
        raise ValueError(f"{fn}: gt_answers is empty; at least one ground-truth answer is needed")


def _accuracy(prediction: str, gt_answers: Sequence[str], as_metric: bool, fn: str) -> float:
    """:func:`vqa_accuracy` (``as_metric=False``) or the :class:`VQAAccuracy` per-sample score."""
    _check_gts(gt_answers, fn)
    if as_metric:
        prediction = normalize_answer(prediction)
    if len(gt_answers) == 1:
        return float(normalize_answer(prediction) == normalize_answer(gt_answers[0]))
    gts = [_clean(a) for a in gt_answers]
    if len(set(gts)) > 1:
        return _leave_one_out(normalize_answer(prediction), [normalize_answer(a) for a in gt_answers])
    pred = _clean(prediction)
    if as_metric and pred != gts[0] and normalize_answer(gts[0]) == pred:
        pred = gts[0]  # unanimous GT: credit the GT's own surface form
    return _leave_one_out(pred, gts)


def vqa_accuracy(prediction: str, gt_answers: Sequence[str]) -> float:
    """The official VQA accuracy of one (raw) prediction, in [0, 1].

    1. Whitespace clean-up of the prediction and of every answer, always.
    2. Unanimity gate: only if the cleaned answers are not all identical are the prediction and
       every answer fully normalised (:func:`normalize_answer`). Unanimous answers are compared
       verbatim: ``"Yes"`` or ``"yes."`` scores 0 against 10 x ``"yes"``.
    3. Leave-one-out by position: annotator i scores ``min(1, #{j != i : gt_j == pred} / 3)``;
       the result is the mean over annotators. With 10 answers, k matching -> 0, .3, .6, .9, 1
       (not the naive ``min(1, k/3)``). Fewer than 10 answers use the same formula over the n
       given (n = 2, both matching -> 1/3), except that with exactly one answer (where the formula
       is always 0) the result is 1.0 if both sides normalise to the same string, else 0.0.

    Raises:
        ValueError: ``gt_answers`` is empty (the official code would divide by zero).
    """
    return _accuracy(prediction, gt_answers, False, "vqa_accuracy")


def batch_vqa_accuracy(predictions: Sequence[str], gt_answers: Sequence[Sequence[str]]) -> list[float]:
    """Per-sample scores exactly as :class:`VQAAccuracy` computes them (predictions normalised)."""
    if len(predictions) != len(gt_answers):
        raise ValueError(f"{len(predictions)} predictions but {len(gt_answers)} gt_answers lists")
    return [_accuracy(p, g, True, "VQA scoring") for p, g in zip(predictions, gt_answers)]


def answer_scores(gt_answers: Sequence[str]) -> dict[str, float]:
    """Soft training targets: ``{normalize_answer(a): score}`` over the distinct GT answers, score > 0.

    The score of a candidate ``c`` is what :class:`VQAAccuracy` gives a model that predicts ``c``
    (``batch_vqa_accuracy([c], [gt_answers])[0]``), so training targets and the metric agree. With
    10 answers, k matching -> 0, .3, .6, .9, 1. Unanimous, un-normalised GT (10 x ``"Yes"``) gives
    ``{"yes": 1.0}``: ``vqa_accuracy("yes", ...)`` would be 0, but the metric credits a prediction
    that normalises to the same string as the unanimous answer.
    """
    _check_gts(gt_answers, "answer_scores")
    scores: dict[str, float] = {}
    for c in map(normalize_answer, gt_answers):
        if c not in scores:
            scores[c] = _accuracy(c, gt_answers, True, "answer_scores")
    return {c: s for c, s in scores.items() if s > 0.0}


def majority_answer(gt_answers: Sequence[str]) -> str | None:
    """The normalised answer given by most annotators; a tie goes to the one given first; None when there is
    no answer. The single source of "the" answer of a question (generation targets, exact-match reward,
    the ``gold`` column of results)."""
    counts = Counter(normalize_answer(a) for a in gt_answers)
    return max(counts, key=counts.__getitem__) if counts else None  # max keeps the first of equal counts
