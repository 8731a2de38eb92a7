"""VQAAccuracy across two real processes (CPU, gloo): synced sums equal one process seeing all data."""

import json
import os
from pathlib import Path

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from mmfuse.metrics.vqa import VQAAccuracy

PREDS = ["yes", "no", "2", "Two", "red", "blue", "the cat", "a", "", "three."]
GTS = [["yes"] * 10, ["yes"] * 7 + ["no"] * 3, ["2"] * 2 + ["3"] * 8, ["2"] * 10, ["red"] * 10,
       ["red"] * 9 + ["blue"], ["cat"] * 4 + ["dog"] * 6, ["a"] * 3 + ["b"] * 7, ["x"] * 10, ["3"] * 10]
ATYPES = ["yes/no", "yes/no", "number", "number", "other", "other", "other", "other", "other", "number"]
QTYPES = ["is the", "is the", "how many", "how many", "what color", "what color", "what", "what", "what", "how many"]


def make_metric() -> VQAAccuracy:
    return VQAAccuracy(["yes/no", "number", "other"], ["is the", "how many", "what color", "what"])


def _worker(rank: int, world: int, init_file: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        m = make_metric()
        mine = range(rank, len(PREDS), world)  # rank 0: even items (5), rank 1: odd items (5), unequal scores
        m.update([PREDS[i] for i in mine], [GTS[i] for i in mine], [ATYPES[i] for i in mine], [QTYPES[i] for i in mine])
        if rank == 1:  # an extra, second update on one rank only: counts differ between ranks
            m.update(["no"], [["no"] * 10], ["yes/no"], ["is the"])
        result = {k: float(v) for k, v in m.compute().items()}
        Path(f"{out}.{rank}").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(120)
def test_two_process_sync_equals_single_process(tmp_path: Path) -> None:
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    out = str(tmp_path / "result")
    # fork: the children inherit the imported modules (spawn would re-import torch, ~30 s on 2 cores)
    mp.start_processes(_worker, args=(2, str(tmp_path / "init"), out), nprocs=2, join=True, start_method="fork")
    single = make_metric()
    single.update(PREDS, GTS, ATYPES, QTYPES)
    single.update(["no"], [["no"] * 10], ["yes/no"], ["is the"])
    expected = {k: float(v) for k, v in single.compute().items()}
    for rank in range(2):
        got = json.loads(Path(f"{out}.{rank}").read_text())
        assert got.keys() == expected.keys()
        for k in expected:
            assert got[k] == pytest.approx(expected[k], abs=1e-12), k
    assert expected["acc"] == pytest.approx(sum(make_metric().scores_for(PREDS + ["no"], GTS + [["no"] * 10])) / 11)
