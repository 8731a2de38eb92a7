"""A procedural video-QA benchmark whose answers need time (``tools/make_video_qa.py``).

Each video is ``num_frames`` frames (default 16) of ``size``×``size`` px (default 32): coloured shapes
(circle, square, triangle in red, green, blue, yellow) on a grey background. Events are aligned to
*beats* of ``num_frames // 8`` frames, so a clip of 8 frames, one per beat, sees every event. Four
kinds of video, drawn with equal probability, give six question types:

==================  =========================================================  ==========================
question_type       question (answer)                                          what a model must see
==================  =========================================================  ==========================
``direction``       which way does the red circle move? (left/right/up/down)   position across time
``order``           which shape appears first / last? (a shape)                which of two comes first
``count``           how many times does the blue square flash? (1-4)           on/off transitions
``colour_change``   what color does the triangle turn into? / what color is     the order of two colours
                    the triangle before it changes? (a colour)
``colour``          what color is the moving shape? (a colour)                 any single frame
``shape``           what shape is moving? (a shape)                            any single frame
==================  =========================================================  ==========================

Mean pooling over frames cannot answer ``direction``, ``order`` or ``colour_change`` above chance:
reversing a video gives the same set of frames and the opposite answer (flashes in ``order`` each
appear and disappear, so neither frame set reveals which came first). ``count`` is partly visible
to it (the share of frames with the shape on), since flashes last one or two beats. ``colour`` and
``shape`` are the single-frame controls.

Everything is drawn from ``random.Random(seed)``: the same seed writes the same videos and questions.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 225), "yellow": (235, 200, 30)}
SHAPES = ("circle", "square", "triangle")
DIRECTIONS = ("left", "right", "up", "down")
BACKGROUND = (225, 225, 225)
QUESTION_TYPES = ("direction", "order", "count", "colour_change", "colour", "shape")
ANSWER_TYPES = {"direction": "direction", "order": "shape", "count": "number", "colour_change": "color",
                "colour": "color", "shape": "shape"}
SCALE = 4  # shapes are drawn at 4x and downsampled: smooth edges a small ViT can read


def _draw(canvas: ImageDraw.ImageDraw, shape: str, colour: str, cx: float, cy: float, r: float) -> None:
    c, s = COLOURS[colour], SCALE
    x, y, r = cx * s, cy * s, r * s
    if shape == "circle":
        canvas.ellipse((x - r, y - r, x + r, y + r), fill=c)
    elif shape == "square":
        h = r * 0.85  # same area as the circle, roughly
        canvas.rectangle((x - h, y - h, x + h, y + h), fill=c)
    else:
        canvas.polygon([(x, y - r), (x + r, y + r * 0.8), (x - r, y + r * 0.8)], fill=c)


def render(size: int, objects: Sequence[tuple[str, str, float, float, float]]) -> np.ndarray:
    """One frame ``[size, size, 3]`` uint8 with ``(shape, colour, cx, cy, radius)`` objects drawn in order."""
    img = Image.new("RGB", (size * SCALE, size * SCALE), BACKGROUND)
    canvas = ImageDraw.Draw(img)
    for obj in objects:
        _draw(canvas, *obj)
    return np.asarray(img.resize((size, size), Image.Resampling.BOX), dtype=np.uint8)


def write_mp4(path: Path, frames: Sequence[np.ndarray], fps: int = 8) -> None:
    """Write ``[H, W, 3]`` uint8 frames as an H.264 mp4 (yuv420p, near-lossless CRF 12, one thread:
    byte-identical output for identical frames)."""
    import av

    h, w = frames[0].shape[:2]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": "12"}
        stream.codec_context.thread_count = 1  # x264 with frame threads is not byte-deterministic
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


Scene = tuple[list[np.ndarray], list[tuple[str, str, str]]]  # frames, [(question, answer, question_type)]


def _motion(rng: random.Random, size: int, n: int, r: float) -> Scene:
    shape, colour, d = rng.choice(SHAPES), rng.choice(list(COLOURS)), rng.choice(DIRECTIONS)
    lo, hi = r + 1.0, size - r - 1.0
    travel = rng.uniform(0.6, 1.0) * (hi - lo)  # at least 60% of the frame: the motion is plain to see
    start = rng.uniform(lo, hi - travel)
    cross = rng.uniform(lo, hi)
    frames = []
    for t in range(n):
        p = start + travel * t / (n - 1)
        along = p if d in ("right", "down") else size - p  # left/up run the same path backwards
        cx, cy = (along, cross) if d in ("left", "right") else (cross, along)
        frames.append(render(size, [(shape, colour, cx, cy, r)]))
    return frames, [(f"which way does the {colour} {shape} move?", d, "direction"),
                    ("what color is the moving shape?", colour, "colour"),
                    ("what shape is moving?", shape, "shape")]


def _spans(rng: random.Random, k: int, beats: int) -> list[tuple[int, int]]:
    """``k`` flashes of 1-2 beats with gaps of >= 1 beat inside ``beats`` beats: [(on, off)] in beats."""
    while True:
        lengths = [rng.choice((1, 2)) for _ in range(k)]
        free = beats - sum(lengths) - (k - 1)
        if free >= 0:
            break
    extra = [0] * (k + 1)  # spare beats spread over the k+1 gaps (before, between, after)
    for _ in range(free):
        extra[rng.randrange(k + 1)] += 1
    spans, t = [], extra[0]
    for i, ln in enumerate(lengths):
        spans.append((t, t + ln))
        t += ln + 1 + extra[i + 1]
    return spans


def _place(rng: random.Random, size: int, r: float) -> tuple[float, float]:
    return rng.uniform(r + 1, size - r - 1), rng.uniform(r + 1, size - r - 1)


def _order(rng: random.Random, size: int, n: int, r: float) -> Scene:
    first, second = rng.sample(SHAPES, 2)
    objs = [(first, rng.choice(list(COLOURS)), *_place(rng, size, r), r),
            (second, rng.choice(list(COLOURS)), *_place(rng, size, r), r)]
    spans = _spans(rng, 2, 8)
    beat = n // 8
    frames = [render(size, [o for o, (on, off) in zip(objs, spans) if on <= t // beat < off]) for t in range(n)]
    return frames, [("which shape appears first?", first, "order"), ("which shape appears last?", second, "order")]


def _count(rng: random.Random, size: int, n: int, r: float) -> Scene:
    shape, colour, k = rng.choice(SHAPES), rng.choice(list(COLOURS)), rng.randint(1, 4)
    obj = (shape, colour, *_place(rng, size, r), r)
    spans, beat = _spans(rng, k, 8), n // 8
    frames = [render(size, [obj] if any(on <= t // beat < off for on, off in spans) else []) for t in range(n)]
    return frames, [(f"how many times does the {colour} {shape} flash?", str(k), "count"),
                    ("what color is the flashing shape?", colour, "colour"),
                    ("what shape flashes?", shape, "shape")]


def _colour_change(rng: random.Random, size: int, n: int, r: float) -> Scene:
    shape = rng.choice(SHAPES)
    before, after = rng.sample(list(COLOURS), 2)
    cx, cy = _place(rng, size, r)
    change = rng.randint(2, 6) * (n // 8)  # the first frame of the new colour
    frames = [render(size, [(shape, before if t < change else after, cx, cy, r)]) for t in range(n)]
    return frames, [(f"what color does the {shape} turn into?", after, "colour_change"),
                    (f"what color is the {shape} before it changes?", before, "colour_change"),
                    ("what shape changes color?", shape, "shape")]


SCENES: dict[str, Callable[[random.Random, int, int, float], Scene]] = {
    "motion": _motion, "order": _order, "count": _count, "colour_change": _colour_change}


def make_video_qa(out: Path, num_videos: dict[str, int] | None = None, seed: int = 0, size: int = 32,
                  num_frames: int = 16, fps: int = 8, progress: Callable[[str, int, int], None] | None = None,
                  question_types: Sequence[str] | None = None) -> dict[str, Any]:
    """Write ``out/videos/<split>_<i>.mp4`` and ``out/{train,val,test}.jsonl`` (the JSONL video format).

    Args:
        out: output folder.
        num_videos: videos per split (default ``{"train": 3000, "val": 300, "test": 1000}``).
        seed: everything is drawn from ``random.Random(seed)``.
        size: frame width and height in px (even: H.264 needs it).
        num_frames: frames per video, a multiple of 8 (8 beats).
        fps: frame rate written in the file.
        progress: optional ``(split, done, total)`` callback.
        question_types: keep only questions of these types (None: all), e.g. ``["direction"]`` for a probe of
            one skill. The videos, their order and every kept line (question ids included) are those of the full
            benchmark with the same seed; only videos with a kept question are written.

    Returns:
        A summary: files written and question counts per split and type (also ``out/summary.json``).
    """
    if num_frames % 8 or num_frames < 8:
        raise ValueError(f"num_frames must be a positive multiple of 8 (8 beats), got {num_frames}")
    if size % 2 or size < 16:
        raise ValueError(f"size must be even and >= 16, got {size}")
    counts = num_videos or {"train": 3000, "val": 300, "test": 1000}
    unknown = sorted(set(question_types or ()) - set(QUESTION_TYPES))
    if unknown or (question_types is not None and not question_types):
        raise ValueError(f"unknown question types {unknown or '(none given)'}; valid: {', '.join(QUESTION_TYPES)}")
    keep = set(question_types or QUESTION_TYPES)
    rng = random.Random(seed)
    out = Path(out)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    radius = size * 0.2
    summary: dict[str, Any] = {"seed": seed, "size": size, "num_frames": num_frames, "fps": fps, "splits": {}}
    if question_types is not None:
        summary["question_types"] = sorted(keep)
    qid = 0
    for split, total in counts.items():
        lines, per_type, written = [], dict.fromkeys(QUESTION_TYPES, 0), 0
        for i in range(total):
            kind = rng.choice(list(SCENES))
            frames, qas = SCENES[kind](rng, size, num_frames, radius)
            name = f"videos/{split}_{i:05d}.mp4"
            if any(qtype in keep for _, _, qtype in qas):
                write_mp4(out / name, frames, fps)
                written += 1
            for question, answer, qtype in qas:
                if qtype not in keep:
                    qid += 1  # the ids stay those of the full benchmark
                    continue
                lines.append({"question_id": qid, "video": name, "question": question, "answers": [answer] * 10,
                              "answer_type": ANSWER_TYPES[qtype], "question_type": qtype, "image_id": name})
                per_type[qtype] += 1
                qid += 1
            if progress is not None:
                progress(split, i + 1, total)
        (out / f"{split}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
        summary["splits"][split] = {"videos": written, "questions": len(lines),
                                    "per_question_type": {k: v for k, v in per_type.items() if k in keep}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
