"""FusionModel: encoding each image once and gathering equals encoding it per question."""

import pytest
import torch

from mmfuse.config import load_config
from mmfuse.fusion import list_fusions
from mmfuse.model import build_model
from tests.conftest import TINY

VARIANTS = [(n, {}) for n in list_fusions()] + [("cross_attention", {"bidirectional": True})]


@pytest.mark.parametrize("name,hparams", VARIANTS, ids=[f"{n}{'-' + str(h) if h else ''}" for n, h in VARIANTS])
def test_image_once_equals_per_question(name: str, hparams: dict) -> None:
    torch.manual_seed(0)
    cfg = load_config(TINY, [f"model.fusion.name={name}"])
    cfg.model.fusion.hparams = hparams
    model = build_model(cfg.model, num_answers=5, text_vocab_size=50).eval()
    ids = torch.randint(5, 50, (5, 7))
    mask = torch.ones(5, 7, dtype=torch.long)
    mask[1, 4:] = 0
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    index = torch.tensor([0, 1, 1, 0, 1])
    text = {"input_ids": ids, "attention_mask": mask}
    grouped = model({"text": text, "image": images, "image_index": index})
    per_question = model({"text": text, "image": images[index]})
    torch.testing.assert_close(grouped["vqa"], per_question["vqa"], atol=1e-5, rtol=1e-5)
    a, b = grouped["fusion"].attention, per_question["fusion"].attention
    assert (a is None) == (b is None)
    if a is not None:
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
