"""Shared fixtures: a tiny generated VQA dataset in the documented JSONL format, tiny configs."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "tests" / "configs" / "tiny.yaml"
COLORS = {"red": (255, 0, 0), "green": (0, 200, 0), "blue": (0, 0, 255)}
SHAPES = ("circle", "rectangle")

torch.set_num_threads(1)  # tiny tensors: threading overhead only slows the suite on 2 cores


@pytest.fixture(autouse=True)
def _single_thread():
    """Every test starts with one intra-op thread (a training run inside a test may have set more): tiny
    tensors only pay threading overhead, and stall badly on a loaded 2-core machine."""
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(1)


def draw(shape: str, color: str, size: int | tuple[int, int] = 32) -> Image.Image:
    w, h = (size, size) if isinstance(size, int) else size
    img = Image.new("RGB", (w, h), (240, 240, 240))
    d = ImageDraw.Draw(img)
    box = (w // 4, h // 4, 3 * w // 4, 3 * h // 4)
    (d.ellipse if shape == "circle" else d.rectangle)(box, fill=COLORS[color])
    return img


def make_jsonl_dataset(root: Path, n_images: int = 12, seed: int = 0, fmt: str = "png",
                       image_size: int | tuple[int, int] = 32) -> dict[str, Path]:
    """Write ``root/images/*.<fmt>`` (``image_size``: side or (W, H)) and ``{train,val,test}.jsonl``: colour /
    shape / yes-no questions."""
    rng = random.Random(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    qid = 0
    for split, n in (("train", n_images), ("val", max(2, n_images // 4)), ("test", max(2, n_images // 4))):
        lines = []
        for i in range(n):
            shape, color = rng.choice(SHAPES), rng.choice(list(COLORS))
            name = f"{split}_{i}.{fmt}"
            draw(shape, color, image_size).save(root / "images" / name)
            qas = [("what color is the shape?", color, "other", "what color"),
                   ("what shape is this?", shape, "other", "what shape"),
                   (f"is there a {color} shape?", "yes", "yes/no", "is there a"),
                   (f"is there a {rng.choice([c for c in COLORS if c != color])} shape?", "no", "yes/no", "is there a")]
            for q, a, t, qt in qas:
                lines.append({"question_id": qid, "image": f"images/{name}", "question": q, "answers": [a] * 10,
                              "answer_type": t, "question_type": qt})
                qid += 1
        files[split] = root / f"{split}.jsonl"
        files[split].write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return files


@pytest.fixture
def jsonl_data(tmp_path: Path) -> dict[str, Path]:
    return make_jsonl_dataset(tmp_path / "data")


def run_tool(*args: str) -> str:
    """Run a script of this repository as a user would (``python tools/...``); its stdout, or fail with its output."""
    proc = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def jsonl_overrides(files: dict[str, Path], run_dir: Path) -> list[str]:
    root = files["train"].parent
    return ["data.source=jsonl", f"data.root={root}", f"data.train={files['train']}", f"data.val={files['val']}",
            f"data.test={files['test']}", f"run_dir={run_dir}", "data.augment=[]"]


def make_video_dataset(root: Path, videos: tuple[int, int, int] = (12, 4, 4), seed: int = 0) -> dict[str, Path]:
    """A tiny procedural video-QA set (16-frame 32 px mp4s, mmfuse.data.procedural_video): split -> .jsonl."""
    from mmfuse.data.procedural_video import make_video_qa

    make_video_qa(root, dict(zip(("train", "val", "test"), videos)), seed=seed)
    return {s: root / f"{s}.jsonl" for s in ("train", "val", "test")}


@pytest.fixture
def video_data(tmp_path: Path) -> dict[str, Path]:
    return make_video_dataset(tmp_path / "video")
