"""Word-level answer tokenizer for generative answering (:class:`~mmfuse.heads.generator.AnswerGenerator`).

Answers are normalised with the official VQA processing (:func:`~mmfuse.metrics.vqa.normalize_answer`)
before being split into words, so a decoded answer is already in the form the VQA metric compares.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from mmfuse.metrics.scoring import normalize_answer

SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[BOS]", "[EOS]", "[UNK]")


class AnswerTokenizer:
    """Maps normalised answers to word ids and back.

    Ids: ``PAD=0 "[PAD]"``, ``BOS=1 "[BOS]"``, ``EOS=2 "[EOS]"``, ``UNK=3 "[UNK]"``, then
    ``words[i]`` has id ``4 + i``. ``len(tokenizer) == 4 + len(words)`` is the generator's vocab size.

    Args:
        words: the vocabulary words (distinct, non-empty, without whitespace, not a special
            token). Kept as the plain list :attr:`words` so it can be stored in checkpoint
            hyper-parameters and the tokenizer rebuilt with ``AnswerTokenizer(words)``.

    Shapes:
        ``encode_batch(answers [B], max_length)`` -> LongTensor ``[B, T]``;
        ``decode_batch(ids [B, T])`` -> ``B`` strings.
    """

    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    unk_id: int = 3

    def __init__(self, words: Sequence[str]) -> None:
        if isinstance(words, str):
            raise TypeError("AnswerTokenizer expects a sequence of words, not one str")
        words = list(words)
        for w in words:
            # encode() splits on whitespace, so a word holding whitespace could never be produced.
            if not isinstance(w, str) or not w or w.split() != [w]:
                raise ValueError(f"invalid vocabulary word {w!r}: words must be non-empty and whitespace-free")
            if w in SPECIAL_TOKENS:
                raise ValueError(f"vocabulary word {w!r} collides with a special token")
        if len(set(words)) != len(words):
            dups = sorted(w for w, c in Counter(words).items() if c > 1)
            raise ValueError(f"duplicate vocabulary words: {dups}")
        self.words: list[str] = words
        self._tokens: list[str] = list(SPECIAL_TOKENS) + words
        self._index: dict[str, int] = {w: i + len(SPECIAL_TOKENS) for i, w in enumerate(words)}

    @classmethod
    def from_answers(
        cls, answers: Iterable[str], min_count: int = 1, max_words: int | None = None
    ) -> AnswerTokenizer:
        """Vocabulary of the words of the normalised ``answers``.

        Words seen at least ``min_count`` times are kept, most frequent first, ties broken
        alphabetically (so the ids never depend on the data's order), truncated to ``max_words``.
        """
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        if max_words is not None and max_words < 0:
            raise ValueError(f"max_words must be >= 0 or None, got {max_words}")
        counts = Counter(w for a in answers for w in normalize_answer(a).split())
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        words = [w for w, c in ranked if c >= min_count]
        return cls(words if max_words is None else words[:max_words])

    def __len__(self) -> int:
        return len(self._tokens)

    def __repr__(self) -> str:
        return f"AnswerTokenizer({len(self.words)} words)"

    def encode(self, answer: str) -> list[int]:
        """Ids of the normalised words of ``answer`` (UNK for unknown ones) followed by EOS; no BOS.

        An answer that normalises to nothing (``"a"``) encodes to ``[EOS]``.
        """
        return [self._index.get(w, self.unk_id) for w in normalize_answer(answer).split()] + [self.eos_id]

    def encode_batch(self, answers: Sequence[str], max_length: int) -> Tensor:
        """LongTensor ``[B, T]``, rows right-padded with PAD, ``T = min(max_length, longest row)``.

        A row longer than ``max_length`` (words + EOS) is truncated to its first ``max_length``
        tokens: the words are kept and the EOS is the part that is dropped, so such a row has no
        EOS and stands for "the answer continues" (a generator scoring it treats every token as an
        action, exactly like a generation cut at ``max_new_tokens``).
        """
        if isinstance(answers, str):
            raise TypeError("encode_batch expects a sequence of answers, not one str")
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        rows = [self.encode(a)[:max_length] for a in answers]
        width = max((len(r) for r in rows), default=0)
        out = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        return out

    def decode(self, ids: Sequence[int] | Tensor) -> str:
        """The answer spelled by ``ids`` (1-D): words joined by single spaces.

        Stops at the first EOS; PAD and BOS are skipped; UNK decodes to the literal ``"[UNK]"``
        so an answer with an unknown word can never match a ground truth (dropping it would
        silently turn ``"[UNK] circle"`` into a possibly correct ``"circle"``).
        """
        if isinstance(ids, Tensor):
            if ids.dim() != 1:
                raise ValueError(f"decode expects 1-D ids, got shape {tuple(ids.shape)}; use decode_batch")
            ids = ids.tolist()
        words = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self._tokens):
                raise ValueError(f"token id {i} out of range for a vocabulary of {len(self._tokens)}")
            if i == self.eos_id:
                break
            if i not in (self.pad_id, self.bos_id):
                words.append(self._tokens[i])
        return " ".join(words)

    def decode_batch(self, ids: Tensor | Sequence[Sequence[int]]) -> list[str]:
        """:meth:`decode` of each row of ``ids [B, T]``."""
        if isinstance(ids, Tensor):
            if ids.dim() != 2:
                raise ValueError(f"decode_batch expects ids [B, T], got shape {tuple(ids.shape)}")
            ids = ids.tolist()
        return [self.decode(row) for row in ids]
