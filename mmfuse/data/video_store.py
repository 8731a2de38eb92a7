"""``VideoStore``: the videos of one split and how every batch draws its clips from them.

Built once per split by :meth:`VideoStore.build`, which reads each distinct video's frame count (no
pixels) and, with ``cache=True``, decodes it once:

* training (``data.video.train_sampling``, normally ``random_segment``): every frame is kept (resized
  to the encoder's size) and each batch samples new indices from it;
* evaluation (``uniform``, deterministic): only the sampled clip is kept.

With ``cache=False`` each batch decodes just the frames its clips need. A video shorter than
``num_frames`` is padded by repeating frames (:mod:`mmfuse.data.frames`); :attr:`VideoStore.num_padded`
counts them and the build logs a warning. A video that cannot be read is a :class:`DataError` naming
the file and a question id, or (``skip_bad=True``) a :class:`BadImage` for the caller to drop.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor

from mmfuse.data.frames import sample_frame_indices
from mmfuse.data.images import BadImage, group_by_image
from mmfuse.data.schema import QARecord, QuestionId
from mmfuse.data.video_io import count_frames, read_frames
from mmfuse.errors import DataError, ShortVideo

log = logging.getLogger(__name__)
MAX_CACHE_BYTES = 8 << 30  # refuse to cache more than 8 GiB of decoded frames


class VideoStore:
    """Clips ``[U, T, 3, H, W]`` uint8 for rows of videos.

    Args:
        paths, question_ids: each video row's path and one question id about it (for error messages).
        lengths: each video's frame count.
        num_frames, stride: the clip (``data.video.num_frames`` / ``frame_stride``).
        mode: ``uniform`` or ``random_segment`` (:func:`sample_frame_indices`).
        size: ``(H, W)`` every frame is resized to.
        frames: cached frames per row (all of them, ``[n_i, 3, H, W]``), or None.
        clips: cached clips ``[V, T, 3, H, W]`` (deterministic sampling only), or None.
    """

    def __init__(self, paths: Sequence[str], question_ids: Sequence[QuestionId], lengths: Sequence[int],
                 num_frames: int, stride: int | None, mode: str, size: tuple[int, int],
                 frames: list[Tensor] | None = None, clips: Tensor | None = None) -> None:
        self.paths, self.question_ids, self.lengths = list(paths), list(question_ids), list(lengths)
        self.num_frames, self.stride, self.mode, self.size = (int(num_frames), stride, mode,
                                                              cast(tuple[int, int], tuple(size)))
        self.frames, self.cached_clips = frames, clips
        self.num_padded = sum(n < self.num_frames for n in self.lengths)

    def __len__(self) -> int:
        return len(self.paths)

    def indices(self, row: int, generator: torch.Generator | None = None) -> list[int]:
        """The frame indices of row ``row``'s next clip."""
        return sample_frame_indices(self.lengths[row], self.num_frames, self.mode, self.stride, generator)

    def clips(self, rows: Sequence[int], generator: torch.Generator | None = None) -> Tensor:
        """``[len(rows), T, 3, H, W]`` uint8: one clip per row, sampled now (training) or fixed (evaluation)."""
        if self.cached_clips is not None:
            return self.cached_clips[list(rows)]
        out = []
        for r in rows:
            idx = self.indices(r, generator)
            if self.frames is not None:
                out.append(self.frames[r][idx])
            else:
                out.append(self._read(r, idx))
        return torch.stack(out)

    def _read(self, row: int, idx: list[int]) -> Tensor:
        try:
            return read_frames(self.paths[row], idx, self.size, self.question_ids[row])
        except ShortVideo as e:  # the file's header overstated its length: sample again from what it has
            self.lengths[row] = e.available
            return read_frames(self.paths[row], self.indices(row), self.size, self.question_ids[row])

    @classmethod
    def build(cls, records: Sequence[QARecord], num_frames: int, stride: int | None, mode: str,
              size: tuple[int, int], cache: bool, skip_bad: bool = False,
              where: str = "") -> tuple[VideoStore, list[str], list[BadImage]]:
        """A store over the distinct videos of ``records`` (grouped by ``image_key``).

        Returns ``(store, keys, bad)``: ``keys[i]`` is the ``image_key`` of row ``i``; ``bad`` lists the
        unreadable videos (empty unless ``skip_bad``; otherwise the first one raises).
        """
        keys, paths, qids, lengths, frames, bad = [], [], [], [], [], []
        cached_bytes = 0  # running total: summing the list each time would be quadratic in the videos
        for key, (path, ids) in group_by_image(records).items():
            try:
                n = count_frames(path, ids[0])
                if cache:  # decode now: unreadable files surface at build time, not mid-epoch
                    all_frames = _read_all(path, n, size, ids[0])
                    n = all_frames.shape[0]
                    frames.append(all_frames if mode != "uniform" else _clip(all_frames, num_frames, stride))
                    cached_bytes += frames[-1].numel()  # uint8: one byte per element
            except DataError as e:
                if not skip_bad:
                    raise
                bad.append(BadImage(path=path, image_key=key, question_ids=tuple(ids), reason=str(e)))
                continue
            keys.append(key)
            paths.append(path)
            qids.append(ids[0])
            lengths.append(n)
            if cached_bytes > MAX_CACHE_BYTES:
                raise DataError(f"{where or 'video split'}: caching every decoded frame would take more than "
                                f"{MAX_CACHE_BYTES >> 30} GiB; set data.cache_images=false to decode clips per batch")
        store = cls(paths, qids, lengths, num_frames, stride, mode, size,
                    frames=frames if cache and mode != "uniform" else None,
                    clips=torch.stack(frames) if cache and mode == "uniform" and frames else None)
        if store.num_padded:
            short = min(range(len(lengths)), key=lambda i: lengths[i])
            log.warning("%s: %d of %d video(s) have fewer than num_frames=%d frames and are padded by repeating "
                        "frames (shortest: %s, %d frame(s))", where or "videos", store.num_padded, len(store),
                        num_frames, paths[short], lengths[short])
        return store, keys, bad


def _read_all(path: str, n: int, size: tuple[int, int], qid: QuestionId) -> Tensor:
    """Every frame of a video, resized: ``[n', 3, H, W]`` (``n'`` < ``n`` when the header overstated it)."""
    try:
        return read_frames(path, range(n), size, qid)
    except ShortVideo as e:
        if e.available < 1:
            raise DataError(f"video {path} (question_id {qid!r}) has no decodable frames") from None
        return read_frames(path, range(e.available), size, qid)


def _clip(frames: Tensor, num_frames: int, stride: int | None) -> Tensor:
    """The deterministic (``uniform``) clip of cached frames ``[n, 3, H, W]`` → ``[T, 3, H, W]``."""
    return frames[sample_frame_indices(frames.shape[0], num_frames, "uniform", stride)]
