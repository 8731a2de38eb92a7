#!/usr/bin/env python
"""Data path at scale: the in-memory, lazy and streamed (prepared) paths on COCO-like VQAv2-layout data.

For each size N (train images; 640x480 JPEGs, about 5 questions each, plus a 200-image val2014 test split):

* writes the data once (``<output>/data_<N>/``, the official file layout) and prepares it
  (``tools/prepare_data.py``: time and size);
* trains 5 steps on each path (``tools/train.py``, the easy-VQA model at 224 px) in its own process: peak
  RSS (``/usr/bin/time``) and seconds from ``train()``'s call to the first training step;
* times the training DataLoader alone (no model): images/s at 0, 1 and 2 workers for the lazy and the
  streamed path; and, lazy with 2 workers, JPEGs decoded at reduced scale against full size, in alternating
  windows of one process (so their ratio is measured in one run), as for the decoder alone.

    python tools/benchmark_data.py [--sizes 2000 8000 32000] [--output runs/bench_data] [--force]

Every measurement is kept in ``<output>/results.json`` as soon as it is taken and skipped when the tool runs
again (``--force`` measures again), so an interrupted run resumes; ``<output>/table.md`` is the README table.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))
from _coco_like import write_vqav2_like  # a helper module beside this tool

PATHS = ("memory", "lazy", "stream")


# -- the data ---------------------------------------------------------------------------------------------
def dataset(out: Path, n: int) -> Path:
    """The benchmark dataset of ``n`` train images (written once) and its experiment YAML."""
    root = out / f"data_{n}"
    cfg = root / "bench.yaml"
    if not cfg.is_file():
        train = write_vqav2_like(root, "train2014", n, seed=1)
        test = write_vqav2_like(root, "val2014", 200, seed=2)
        spec = lambda s: "{" + ", ".join(f"{k}: {v}" for k, v in s.items()) + "}"  # noqa: E731
        cfg.write_text(f"include: [{REPO / 'configs/experiments/easy_vqa.yaml'}]\nname: bench_data\n"
                       f"data:\n  source: vqav2\n  root: {root}\n  train: {spec(train)}\n  test: {spec(test)}\n"
                       "  batch_size: 256\n  eval_batch_size: 512\n  augment: []\n"
                       "model:\n  image: {img_size: 224, patch_size: 16, stem: patch}\n")
    return cfg


# -- measurements -----------------------------------------------------------------------------------------
def _path_overrides(path: str, prepared: Path, workers: int) -> list[str]:
    if path == "memory":
        return ["data.cache_images=true"]
    if path == "lazy":
        return ["data.cache_images=false", f"data.num_workers={workers}"]
    return ["data.source=prepared", f"data.root={prepared}", f"data.num_workers={workers}"]


def prepare(cfg: Path, prepared: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    run([sys.executable, "tools/prepare_data.py", "--config", str(cfg), "--output", str(prepared), "--overwrite"])
    meta = json.loads((prepared / "prepared.json").read_text())
    return {"seconds": round(time.perf_counter() - t0, 1), "gib": round(meta["bytes"] / 2**30, 2),
            "images": sum(s["images"] for s in meta["splits"].values())}


def train(cfg: Path, path: str, prepared: Path, run_dir: Path) -> dict[str, Any]:
    """5 training steps on ``path`` in a fresh process: its peak RSS and its time to the first step."""
    cmd = ["/usr/bin/time", "-v", sys.executable, "tools/train.py", "--config", str(cfg), f"run_dir={run_dir}",
           "trainer.max_epochs=1", "trainer.limit_train_batches=5", "trainer.limit_val_batches=2",
           "trainer.logger=none", "trainer.enable_progress_bar=false", *_path_overrides(path, prepared, 2)]
    out = run(cmd)
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out).group(1))  # type: ignore[union-attr]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {"peak_rss_gib": round(rss / 2**20, 2), "seconds_to_first_step": round(metrics["seconds_to_first_step"], 1)}


def _loader(cfg_path: str, path: str, prepared: str, workers: int, reduced: bool) -> Any:
    """The training DataLoader of ``path`` at 224 px (no model)."""
    import mmfuse
    from mmfuse.runner import build_datamodule

    over = [*_path_overrides(path, Path(prepared), workers), f"data.jpeg_reduced={str(reduced).lower()}"]
    dm = build_datamodule(mmfuse.load_config([cfg_path], over))
    dm.prepare()
    dm.img_size = (224, 224)
    dm.setup("fit")
    return dm.train_dataloader()


def _started(loader: Any, workers: int) -> Any:
    """An endless iterator over ``loader`` (epoch after epoch: a small dataset has few batches), past the
    workers' start and their first prefetch: steady state from here."""
    def forever() -> Any:
        while True:
            yield from loader

    it = forever()
    for _ in range(max(2, workers * 2)):
        next(it)
    return it


def _rate(it: Any, batches: int) -> float:
    images, t0 = 0, time.perf_counter()
    for _ in range(batches):
        images += next(it)["image"].shape[0]
    return images / (time.perf_counter() - t0)


def loader_speed(cfg_path: str, path: str, prepared: str, workers: int, batches: int) -> dict:
    """Images/s of the training DataLoader alone; run in this tool's own process. The median of three
    windows: one hiccup of a shared 2-core machine does not decide it."""
    it = _started(_loader(cfg_path, path, prepared, workers, True), workers)
    rates = [_rate(it, batches) for _ in range(3)]
    return {"images_per_s": round(statistics.median(rates), 1), "windows": [round(r, 1) for r in rates]}


def loader_pair(cfg_path: str, prepared: str, workers: int, batches: int) -> dict:
    """The lazy loader with JPEGs decoded at reduced scale and at full size, in one process, in alternating
    windows (reduced, full, reduced, ...; each loader's workers started afresh for its window and stopped
    after it, so the idle one takes no CPU): the ratio of adjacent windows is not confounded by the
    machine's drift between two runs. Medians of three rounds."""
    loaders = {r: _loader(cfg_path, "lazy", prepared, workers, r) for r in (True, False)}
    rates: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(3):
        for reduced in (True, False):
            it = _started(loaders[reduced], workers)
            rates[reduced].append(_rate(it, batches))
            it.close()  # drops the loader iterator: its workers shut down
    ratios = [r / f for r, f in zip(rates[True], rates[False], strict=True)]
    return {"reduced_images_per_s": round(statistics.median(rates[True]), 1),
            "full_images_per_s": round(statistics.median(rates[False]), 1),
            "ratio": round(statistics.median(ratios), 2),
            "windows": {"reduced": [round(r, 1) for r in rates[True]], "full": [round(r, 1) for r in rates[False]]}}


def _floor_decode(path: Path) -> None:
    """The cheapest decode libjpeg offers: 1/8 scale, fastest IDCT, plain upsampling, no resize. Every
    coefficient is still entropy-decoded, so no DCT-scaled decode of the file can cost less."""
    from PIL import Image

    with Image.open(path) as im:
        im.draft("RGB", (im.width // 8, im.height // 8))
        im.decoderconfig = (im.decoderconfig[0], 1)
        im.load()


def decode_pair(images: Path, count: int = 200) -> dict:
    """Milliseconds per image of the decoder alone (open, decode, resize to 224 px), one thread as in a
    DataLoader worker, no loader: reduced-scale and full-size passes over the same ``count`` JPEGs
    alternate (after one pass of each that warms the page cache); medians of three. ``floor_ms``: the
    1/8-scale decode without resize (:func:`_floor_decode`), the least any reduced-scale decode can cost, so
    ``full_ms / floor_ms`` bounds the gain any DCT scaling could give on these files."""
    import torch

    from mmfuse.data.images import load_image

    torch.set_num_threads(1)
    files = sorted(images.glob("*.jpg"))[:count]
    decoders = {"reduced": lambda f: load_image(str(f), None, (224, 224), True),
                "full": lambda f: load_image(str(f), None, (224, 224), False),
                "floor": _floor_decode}
    passes: dict[str, list[float]] = {k: [] for k in decoders}
    for _ in range(4):
        for name, decode in decoders.items():
            t0 = time.perf_counter()
            for f in files:
                decode(f)
            passes[name].append(1000 * (time.perf_counter() - t0) / len(files))
    red, full, floor = passes["reduced"][1:], passes["full"][1:], passes["floor"][1:]
    return {"reduced_ms": round(statistics.median(red), 3), "full_ms": round(statistics.median(full), 3),
            "ratio": round(statistics.median(f / r for r, f in zip(red, full, strict=True)), 2),
            "floor_ms": round(statistics.median(floor), 3),
            "max_ratio": round(statistics.median(f / x for x, f in zip(floor, full, strict=True)), 2),
            "kb_per_file": round(sum(f.stat().st_size for f in files) / len(files) / 1024, 1)}


def last_json_line(cmd: list[str]) -> Any:
    return json.loads(run(cmd).strip().splitlines()[-1])


def run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return proc.stdout + proc.stderr


# -- the sweep --------------------------------------------------------------------------------------------
def table(results: dict[str, Any], sizes: list[int]) -> str:
    def get(key: str, field: str) -> str:
        value = results.get(key, {}).get(field)
        return "" if value is None else f"{value:g}"

    lines = ["| train images | path | peak RSS (GiB) | to first step (s) | loader images/s, 0 / 1 / 2 workers |",
             "|---|---|---|---|---|"]
    for n in sizes:
        for path in PATHS:
            speeds = " / ".join(get(f"{n}/loader/{path}/{w}", "images_per_s") or "–" for w in (0, 1, 2)) \
                if path != "memory" else "(in memory)"
            lines.append(f"| {n:,} | {path} | {get(f'{n}/train/{path}', 'peak_rss_gib')} | "
                         f"{get(f'{n}/train/{path}', 'seconds_to_first_step')} | {speeds} |")
    lines += ["", "| train images | prepare_data (s) | prepared size (GiB) | JPEG size (KB) | lazy loader, 2 workers: "
              "JPEG decoded at reduced scale / full size (images/s) | decoder alone, 1 thread: reduced / full "
              "(ms per image) | entropy-decoding floor (ms; full / floor) |", "|---|---|---|---|---|---|---|"]
    for n in sizes:
        pair, dec = f"{n}/loader/jpeg/2", f"{n}/decode"
        loader = f"{get(pair, 'reduced_images_per_s')} / {get(pair, 'full_images_per_s')} ({get(pair, 'ratio')}x)" \
            if pair in results else ""
        decode = f"{get(dec, 'reduced_ms')} / {get(dec, 'full_ms')} ({get(dec, 'ratio')}x)" if dec in results else ""
        floor = f"{get(dec, 'floor_ms')} ({get(dec, 'max_ratio')}x)" if get(dec, "floor_ms") else ""
        lines.append(f"| {n:,} | {get(f'{n}/prepare', 'seconds')} | {get(f'{n}/prepare', 'gib')} | "
                     f"{get(dec, 'kb_per_file')} | {loader} | {decode} | {floor} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["decode"]:  # the decoder alone, in a fresh process (called below)
        print(json.dumps(decode_pair(Path(argv[1]))))
        return 0
    if argv[:1] == ["loader"]:  # one DataLoader measurement, in a fresh process (called below)
        a = argv[1:]
        print(json.dumps(loader_speed(a[0], a[1], a[2], int(a[3]), int(a[4]))))
        return 0
    if argv[:1] == ["loader-pair"]:  # reduced vs full decode in the loader, in a fresh process (called below)
        a = argv[1:]
        print(json.dumps(loader_pair(a[0], a[1], int(a[2]), int(a[3]))))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[2000, 8000, 32000], help="train images")
    p.add_argument("--output", default="runs/bench_data")
    p.add_argument("--batches", type=int, default=20, help="loader batches per timed window (about 50 images each)")
    p.add_argument("--force", action="store_true", help="measure again what results.json already holds")
    args = p.parse_args(argv)
    out = Path(args.output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    done = out / "results.json"
    results: dict[str, Any] = json.loads(done.read_text()) if done.is_file() and not args.force else {}

    def measure(key: str, fn: Any) -> None:
        if key in results:
            print(f"{key}: {results[key]} (kept)", flush=True)
            return
        results[key] = fn()
        done.write_text(json.dumps(results, indent=2))
        print(f"{key}: {results[key]}", flush=True)

    for n in args.sizes:
        cfg = dataset(out, n)
        prepared = out / f"prepared_{n}"
        measure(f"{n}/prepare", functools.partial(prepare, cfg, prepared))
        for path in PATHS:
            measure(f"{n}/train/{path}", functools.partial(train, cfg, path, prepared, out / f"run_{n}_{path}"))
        tool = [sys.executable, "tools/benchmark_data.py"]
        for path in ("lazy", "stream"):
            for w in (0, 1, 2):
                cmd = [*tool, "loader", str(cfg), path, str(prepared), str(w), str(args.batches)]
                measure(f"{n}/loader/{path}/{w}", functools.partial(last_json_line, cmd))
        cmd = [*tool, "loader-pair", str(cfg), str(prepared), "2", str(args.batches)]
        measure(f"{n}/loader/jpeg/2", functools.partial(last_json_line, cmd))
        cmd = [*tool, "decode", str(out / f"data_{n}" / "train2014")]
        measure(f"{n}/decode", functools.partial(last_json_line, cmd))
        (out / "table.md").write_text(table(results, args.sizes))
    print("\n" + table(results, args.sizes))
    medians = [results[k]["images_per_s"] for k in results if k.endswith("/loader/lazy/2")]
    if medians:
        print(f"median lazy images/s with 2 workers over sizes: {statistics.median(medians):g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
