"""Every numeric value is range-checked and every fusion / pooling option type-checked at load_config,
naming the key, the value and what is valid; bad values never reach training."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mmfuse.config import ConfigError, load_config
from mmfuse.data.images import load_image, to_rgb
from tests.conftest import TINY


@pytest.mark.parametrize(("override", "expected"), [
    ("optim.lr=-1", "'optim.lr' is -1; expected a finite number > 0"),
    ("optim.lr=0", "'optim.lr' is 0; expected a finite number > 0"),
    ("data.batch_size=-5", "'data.batch_size' is -5; expected an integer >= 1"),
    ("trainer.max_epochs=-3", "'trainer.max_epochs' is -3; expected an integer -1 or >= 1"),
    ("data.val_fraction=1.5", "'data.val_fraction' is 1.5; expected a finite number [0, 1)"),
    ("data.answer_vocab.top_k=0", "'data.answer_vocab.top_k' is 0; expected an integer >= 1"),
    ("optim.betas=[0.9]", "'optim.betas' is [0.9]; expected two numbers in [0, 1)"),
    ("optim.betas=[0.9,1.0]", "'optim.betas' is [0.9, 1.0]; expected two numbers in [0, 1)"),
    ("tasks.vqa.weight=-1", "'tasks.vqa.weight' is -1; expected a finite number >= 0"),
    ("optim.weight_decay=.nan", "'optim.weight_decay' is nan; expected a finite number >= 0"),
    ("data.max_question_length=100", "'data.max_question_length' is 100, more than the text model's 40 positions"),
    ("model.fusion.hparams.num_layers=two", "'model.fusion.hparams.num_layers' is 'two'; expected int"),
    ("model.fusion.hparams.num_layers=1.5", "'model.fusion.hparams.num_layers' is 1.5; expected int"),
])
def test_bad_values_stop_at_load_naming_key_and_range(override: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(TINY, [override])
    assert expected in str(err.value)


@pytest.mark.parametrize("override", [
    "optim.lr=1e-4", "trainer.max_epochs=-1", "trainer.max_steps=5", "data.val_fraction=0", "optim.betas=[0,0.5]",
    "model.fusion.hparams.num_layers=2", "data.limit_questions=null", "optim.grad_clip=0",
])
def test_values_in_range_pass(override: str) -> None:
    load_config(TINY, [override])


def test_video_pooling_options_are_type_checked() -> None:
    with pytest.raises(ConfigError, match=r"'model.video.hparams.num_layers' is 'x'; expected int"):
        load_config(["configs/data/video_qa.yaml", str(TINY)],
                    ["model.video.pooling=temporal_transformer", "model.video.hparams.num_layers=x"])


def test_sixteen_bit_and_float_images_are_scaled_not_clipped(tmp_path) -> None:
    ramp = np.arange(16, dtype=np.uint16).reshape(4, 4) * 4369  # 0 .. 65535
    Image.fromarray(ramp).save(tmp_path / "g16.png")  # mode I;16
    with Image.open(tmp_path / "g16.png") as im:
        assert im.mode == "I;16"
    pixels = load_image(str(tmp_path / "g16.png"))  # [3,4,4] uint8
    assert pixels[0].flatten().tolist() == list(range(0, 256, 17)) and (pixels[0] == pixels[2]).all()
    floats = Image.fromarray(np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4))  # mode F in [0, 1]
    assert np.asarray(to_rgb(floats))[..., 1].flatten().tolist() == list(range(0, 256, 17))
    rgba = Image.new("RGBA", (2, 2), (10, 20, 30, 0))
    assert np.asarray(to_rgb(rgba))[0, 0].tolist() == [10, 20, 30]
