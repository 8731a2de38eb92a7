"""A broken modality at evaluation time (MultiBench, Liang et al. 2021): seeded corruptions of a batch's images
or questions, and the "missing" inputs a model sees when a modality is absent.

Corruptions (``<modality>:<name>``, ``level`` in [0, 1]; level 0 is exactly the identity, the batch untouched):

* ``image:gaussian_noise``: ``x + level·255·z`` with ``z ~ N(0, 1)`` per pixel and channel (per frame of a clip),
  rounded and clipped to uint8 [0, 255]: σ is ``level`` in units of the full pixel range.
* ``image:occlusion``: one patch of ``level`` of the image's area (``round(H·√level) × round(W·√level)``, at least
  one pixel: square on the square images the ViTs take, the image's aspect ratio otherwise, so every level fits),
  at a seeded uniform position, filled with the ``fill`` colour (in evaluation the model's normalisation mean,
  which normalises to zero: the patch carries no signal; level 1 is then exactly ``missing:image``). The same
  patch covers every frame of a clip (a static occluder).
* ``text:word_drop``: each whitespace-separated word of the question dropped with probability ``level``, before
  tokenisation (level 1: the empty question).
* ``text:typo``: each word, with probability ``level``, gets one character edit of its letters (punctuation around
  a word is kept): swap of two adjacent different characters, deletion (not of a one-letter word), insertion
  or substitution of a letter a-z, each kind with probability 1/4; a kind that cannot change the word (a swap in
  ``"ll"``, a deletion in ``"a"``) becomes a substitution, so an edited word always changes. Words without a
  letter or digit are never edited.

``missing:image`` replaces every image (every frame) by the ``fill`` colour; ``missing:text`` replaces every
question by the empty question, which tokenises to ``[CLS] [SEP]`` (two real tokens: no all-masked row, no NaN).

Determinism: every draw comes from a generator seeded by :func:`stable_seed` of (seed, spec, image key) or (seed,
spec, question id), never from a stream that runs through the split: the same image or question is corrupted
the same way in any batch, in any order, in any worker. The level is not part of the seed: the draws are shared
by all levels (a word dropped at 0.2 is also dropped at 0.3, a noise pattern only grows), so a curve over levels
measures one growing corruption, not fresh noise at every point.
"""

from __future__ import annotations

import hashlib
import math
import random
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mmfuse.data.tokenizer import tokenize_questions
from mmfuse.errors import ConfigError

__all__ = ["CORRUPTIONS", "MISSING", "BatchCorruption", "check_level", "check_spec", "gaussian_noise", "missing_images",
           "occlusion", "stable_seed", "typo", "word_drop"]

CORRUPTIONS = ("image:gaussian_noise", "image:occlusion", "text:word_drop", "text:typo")
MISSING = ("image", "text")  # --missing: the modality replaced by what a model sees for "none"
LETTERS = string.ascii_lowercase


def stable_seed(*parts: object) -> int:
    """A 63-bit seed from ``parts`` (their ``str``), the same in every process (Python's ``hash`` of a string is
    salted per process)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def check_spec(spec: str) -> str:
    """``spec`` if it names a corruption. Raises ConfigError naming the valid choices."""
    if spec not in CORRUPTIONS:
        raise ConfigError(f"--corrupt {spec!r}: unknown corruption; choose from {', '.join(CORRUPTIONS)}")
    return spec


def check_level(level: float) -> float:
    """``level`` if it lies in [0, 1]. Raises ConfigError."""
    if not 0.0 <= level <= 1.0 or math.isnan(level):
        raise ConfigError(f"--levels: {level:g} is out of range; a corruption level lies in [0, 1]")
    return float(level)


def gaussian_noise(images: Tensor, level: float, seeds: Sequence[int]) -> Tensor:
    """``images`` uint8 ``[U,3,H,W]`` (or clips ``[U,T,3,H,W]``) plus ``level·255·N(0, 1)`` noise, rounded and
    clipped to [0, 255]; row ``u``'s noise is drawn from ``seeds[u]`` alone. Level 0 returns ``images`` itself."""
    if level == 0:
        return images
    z = torch.stack([torch.randn(images.shape[1:], generator=torch.Generator().manual_seed(s)) for s in seeds])
    noisy = images.float() + (level * 255.0) * z.to(images.device)
    return noisy.round().clamp(0, 255).to(torch.uint8)


def occlusion(images: Tensor, level: float, seeds: Sequence[int], fill: Sequence[int] = (128, 128, 128)) -> Tensor:
    """``images`` uint8 ``[U,3,H,W]`` (or ``[U,T,3,H,W]``, the same patch on every frame) with a ``fill``-coloured
    patch over ``level`` of each image's area, its position drawn from ``seeds[u]``. Level 0 returns ``images``."""
    if level == 0:
        return images
    h, w = images.shape[-2:]
    ph, pw = max(1, round(h * math.sqrt(level))), max(1, round(w * math.sqrt(level)))
    colour = torch.tensor(list(fill), dtype=torch.uint8, device=images.device).view(3, 1, 1)
    out = images.clone()
    for u, s in enumerate(seeds):
        # a relative position in [0, 1)², the same at every level: the patch grows in place as the level rises
        ry, rx = np.random.default_rng(s).random(2)
        top, left = int(ry * (h - ph + 1)), int(rx * (w - pw + 1))
        out[u, ..., top:top + ph, left:left + pw] = colour
    return out


def missing_images(images: Tensor, fill: Sequence[int]) -> Tensor:
    """Every pixel of ``images`` (``[U,3,H,W]`` or ``[U,T,3,H,W]``) set to the ``fill`` colour (uint8)."""
    colour = torch.tensor(list(fill), dtype=torch.uint8, device=images.device).view(3, 1, 1)
    return colour.expand(images.shape).clone()


def word_drop(question: str, level: float, seed: int) -> str:
    """``question`` without each of its words with probability ``level`` (words joined by single spaces).
    Level 0 returns ``question`` unchanged."""
    if level == 0:
        return question
    rng = random.Random(seed)
    return " ".join(w for w in question.split() if rng.random() >= level)


def _edit(word: str, kind: int, where: float, letter: int) -> str:
    """One character edit of ``word``'s letters/digits core (``kind``: 0 swap, 1 delete, 2 insert, 3 substitute;
    ``where`` in [0, 1) picks the position, ``letter`` in [0, 25) the new letter)."""
    core = [i for i, c in enumerate(word) if c.isalnum()]
    if not core:
        return word
    start, end = core[0], core[-1] + 1
    body = word[start:end]
    n = len(body)
    swaps = [i for i in range(n - 1) if body[i] != body[i + 1]]
    if (kind == 0 and not swaps) or (kind == 1 and n == 1):
        kind = 3  # the edit would not change the word (or would delete it: word_drop's job)
    if kind == 0:
        i = swaps[int(where * len(swaps))]
        body = body[:i] + body[i + 1] + body[i] + body[i + 2:]
    elif kind == 1:
        i = int(where * n)
        body = body[:i] + body[i + 1:]
    elif kind == 2:
        i = int(where * (n + 1))
        body = body[:i] + LETTERS[letter] + body[i:]
    else:
        i = int(where * n)
        body = body[:i] + [c for c in LETTERS if c != body[i].lower()][letter] + body[i + 1:]
    return word[:start] + body + word[end:]


def typo(question: str, level: float, seed: int) -> str:
    """``question`` with each word, with probability ``level``, given one character edit (see the module).
    Level 0 returns ``question`` unchanged."""
    if level == 0:
        return question
    rng = random.Random(seed)
    out = []
    for word in question.split():
        # every draw is made for every word, so the edit a word gets does not depend on the level
        u, kind, where, letter = rng.random(), rng.randrange(4), rng.random(), rng.randrange(25)
        out.append(_edit(word, kind, where, letter) if u < level else word)
    return " ".join(out)


TEXT: dict[str, Callable[[str, float, int], str]] = {"text:word_drop": word_drop, "text:typo": typo}


@dataclass(frozen=True)
class BatchCorruption:
    """Corrupts a batch dict in place (:func:`mmfuse.data.batching.question_batch`'s layout): ``spec`` is one of
    :data:`CORRUPTIONS` or ``missing:image`` / ``missing:text`` (whose level is ignored).

    Args:
        spec, level: what, and how much (0: the batch is returned untouched).
        seed: the base seed of every draw (``eval.bootstrap.seed`` or ``--corrupt-seed``).
        image_keys: question id → its image's key (``QARecord.image_key``): an image row's seed comes from the key
            of any of its questions, so it does not depend on which questions share the batch.
        tokenizer, max_length: re-tokenise corrupted questions as the data module does
            (``data.max_question_length``).
        fill: the RGB colour of an occluding patch and of a missing image.
    """

    spec: str
    level: float
    seed: int
    image_keys: Mapping[Any, str]
    tokenizer: Any
    max_length: int
    fill: tuple[int, int, int] = (128, 128, 128)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        if (self.level == 0 and not self.spec.startswith("missing:")) or not batch.get("question_id"):
            return batch
        if self.spec.startswith("text:") or self.spec == "missing:text":
            self._text(batch)
        else:
            key = "video" if "video" in batch else "image"
            batch[key] = self._images(batch[key], batch)
        return batch

    def _images(self, images: Tensor, batch: Mapping[str, Any]) -> Tensor:
        if self.spec == "missing:image":
            return missing_images(images, self.fill)
        rows: dict[int, str] = {}
        for qid, u in zip(batch["question_id"], batch["image_index"].tolist()):
            rows.setdefault(u, self.image_keys[qid])
        if len(rows) != images.shape[0]:
            raise ValueError(f"batch has {images.shape[0]} image rows but its questions use {len(rows)}")
        seeds = [stable_seed(self.seed, self.spec, rows[u]) for u in range(images.shape[0])]
        if self.spec == "image:gaussian_noise":
            return gaussian_noise(images, self.level, seeds)
        return occlusion(images, self.level, seeds, self.fill)

    def _text(self, batch: dict[str, Any]) -> None:
        if self.spec == "missing:text":
            questions = [""] * len(batch["question"])
        else:
            corrupt = TEXT[self.spec]
            questions = [corrupt(q, self.level, stable_seed(self.seed, self.spec, qid))
                         for q, qid in zip(batch["question"], batch["question_id"])]
        ids, _ = tokenize_questions(self.tokenizer, questions, self.max_length)
        rows = [ids[i].tolist() for i in range(len(ids))]
        length = max(len(r) for r in rows)
        pad = int(self.tokenizer.pad_token_id or 0)
        device = batch["text"]["input_ids"].device
        batch["text"] = {
            "input_ids": torch.tensor([r + [pad] * (length - len(r)) for r in rows], device=device),  # [B,L]
            "attention_mask": torch.tensor([[1] * len(r) + [0] * (length - len(r)) for r in rows], device=device),
        }
        batch["question"] = questions
