"""Synthetic VQAv2-like results and annotations, for scorer tests and the scorer benchmark.

:func:`synthetic_vqa` draws questions with 10 annotator answers each, shaped like VQAv2 val:
answer types yes/no (38%) / number (12%) / other (50%); 65 question types (the 64 prefixes of
GT-Vision-Lab/VQA ``QuestionTypes/mscoco_question_types.txt`` plus ``"none of the above"``); a
Zipf-ish vocabulary of a few thousand answers; about 40% of questions whose 10 answers are
identical; raw answer variants that the official normalisation changes (case, trailing periods,
number words, articles, ``1,000``, hyphens, contractions, stray whitespace). Predictions agree
with anywhere from 0 to 10 annotators and are sometimes raw variants too. Deterministic for a
given ``(n_questions, seed)``.
"""

from __future__ import annotations

import collections
import itertools
import json
import random
from pathlib import Path

__all__ = ["QUESTION_TYPES", "synthetic_vqa", "write_official_files"]

#: The 64 COCO question-type prefixes of the official repository (``QuestionTypes/mscoco_question_types.txt``);
#: VQAv2 annotations use these plus ``"none of the above"``.
QUESTION_TYPES: tuple[str, ...] = (
    "how many", "is the", "what", "what color is the", "what is the", "is this", "is this a",
    "what is", "are the", "what kind of", "is there a", "what type of", "is it", "what are the",
    "where is the", "is there", "does the", "what color are the", "are these", "are there", "which",
    "is", "what is the man", "is the man", "are", "how", "does this", "what is on the",
    "what does the", "how many people are", "what is in the", "what is this", "do", "what are",
    "are they", "what time", "what sport is", "are there any", "is he", "what color is", "why",
    "where are the", "what color", "who is", "what animal is", "is the woman", "is this an",
    "do you", "how many people are in", "what room is", "has", "is this person",
    "what is the woman", "can you", "why is the", "is the person", "what is the color of the",
    "what is the person", "could", "was", "is that a", "what number is", "what is the name",
    "what brand",
)
_YES_NO_STARTS = ("is", "are", "does", "do", "can", "could", "was", "has")
_NUMBER_TYPES = ("how many", "how many people are", "how many people are in", "what number is")

_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
_COLORS = ("white", "black", "red", "blue", "green", "brown", "yellow", "gray", "orange", "pink",
           "silver", "purple", "tan", "beige", "gold", "black and white", "red and white", "blue and white")
_NOUNS = ("dog", "cat", "man", "woman", "frisbee", "tennis", "baseball", "skateboard", "surfboard",
          "pizza", "kite", "train", "bus", "plane", "table", "kitchen", "bathroom", "grass", "snow",
          "water", "sky", "tree", "horse", "giraffe", "elephant", "zebra", "bear", "cow", "sheep",
          "umbrella", "hat", "shirt", "t-shirt", "hot dog", "banana", "apple", "orange", "sandwich",
          "cake", "donut", "phone", "laptop", "clock", "sign", "street", "beach", "park", "bed",
          "couch", "chair", "toilet", "sink", "car", "truck", "bike", "motorcycle", "boat", "bird",
          "tie", "glasses", "helmet", "wetsuit", "jacket", "left", "right", "nike", "wii", "soccer")
_ADJECTIVES = ("big", "small", "old", "new", "wooden", "metal", "plastic", "stone", "dirty", "clean",
               "open", "closed", "tall", "short", "young", "empty", "wet", "dry", "striped", "round")
_PHRASES = ("don't know", "can't tell", "it's raining", "o'clock", "they're playing", "he's eating",
            "not sure", "eating", "sitting", "standing", "playing tennis", "flying kite", "sunny",
            "cloudy", "daytime", "night", "10:30", "3.5", "1,000", "u.s.a.", "mr. t")
# Raw forms that normalise to the canonical answer (or, for contractions, to the table's target).
_CONTRACTED = {"don't know": "dont know", "can't tell": "cant tell", "it's raining": "its raining",
               "o'clock": "oclock", "they're playing": "theyre playing"}


def _vocabulary(rng: random.Random) -> dict[str, list[str]]:
    """Per answer type, canonical answers in Zipf rank order (a few thousand for ``other``)."""
    combos = [f"{a} {n}" for a, n in itertools.product(_ADJECTIVES, _NOUNS)]
    combos += [f"{c} {n}" for c, n in itertools.product(_COLORS, _NOUNS)]
    rng.shuffle(combos)
    other = list(_COLORS) + list(_NOUNS) + list(_PHRASES) + combos
    numbers = [str(i) for i in range(21)] + ["25", "30", "50", "100", "1000", "2000"]
    return {"yes/no": ["yes", "no"], "number": numbers, "other": other}


def _zipf_weights(n: int, s: float = 1.1) -> list[float]:
    return list(itertools.accumulate(1.0 / (r + 1) ** s for r in range(n)))


def _raw_variant(ans: str, rng: random.Random) -> str:
    """A raw spelling of ``ans`` as an annotator or a model might write it."""
    kind = rng.randrange(9)
    if kind == 0:
        return ans.capitalize()
    if kind == 1:
        return ans + "."
    if kind == 2 and ans.isdigit() and int(ans) <= 10:
        return _NUMBER_WORDS[int(ans)]
    if kind == 2 and ans.isdigit() and int(ans) >= 1000:
        return f"{int(ans):,}"
    if kind == 3 and not ans.isdigit():
        return rng.choice(("a ", "the ", "an ")) + ans
    if kind == 4 and " " in ans:
        return ans.replace(" ", "-")
    if kind == 5 and ans in _CONTRACTED:
        return _CONTRACTED[ans]
    if kind == 6:
        return rng.choice((" ", "\t", "")) + ans + rng.choice(("\n", " ", "!"))
    if kind == 7:
        return ans.upper()
    return ans


def synthetic_vqa(n_questions: int, seed: int = 0) -> tuple[dict[int, str], dict[int, dict]]:
    """``(results, annotations)`` for ``n_questions`` VQAv2-like questions.

    ``results`` maps question_id -> prediction; ``annotations`` maps question_id ->
    ``{"answers": [10 raw strings], "answer_type", "question_type", "image_id", "question"}``
    (the format of :func:`mmfuse.metrics.official_format.load_annotations`).
    """
    rng = random.Random(seed)
    vocab = _vocabulary(rng)
    cum = {t: _zipf_weights(len(v)) for t, v in vocab.items()}
    qtypes = {"yes/no": [q for q in QUESTION_TYPES if q.split()[0] in _YES_NO_STARTS],
              "number": list(_NUMBER_TYPES)}
    qtypes["other"] = [q for q in QUESTION_TYPES if q not in qtypes["yes/no"] and q not in _NUMBER_TYPES]
    for t in qtypes.values():
        t.append("none of the above")
    qcum = {t: _zipf_weights(len(v), 0.8) for t, v in qtypes.items()}
    results: dict[int, str] = {}
    annotations: dict[int, dict] = {}
    for i in range(n_questions):
        atype = rng.choices(("yes/no", "number", "other"), cum_weights=(38, 50, 100))[0]
        words = vocab[atype]
        qtype = rng.choices(qtypes[atype], cum_weights=qcum[atype])[0]
        truth = rng.choices(words, cum_weights=cum[atype])[0]
        if rng.random() < 0.4:  # unanimous; now and then in a raw spelling
            answers = [_raw_variant(truth, rng) if rng.random() < 0.05 else truth] * 10
            others = [w for w in rng.choices(words, cum_weights=cum[atype], k=2) if w != truth]
        else:
            others = [w for w in rng.choices(words, cum_weights=cum[atype], k=3) if w != truth] or ["none"]
            n_truth = rng.choices(range(10), weights=(2, 4, 5, 6, 7, 8, 9, 10, 12, 14))[0]
            answers = [truth] * n_truth + [rng.choice(others) for _ in range(10 - n_truth)]
            answers = [_raw_variant(a, rng) if rng.random() < 0.12 else a for a in answers]
            rng.shuffle(answers)
        r = rng.random()
        pred = truth if r < 0.45 else rng.choice(answers) if r < 0.75 else rng.choice(others or words)
        if rng.random() < 0.1:
            pred = _raw_variant(pred, rng)
        image_id = 100_000 + (i // 5) * 7
        qid = image_id * 1000 + i % 5
        results[qid] = pred
        annotations[qid] = {"answers": answers, "answer_type": atype, "question_type": qtype,
                            "image_id": image_id, "question": f"{qtype} {rng.choice(_NOUNS)}?"}
    return results, annotations


def write_official_files(
    results: dict[int, str], annotations: dict[int, dict], directory: str | Path
) -> tuple[Path, Path, Path]:
    """Write ``results.json``, ``annotations.json`` and ``questions.json`` in the official VQAv2 formats.

    Returns the three paths, in that order (the argument order of ``tools/score.py``).
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    anns = [{"question_id": q, "image_id": a["image_id"], "question_type": a["question_type"],
             "answer_type": a["answer_type"],
             "multiple_choice_answer": collections.Counter(a["answers"]).most_common(1)[0][0],
             "answers": [{"answer": s, "answer_confidence": "yes", "answer_id": i + 1}
                         for i, s in enumerate(a["answers"])]} for q, a in annotations.items()]
    ques = [{"question_id": q, "image_id": a["image_id"], "question": a["question"]} for q, a in annotations.items()]
    paths = d / "results.json", d / "annotations.json", d / "questions.json"
    payloads = ([{"question_id": q, "answer": p} for q, p in results.items()],
                {"data_subtype": "synthetic", "annotations": anns}, {"data_subtype": "synthetic", "questions": ques})
    for path, payload in zip(paths, payloads):
        path.write_text(json.dumps(payload), encoding="utf-8")
    return paths
