"""Sort-of-CLEVR (Santoro et al. 2017, "A simple neural network module for relational reasoning", §5.3).

Each image is 75×75 RGB on a white background (as in the common public reimplementation) with six
objects, one of each colour red, green, blue, orange, gray, yellow; each is a square or a circle
(a fair coin per object) of ``size`` px (11: the square's side, the circle's diameter), centred on the
integer pixel ``center = [x, y]`` (x to the right, y down). Twenty questions per image, each naming an
object by its colour: ten non-relational, ten relational, their type and colour drawn uniformly:

=================  ===============================================================  ==================
question_type      question (answer)                                                answer_type
=================  ===============================================================  ==================
``shape``          what is the shape of the red object? (square / circle)           non-relational
``horizontal``     is the red object on the left or right of the image? (x < W/2)   non-relational
``vertical``       is the red object on the top or bottom of the image? (y < H/2)   non-relational
``closest``        what is the shape of the object closest to the red object?       relational
``furthest``       what is the shape of the object furthest from the red object?    relational
``count``          how many objects have the same shape as the red object? (1-6)    relational
=================  ===============================================================  ==================

Scenes are rejection-sampled so that every answer is plain to see (a deviation from the original,
whose scenes only keep centres 10 px apart): centres are at least ``min_distance`` (16) px apart, so
no two objects overlap or touch; for every object its nearest other object is at least ``margin``
(1.1×) closer than the second nearest and its furthest at least ``margin`` further than the second
furthest, so ``closest``/``furthest`` never tie and need no tie-break; no centre lies within
``middle_gap`` (2) px of the image's middle lines, so left/right and top/bottom are never a pixel's
call. Positions are drawn independently of the shapes, so the constraints leak no answer.

Opt-in, a sequence question (``colour_order=True``, ``--colour-order``), written to its own files
``order_<split>.jsonl`` so the twenty questions' files stay byte-identical: one per image, "what are the
colors of the objects from left to right?", answered by the six colour words in order of the centres' x
(``red blue gray green orange yellow``: 6 words + EOS for the answer generator), ``question_type``
``colour_order``, ``answer_type`` ``sequence``. Equal x is common (about one image in five) and is broken
by y, the upper object first (reading order); two centres never share a pixel (``min_distance``), so
the order is total. With ``noise=p`` (``--noisy p``) each such question instead gets ``annotators``
answers (default 10) of which exactly ``round(p * annotators)``, at random positions, are the order with
one adjacent pair swapped (the pair uniform among the five): annotators misjudging two neighbours, as
``easy_vqa_noisy`` replaces whole answers. A generator taught on one random annotator answer then
samples such swaps, which RL with the ``position_accuracy`` reward (per-position partial credit) can
unlearn; while fewer than half of the answers are corrupted, the true order is every question's majority.

Randomness: image ``i`` of split ``s`` is drawn from ``numpy.random.default_rng([seed, SPLITS.index(s),
i])``, so a split's first images are the same whatever the counts, and the files are byte-identical
for a seed (PNG at a fixed compression level, no metadata; JSON keys in a fixed order). The annotator
noise of image ``i``'s order question has its own stream (``random.Random(f"{seed}/{s}/{i}/colour_order")``),
so it never changes a scene or a question of the twenty.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from mmfuse.errors import DataError

__all__ = ["ANSWER_TYPES", "COLORS", "ORDER_QUESTION", "QUESTIONS", "SHAPES", "SPLITS", "Question", "SceneObject",
           "answer", "colours_left_to_right", "make_image", "make_questions", "noisy_orders", "render_scene",
           "sample_scene"]

IMAGE_SIZE = 75
OBJECT_SIZE = 11
BACKGROUND = (255, 255, 255)
COLORS: dict[str, tuple[int, int, int]] = {  # the reimplementation's colours, in RGB
    "red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255),
    "orange": (255, 156, 0), "gray": (128, 128, 128), "yellow": (255, 255, 0)}
SHAPES = ("square", "circle")
SPLITS = ("train", "val", "test")
QUESTIONS: dict[str, str] = {
    "shape": "what is the shape of the {} object?",
    "horizontal": "is the {} object on the left or right of the image?",
    "vertical": "is the {} object on the top or bottom of the image?",
    "closest": "what is the shape of the object closest to the {} object?",
    "furthest": "what is the shape of the object furthest from the {} object?",
    "count": "how many objects have the same shape as the {} object?",
}
ANSWER_TYPES: dict[str, str] = {"shape": "non-relational", "horizontal": "non-relational",
                                "vertical": "non-relational", "closest": "relational", "furthest": "relational",
                                "count": "relational"}
QUESTIONS_PER_KIND = 10  # per image: 10 non-relational + 10 relational
PNG_COMPRESS_LEVEL = 6   # fixed, so the same pixels always give the same bytes
_BATCH = 1024            # candidate scenes per rejection round (about 0.15% pass with the defaults)
ORDER_QUESTION = "what are the colors of the objects from left to right?"
ORDER_TYPE, ORDER_ANSWER_TYPE = "colour_order", "sequence"
ANNOTATORS = 10          # answers per colour_order question when noisy, as easy_vqa_noisy


@dataclass(frozen=True)
class SceneObject:
    """One object: ``color`` (a key of :data:`COLORS`), ``shape`` (``square`` / ``circle``), ``center``
    ``(x, y)`` (integer pixel indices, x right, y down) and ``size`` (side / diameter in px, odd)."""

    color: str
    shape: str
    center: tuple[int, int]
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"color": self.color, "shape": self.shape, "center": list(self.center), "size": self.size}


@dataclass(frozen=True)
class Question:
    """One question about a scene, with its single answer."""

    question: str
    answer: str
    question_type: str
    answer_type: str


def _allowed_coordinates(image_size: int, size: int, middle_gap: float) -> np.ndarray:
    """Centre coordinates that keep the object inside the image and away from the middle line (pixel
    ``c`` covers [c, c+1), so its middle is c + 0.5 and the image's middle is image_size / 2)."""
    half = size // 2
    c = np.arange(half, image_size - half)
    return c[np.abs(c + 0.5 - image_size / 2) >= middle_gap]


def _check_geometry(image_size: int, size: int, min_distance: float, margin: float) -> None:
    if size < 1 or size % 2 == 0:
        raise DataError(f"Sort-of-CLEVR object size must be an odd number of pixels >= 1, got {size}")
    if min_distance < size * 2**0.5:  # squares closer than a diagonal could overlap
        raise DataError(f"Sort-of-CLEVR min_distance must be >= size * sqrt(2) = {size * 2**0.5:.2f} px so objects "
                        f"cannot overlap, got {min_distance}")
    if margin < 1.0:
        raise DataError(f"Sort-of-CLEVR margin must be >= 1 (a distance ratio), got {margin}")
    if image_size < 4 * size:
        raise DataError(f"Sort-of-CLEVR image_size must be >= 4 * size = {4 * size} px, got {image_size}")


def sample_scene(rng: np.random.Generator, image_size: int = IMAGE_SIZE, size: int = OBJECT_SIZE,
                 min_distance: float = 16.0, margin: float = 1.1, middle_gap: float = 2.0,
                 max_rounds: int = 1000) -> list[SceneObject]:
    """Six objects, one per colour in :data:`COLORS` order, placed under the module's rules.

    Shapes first (a coin per object), then batches of :data:`_BATCH` candidate centre sets until one
    passes: the whole-batch test is vectorised, the first passing candidate is taken.

    Raises:
        DataError: impossible geometry, or no scene found in ``max_rounds`` rounds (names the settings).
    """
    _check_geometry(image_size, size, min_distance, margin)
    n = len(COLORS)
    shapes = [SHAPES[int(k)] for k in rng.integers(0, 2, size=n)]
    coords = _allowed_coordinates(image_size, size, middle_gap)
    eye = np.eye(n, dtype=bool)
    for _ in range(max_rounds):
        c = rng.choice(coords, size=(_BATCH, n, 2))  # [K, 6, 2]
        diff = c[:, :, None, :] - c[:, None, :, :]
        d2 = (diff * diff).sum(-1)  # [K, 6, 6] squared distances: exact integers, so no float ties
        ok = np.where(eye, np.iinfo(d2.dtype).max, d2).min(axis=(1, 2)) >= min_distance**2
        others = np.sort(np.where(eye, -1, d2), axis=2)[:, :, 1:]  # [K, 6, 5] to the 5 others, ascending
        m2 = margin**2
        ok &= (others[:, :, 1] >= m2 * others[:, :, 0]).all(1) & (others[:, :, 4] >= m2 * others[:, :, 3]).all(1)
        hits = np.flatnonzero(ok)
        if hits.size:
            best = c[hits[0]]
            return [SceneObject(color, shape, (int(x), int(y)), size)
                    for color, shape, (x, y) in zip(COLORS, shapes, best)]
    raise DataError(f"no Sort-of-CLEVR scene found in {max_rounds * _BATCH} candidates with image_size={image_size}, "
                    f"size={size}, min_distance={min_distance}, margin={margin}; relax min_distance or margin")


def render_scene(objects: Sequence[SceneObject], image_size: int = IMAGE_SIZE) -> Image.Image:
    """The scene as an RGB ``image_size``×``image_size`` PIL image: each object covers the pixels
    ``center ± size // 2`` (its bounding box), filled, without antialiasing (exactly its colour)."""
    img = Image.new("RGB", (image_size, image_size), BACKGROUND)
    draw = ImageDraw.Draw(img)
    for o in objects:
        h = o.size // 2
        box = (o.center[0] - h, o.center[1] - h, o.center[0] + h, o.center[1] + h)  # inclusive corners
        (draw.rectangle if o.shape == "square" else draw.ellipse)(box, fill=COLORS[o.color])
    return img


def answer(objects: Sequence[SceneObject], color: str, question_type: str, image_size: int = IMAGE_SIZE) -> str:
    """The answer to the ``question_type`` question about the ``color`` object (see the module table)."""
    by_color = {o.color: o for o in objects}
    if color not in by_color:
        raise DataError(f"no {color!r} object in the scene; it has {', '.join(by_color)}")
    me = by_color[color]
    if question_type == "shape":
        return me.shape
    if question_type == "horizontal":
        return "left" if me.center[0] < image_size / 2 else "right"
    if question_type == "vertical":
        return "top" if me.center[1] < image_size / 2 else "bottom"
    if question_type == "count":
        return str(sum(o.shape == me.shape for o in objects))
    if question_type in ("closest", "furthest"):
        others = [o for o in objects if o is not me]
        d2 = [(o.center[0] - me.center[0]) ** 2 + (o.center[1] - me.center[1]) ** 2 for o in others]
        pick = min if question_type == "closest" else max  # sample_scene rules out ties (margin)
        return others[d2.index(pick(d2))].shape
    raise DataError(f"unknown Sort-of-CLEVR question_type {question_type!r}; valid: {', '.join(QUESTIONS)}")


def colours_left_to_right(objects: Sequence[SceneObject]) -> list[str]:
    """The colours from left to right: by centre x, equal x by centre y (the upper object first)."""
    return [o.color for o in sorted(objects, key=lambda o: (o.center[0], o.center[1]))]


def noisy_orders(order: Sequence[str], annotators: int, noise: float, rng: random.Random) -> tuple[str, ...]:
    """``annotators`` answers ``" ".join(order)``, ``round(noise * annotators)`` of them (at positions drawn
    from ``rng``) with one adjacent pair of words swapped, the pair drawn uniformly for each."""
    answers = [" ".join(order)] * annotators
    for pos in rng.sample(range(annotators), round(noise * annotators)):
        i = rng.randrange(len(order) - 1)
        words = list(order)
        words[i], words[i + 1] = words[i + 1], words[i]
        answers[pos] = " ".join(words)
    return tuple(answers)


def make_questions(objects: Sequence[SceneObject], rng: np.random.Generator, image_size: int = IMAGE_SIZE,
                   per_kind: int = QUESTIONS_PER_KIND) -> list[Question]:
    """``per_kind`` non-relational then ``per_kind`` relational questions, each type and colour uniform."""
    out: list[Question] = []
    for kind in ("non-relational", "relational"):
        types = [t for t, k in ANSWER_TYPES.items() if k == kind]
        for _ in range(per_kind):
            qtype = types[int(rng.integers(len(types)))]
            color = objects[int(rng.integers(len(objects)))].color
            out.append(Question(QUESTIONS[qtype].format(color), answer(objects, color, qtype, image_size),
                                qtype, kind))
    return out


def make_image(seed: int, split: str, index: int) -> tuple[list[SceneObject], list[Question]]:
    """Scene and questions of image ``index`` of ``split``, from its own generator (see the module doc)."""
    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    objects = sample_scene(rng)
    return objects, make_questions(objects, rng)
