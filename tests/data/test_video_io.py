"""Reading frames: the mp4 round trip through PyAV, folders, arrays, what is decoded, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmfuse.data import video_io
from mmfuse.data.procedural_video import write_mp4
from mmfuse.data.sources import DataError
from mmfuse.data.video_io import count_frames, read_frames


def ramp(n: int = 6, h: int = 16, w: int = 24) -> np.ndarray:
    """``[n, h, w, 3]`` uint8 frames: frame i is a flat colour with red = 30 i (easy to identify)."""
    out = np.zeros((n, h, w, 3), dtype=np.uint8)
    for i in range(n):
        out[i] = (30 * i, 120, 255 - 30 * i)
    return out


def test_mp4_round_trip_through_pyav(tmp_path: Path) -> None:
    frames = ramp(6)
    write_mp4(tmp_path / "v.mp4", list(frames))
    assert count_frames(str(tmp_path / "v.mp4")) == 6
    got = read_frames(str(tmp_path / "v.mp4"))
    assert got.shape == (6, 3, 16, 24) and got.dtype == torch.uint8
    want = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    err = (got.float() - want).abs().mean(dim=(1, 2, 3))
    assert (err < 4).all(), f"lossy but near-exact H.264 round trip, mean abs error per frame {err.tolist()}"
    # requested frames come back in the requested order, repeats included, and resized on request
    some = read_frames(str(tmp_path / "v.mp4"), [4, 0, 4], size=(8, 8))
    assert some.shape == (3, 3, 8, 8)
    assert torch.equal(some[0], some[2]) and some[0, 0].float().mean() > some[1, 0].float().mean() + 80


def test_decoding_stops_after_the_last_wanted_frame(tmp_path: Path) -> None:
    write_mp4(tmp_path / "v.mp4", list(ramp(8)))
    frames, decoded = video_io._decode_file(str(tmp_path / "v.mp4"), {1, 2})
    assert sorted(frames) == [1, 2] and decoded == 3


def test_folder_of_frames_in_natural_order_with_mixed_sizes(tmp_path: Path) -> None:
    folder = tmp_path / "clip"
    folder.mkdir()
    for i in range(12):  # frame_2 must come before frame_10; every third frame has another size
        size = (24, 16) if i % 3 else (40, 30)
        Image.new("RGB", size, (10 * i, 0, 0)).save(folder / f"frame_{i}.png")
    (folder / "notes.txt").write_text("not a frame")
    assert count_frames(str(folder)) == 12
    got = read_frames(str(folder), [3, 10, 2])  # frame 3 is 40x30, frames 10 and 2 are 24x16
    assert got.shape == (3, 3, 30, 40)  # resized to the first requested frame's size
    assert got[:, 0, 0, 0].tolist() == [30, 100, 20]
    assert read_frames(str(folder), [0, 1], size=(8, 8)).shape == (2, 3, 8, 8)


@pytest.mark.parametrize("layout", ["thwc", "tchw", "gray", "float", "npz"])
def test_arrays(tmp_path: Path, layout: str) -> None:
    frames = ramp(5)  # [T, H, W, 3]
    path = tmp_path / ("v.npz" if layout == "npz" else "v.npy")
    if layout == "thwc":
        np.save(path, frames)
    elif layout == "tchw":
        np.save(path, frames.transpose(0, 3, 1, 2))
    elif layout == "gray":
        np.save(path, frames[..., :1])
    elif layout == "float":
        np.save(path, frames.astype(np.float32) / 255.0)
    else:
        np.savez(path, frames=frames, labels=np.arange(5))
    assert count_frames(str(path)) == 5
    got = read_frames(str(path), [3, 1])
    assert got.shape == (2, 3, 16, 24) and got.dtype == torch.uint8
    assert got[0, 0, 0, 0] == 90 and got[1, 0, 0, 0] == 30  # red channel (gray: copied to all three)


@pytest.mark.parametrize("make,match", [
    (lambda p: p.write_bytes(b"\x00not a video at all" * 50), "cannot read video"),
    (lambda p: None, "video not found"),
])
def test_unreadable_video_names_the_file_and_question(tmp_path: Path, make, match: str) -> None:
    path = tmp_path / "broken.mp4"
    make(path)
    with pytest.raises(DataError, match=match) as e:
        read_frames(str(path), [0], question_id="q7")
    assert str(path) in str(e.value) and "question_id 'q7'" in str(e.value)
    with pytest.raises(DataError, match="question_id 'q7'"):
        count_frames(str(path), "q7")


def test_bad_arrays_and_kinds_are_clear_errors(tmp_path: Path) -> None:
    np.save(tmp_path / "flat.npy", np.zeros((4, 5), dtype=np.uint8))
    with pytest.raises(DataError, match=r"flat.npy.*expected \[T, H, W, C\]"):
        count_frames(str(tmp_path / "flat.npy"))
    np.save(tmp_path / "ints.npy", np.zeros((2, 4, 4, 3), dtype=np.int64))
    with pytest.raises(DataError, match="dtype is int64"):
        read_frames(str(tmp_path / "ints.npy"), [0])
    np.savez(tmp_path / "two.npz", a=np.zeros((2, 4, 4, 3), np.uint8), b=np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(DataError, match="name the frames 'frames' or 'video'"):
        count_frames(str(tmp_path / "two.npz"))
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DataError, match="not a video"):
        count_frames(str(tmp_path / "x.txt"))
    np.save(tmp_path / "ok.npy", ramp(3))
    with pytest.raises(DataError, match="frame 5 requested but it has 3 frame"):
        read_frames(str(tmp_path / "ok.npy"), [0, 5])
