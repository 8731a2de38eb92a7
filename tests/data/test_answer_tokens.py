"""AnswerTokenizer: special ids, vocabulary building, normalisation, encode/decode."""

from __future__ import annotations

import pytest
import torch

from mmfuse.data.answer_tokens import AnswerTokenizer
from mmfuse.metrics.vqa import normalize_answer

ANSWERS = ["red", "red circle", "Blue", "Red", "two", "the red!"]


@pytest.fixture
def tok() -> AnswerTokenizer:
    return AnswerTokenizer.from_answers(ANSWERS)


def test_special_ids_and_len(tok: AnswerTokenizer) -> None:
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id) == (0, 1, 2, 3)
    assert len(tok) == 4 + len(tok.words)
    assert tok.decode([4]) == tok.words[0]


def test_from_answers_order_min_count_max_words(tok: AnswerTokenizer) -> None:
    # normalised: red x4 ("Red", "the red!"), "2" (from "two"), blue, circle once each: ties alphabetical
    assert tok.words == ["red", "2", "blue", "circle"]
    assert AnswerTokenizer.from_answers(ANSWERS, min_count=2).words == ["red"]
    assert AnswerTokenizer.from_answers(ANSWERS, max_words=2).words == ["red", "2"]
    assert AnswerTokenizer.from_answers(reversed(ANSWERS)).words == tok.words  # order-independent
    with pytest.raises(ValueError):
        AnswerTokenizer.from_answers(ANSWERS, min_count=0)


def test_words_rebuild_tokenizer(tok: AnswerTokenizer) -> None:
    assert type(tok.words) is list
    again = AnswerTokenizer(tok.words)
    assert again.encode("red circle") == tok.encode("red circle")


def test_encode_normalises(tok: AnswerTokenizer) -> None:
    red, two, eos = 4, 5, 2
    assert tok.encode("Two") == tok.encode("2") == [two, eos]
    assert tok.encode("the red!") == tok.encode("RED.") == [red, eos]
    assert tok.encode("a") == [eos]  # articles are dropped: empty answer
    assert tok.decode(tok.encode("a")) == ""


def test_round_trip(tok: AnswerTokenizer) -> None:
    for a in ANSWERS + ["circle red", "Blue  circle.", "2 red-circle"]:
        assert tok.decode(tok.encode(a)) == normalize_answer(a)


def test_unknown_words_decode_to_unk(tok: AnswerTokenizer) -> None:
    assert tok.encode("purple circle") == [tok.unk_id, 7, tok.eos_id]
    assert tok.decode(tok.encode("purple circle")) == "[UNK] circle"


def test_encode_batch_padding_and_truncation(tok: AnswerTokenizer) -> None:
    ids = tok.encode_batch(["red circle", "two", "a"], max_length=8)
    assert ids.dtype == torch.long
    assert ids.tolist() == [[4, 7, 2], [5, 2, 0], [2, 0, 0]]  # T = longest row, PAD-filled
    cut = tok.encode_batch(["red circle", "two"], max_length=2)
    assert cut.tolist() == [[4, 7], [5, 2]]  # the words are kept, the EOS that does not fit is dropped
    assert tok.encode_batch([], max_length=4).shape == (0, 0)
    with pytest.raises(ValueError):
        tok.encode_batch(["red"], max_length=0)


def test_decode_stops_at_eos_and_skips_pad_bos(tok: AnswerTokenizer) -> None:
    assert tok.decode([1, 4, 0, 7, 2, 5, 5]) == "red circle"
    assert tok.decode(torch.tensor([5, 2, 4])) == "2"
    assert tok.decode([4, 7]) == "red circle"  # no EOS: everything
    assert tok.decode_batch(torch.tensor([[4, 2, 0], [3, 6, 2]])) == ["red", "[UNK] blue"]
    with pytest.raises(ValueError):
        tok.decode([len(tok)])


@pytest.mark.parametrize("words", [["red", "red"], ["red circle"], [""], ["[EOS]"]])
def test_invalid_words(words: list[str]) -> None:
    with pytest.raises(ValueError):
        AnswerTokenizer(words)
