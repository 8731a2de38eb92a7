"""The partial-credit reward ``position_accuracy`` (Sort-of-CLEVR colour_order) against values computed by hand."""

from __future__ import annotations

import pytest
import torch

import mmfuse
from mmfuse.rl.rewards import get_reward, list_rewards, position_accuracy

GOLD = "red blue gray green orange yellow"


@pytest.mark.parametrize(("prediction", "want"), [
    (GOLD, 1.0),                                            # all right
    ("yellow orange green gray blue red", 0.0),             # reversed: no word in its place
    ("red gray blue green orange yellow", 4 / 6),           # one adjacent swap spoils two positions
    ("red blue gray green orange red", 5 / 6),              # one word off
    ("red blue gray", 3 / 6),                               # shorter: the missing positions are wrong
    (GOLD + " red", 6 / 7),                                 # longer: divided by the longer length
    (GOLD + " red red red red red red", 6 / 12),            # padding after a right prefix does not pay
    ("blue gray green orange yellow", 0.0),                 # a dropped first word shifts every later one
    ("", 0.0),                                              # nothing said
    ("The Red, blue. gray green orange yellow!", 1.0),      # normalised like every reward (article, case, punct.)
])
def test_position_accuracy_hand_values(prediction: str, want: float) -> None:
    assert position_accuracy(prediction, GOLD) == pytest.approx(want, abs=1e-12)


def test_empty_gold_and_one_word_answers() -> None:
    assert position_accuracy("", "a") == 1.0  # both normalise to nothing: equal, as exact_match
    assert position_accuracy("the", "") == 1.0 and position_accuracy("red", "") == 0.0
    # a one-word answer scores exactly its exact match
    preds, gts = ["Red.", "blue", "two", "x"], [["red"], ["red"], ["2"], []]
    batch = {"answers": gts}
    torch.testing.assert_close(get_reward("position_accuracy")(preds, batch), get_reward("exact_match")(preds, batch))


def test_registered_reward_scores_against_the_majority_answer() -> None:
    assert "position_accuracy" in list_rewards()
    swapped = "red gray blue green orange yellow"
    noisy = [GOLD] * 7 + [swapped] * 3  # 10 annotators, 3 with an adjacent swap
    reward = get_reward("position_accuracy")
    got = reward([swapped, GOLD, "red blue", GOLD], {"answers": [noisy, noisy, [GOLD, swapped, swapped], []]})
    assert got.dtype == torch.float32 and got.shape == (4,)
    # an annotator's noisy answer is not gold (4/6); the majority of row 2 is the swapped order; no GT -> 0
    torch.testing.assert_close(got, torch.tensor([4 / 6, 1.0, 1 / 6, 0.0]))
    with pytest.raises(ValueError, match="2 predictions but 1 rows"):
        reward(["a", "b"], {"answers": [["a"]]})


def test_is_a_valid_rl_reward_choice() -> None:
    cfg = mmfuse.load_config(None, ["rl.reward=position_accuracy"])
    assert cfg.rl.reward == "position_accuracy"
