"""Question tokenizers: the pretrained model's own, or a WordPiece vocabulary trained offline
on the training questions with ``tokenizers`` (saved with the run and inside checkpoints)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from mmfuse.data.ragged import RaggedIds

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]",
    )


def wordpiece_vocab(texts: Iterable[str], vocab_size: int = 1000, lowercase: bool = True) -> dict[str, int]:
    """A WordPiece vocabulary of ``texts``, the same on every call and in every process.

    Ids: the special tokens, every character seen, alone and as a ``##`` continuation (so any word of seen
    characters can be spelt), then whole words by frequency (ties alphabetical) up to ``vocab_size``. A
    word outside the vocabulary is split by WordPiece's greedy longest match.
    (``tokenizers``' own WordPiece trainer breaks ties between equally frequent merges in an order that
    changes from process to process: two runs, or two ranks of one distributed run, would number tokens
    differently.)
    """
    normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    splitter = pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(w for w, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({c for w in counts for c in w})  # each as a word start and as a continuation: any word
    alphabet = chars + ["##" + c for c in chars]      # made of seen characters can be spelt
    vocab = dict.fromkeys([*SPECIALS, *alphabet])
    for word in sorted(counts, key=lambda w: (-counts[w], w)):
        if len(vocab) >= vocab_size:
            break
        vocab.setdefault(word)
    return {token: i for i, token in enumerate(vocab)}


def train_wordpiece(texts: Iterable[str], vocab_size: int = 1000, lowercase: bool = True) -> PreTrainedTokenizerFast:
    """A BERT-style WordPiece tokenizer (``[CLS] question [SEP]``) with the vocabulary of
    :func:`wordpiece_vocab` (deterministic)."""
    tok = Tokenizer(models.WordPiece(wordpiece_vocab(texts, vocab_size, lowercase), unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return _wrap(tok)


def tokenizer_from_json(text: str) -> PreTrainedTokenizerFast:
    """Rebuild a trained tokenizer from its JSON (as stored in a checkpoint)."""
    return _wrap(Tokenizer.from_str(text))


def tokenizer_to_json(tok: PreTrainedTokenizerFast) -> str:
    """The serialised tokenizer, small enough to live inside a checkpoint."""
    return tok.backend_tokenizer.to_str()


def build_tokenizer(
    pretrained: str | None,
    train_questions: Iterable[str] | None = None,
    vocab_size: int = 1000,
    save_dir: Path | None = None,
) -> PreTrainedTokenizerBase:
    """The pretrained text model's tokenizer, or a WordPiece one trained on ``train_questions``.

    A trained tokenizer is saved to ``save_dir`` (``tokenizer.json`` and friends) when given.
    """
    if pretrained is not None:
        return AutoTokenizer.from_pretrained(pretrained)
    if train_questions is None:
        raise ValueError("no pretrained text model and no training questions to train a tokenizer on")
    tok = train_wordpiece(train_questions, vocab_size=vocab_size)
    if save_dir is not None:
        tok.save_pretrained(str(save_dir))
    return tok


def tokenize_questions(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], limit: int
                       ) -> tuple[RaggedIds, list[int]]:
    """``texts`` as token ids with ``[CLS]``/``[SEP]``, each cut to ``limit`` tokens as the tokenizer's own
    truncation does (``[CLS]``, the first tokens, ``[SEP]``); returns the ids and the positions that were cut.
    In slices of 8,192: the tokenizer's own per-question lists are large."""
    ids, cut = RaggedIds(), []
    for start in range(0, len(texts), 8192):
        rows = tokenizer(list(texts[start:start + 8192]), add_special_tokens=True, return_attention_mask=False,
                         return_token_type_ids=False)["input_ids"]
        for j, row in enumerate(rows):
            if len(row) > limit:
                rows[j] = row[:limit - 1] + row[-1:]
                cut.append(start + j)
        ids.extend(rows)
    return ids, cut
