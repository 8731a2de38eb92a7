"""tools/benchmark_data.py: its COCO-like VQAv2 data, its table, and resuming from results.json."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from PIL import Image

from mmfuse.data.sources import load_records
from tests.conftest import REPO, run_tool

sys.path.insert(0, str(REPO / "tools"))
import benchmark_data as bench


def test_written_data_is_official_vqav2_layout(tmp_path: Path) -> None:
    spec = bench.write_vqav2_like(tmp_path, "train2014", 6, seed=3, workers=1)
    records = load_records("vqav2", "train", spec, str(tmp_path))
    assert len({r.image_key for r in records}) == 6 and 4 * 6 <= len(records) <= 6 * 6
    assert all(len(r.answers) == 10 and r.answer_type in ("yes/no", "number", "other") for r in records)
    with Image.open(records[0].image) as im:
        assert (im.format, im.size) == ("JPEG", (640, 480))
    sizes = [Path(r.image).stat().st_size for r in records]
    assert 100_000 < sum(sizes) / len(sizes) < 250_000  # a photo's entropy (COCO averages ~160 KB), not ~8 KB
    again = bench.write_vqav2_like(tmp_path / "again", "train2014", 6, seed=3, workers=1)
    assert Path(again["questions"]).read_text() == Path(spec["questions"]).read_text()  # deterministic


def test_resumes_from_results_and_writes_the_table(tmp_path: Path) -> None:
    keys = {"8/prepare": {"seconds": 3.0, "gib": 0.01, "images": 208}}
    for path in bench.PATHS:
        keys[f"8/train/{path}"] = {"peak_rss_gib": 1.5, "seconds_to_first_step": 2.0}
    for path in ("lazy", "stream"):
        for w in (0, 1, 2):
            keys[f"8/loader/{path}/{w}"] = {"images_per_s": 100.0 + w}
    keys["8/loader/jpeg/2"] = {"reduced_images_per_s": 102.0, "full_images_per_s": 40.0, "ratio": 2.5}
    keys["8/decode"] = {"reduced_ms": 1.0, "full_ms": 3.0, "ratio": 3.0, "kb_per_file": 150.2}
    (tmp_path / "results.json").write_text(json.dumps(keys))
    out = run_tool("tools/benchmark_data.py", "--sizes", "8", "--output", str(tmp_path))
    assert out.count("(kept)") == len(keys)  # nothing measured again
    table = (tmp_path / "table.md").read_text()
    assert "| 8 | lazy | 1.5 | 2 | 100 / 101 / 102 |" in table
    assert "| 8 | 3 | 0.01 | 150.2 | 102 / 40 (2.5x) | 1 / 3 (3x) |" in table


@pytest.mark.slow
def test_a_tiny_sweep_measures_everything(tmp_path: Path) -> None:
    run_tool("tools/benchmark_data.py", "--sizes", "20", "--output", str(tmp_path), "--batches", "2")
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["20/train/stream"]["peak_rss_gib"] > 0 and results["20/loader/jpeg/2"]["full_images_per_s"] > 0
    assert results["20/decode"]["full_ms"] > 0 and results["20/decode"]["kb_per_file"] > 50  # photo-like files
