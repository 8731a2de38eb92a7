"""COCO-like data in the official VQAv2 layout for tools/benchmark_data.py: 640x480 JPEGs of coloured shapes
with photographic grain (the size and entropy of COCO's photos), about 5 questions each."""

from __future__ import annotations

import json
import multiprocessing as mp
import random
from pathlib import Path
from typing import Any

COLORS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 70, 220), "yellow": (230, 210, 40),
          "white": (245, 245, 245), "black": (20, 20, 20)}
SHAPES = ("box", "ball")
SIZE = (640, 480)
GRAIN = 20.0  # photographic grain (see _image)


def _image(args: tuple[str, int, int]) -> list[dict[str, Any]]:
    """Draw one 640x480 JPEG (gradient background, 1-4 shapes, photographic grain) and return its questions.

    The grain (Gaussian, sigma ``GRAIN``) gives the file a photo's entropy: about 150 KB at quality 90, near
    COCO's average (train2014: 13 GB for 82,783 images). Without it a flat drawing compresses to ~8 KB and
    decodes in a fraction of a photo's time, which would flatter every decoder and hide what JPEG decoding
    costs at scale.
    """
    import numpy as np
    from PIL import Image, ImageDraw

    path, image_id, seed = args
    rng = random.Random(seed)
    top, bottom = rng.randrange(60, 200), rng.randrange(60, 200)
    im = Image.linear_gradient("L").resize(SIZE).point(lambda v: top + (bottom - top) * v // 255).convert("RGB")
    draw = ImageDraw.Draw(im)
    shapes = []
    for _ in range(rng.randint(1, 4)):
        color, shape = rng.choice(list(COLORS)), rng.choice(SHAPES)
        x, y, w, h = rng.randrange(0, 520), rng.randrange(0, 360), rng.randrange(40, 120), rng.randrange(40, 120)
        (draw.ellipse if shape == "ball" else draw.rectangle)((x, y, x + w, y + h), fill=COLORS[color])
        shapes.append((color, shape))
    grain = np.random.default_rng(seed).normal(0.0, GRAIN, (SIZE[1], SIZE[0], 3))  # [H, W, 3]
    im = Image.fromarray(np.clip(np.asarray(im, dtype=np.float64) + grain, 0, 255).astype(np.uint8))
    im.save(path, quality=90)
    color, shape = shapes[0]
    absent = rng.choice([c for c in COLORS if c not in {c for c, _ in shapes}] or ["purple"])
    qas = [(f"what color is the {shape}?", color, "other"), ("how many shapes are there?", str(len(shapes)), "number"),
           (f"is there a {color} {shape}?", "yes", "yes/no"), (f"is there a {absent} shape?", "no", "yes/no"),
           (f"what shape is {color}?", shape, "other"), ("is there a ball?", "yes" if any(s == "ball" for _, s in
                                                                                          shapes) else "no", "yes/no")]
    return [{"question": q, "answer": a, "answer_type": t, "image_id": image_id}
            for q, a, t in rng.sample(qas, rng.choice((4, 5, 5, 6)))]


def write_vqav2_like(root: Path, subset: str, n_images: int, seed: int = 0, workers: int = 2) -> dict[str, str]:
    """``root/<subset>/COCO_<subset>_<id>.jpg`` and the official questions / annotations JSON files;
    returns the ``data.<split>`` spec for the ``vqav2`` source."""
    folder = root / subset
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(str(folder / f"COCO_{subset}_{i:012d}.jpg"), i, seed * 10_000_000 + i) for i in range(1, n_images + 1)]
    with mp.get_context("fork").Pool(workers) as pool:
        per_image = pool.map(_image, jobs, chunksize=64)
    questions, annotations = [], []
    for qas in per_image:
        for k, qa in enumerate(qas):
            qid = qa["image_id"] * 10 + k
            questions.append({"image_id": qa["image_id"], "question": qa["question"], "question_id": qid})
            annotations.append({"question_id": qid, "image_id": qa["image_id"], "answer_type": qa["answer_type"],
                                "question_type": " ".join(qa["question"].split()[:2]),
                                "multiple_choice_answer": qa["answer"],
                                "answers": [{"answer": qa["answer"], "answer_confidence": "yes", "answer_id": j}
                                            for j in range(1, 11)]})
    q_file, a_file = root / f"questions_{subset}.json", root / f"annotations_{subset}.json"
    q_file.write_text(json.dumps({"data_subtype": subset, "questions": questions}))
    a_file.write_text(json.dumps({"data_subtype": subset, "annotations": annotations}))
    return {"questions": str(q_file), "annotations": str(a_file), "images": str(folder)}
