"""A new fusion, temporal pooling, data source, loss weighting or reward is its own file plus one import:
it is then a valid config choice (and its options valid config keys) with no edit anywhere else."""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from mmfuse.config import load_config
from mmfuse.data.sources import SOURCES, load_records
from mmfuse.encoders.temporal import TEMPORAL_POOLINGS, build_temporal_pooling
from mmfuse.errors import ConfigError
from mmfuse.fusion import FUSIONS
from mmfuse.model import build_model
from mmfuse.objectives.multitask import WEIGHTINGS, build_weighting
from mmfuse.rl.advantages import ADVANTAGES
from mmfuse.rl.rewards import REWARDS, get_reward
from tests.conftest import TINY

FILES = {
    "fusion": ("model.fusion.name", "model.fusion.hparams.scale", '''
        import torch
        from torch import nn
        from mmfuse.fusion import FusionOutput, register_fusion

        @register_fusion("ext_product")
        class ProductFusion(nn.Module):
            """``pooled = scale * tanh(W_t t) * tanh(W_v v)``."""

            def __init__(self, in_dims: dict[str, int], dim: int, *, scale: float = 1.0) -> None:
                super().__init__()
                self.scale = scale
                self.proj = nn.ModuleDict({m: nn.Linear(d, dim) for m, d in in_dims.items()})

            def forward(self, inputs):
                t, v = (torch.tanh(self.proj[m](inputs[m].pooled)) for m in ("text", "image"))
                return FusionOutput(pooled=self.scale * t * v)
    '''),
    "pooling": ("model.video.pooling", "model.video.hparams.power", '''
        from torch import nn
        from mmfuse.encoders.temporal import TemporalOutput, register_temporal_pooling
        from mmfuse.layers import masked_mean

        @register_temporal_pooling("ext_power_mean")
        class PowerMean(nn.Module):
            def __init__(self, dim: int, num_frames: int, *, power: float = 2.0) -> None:
                super().__init__()
                self.power = power

            def forward(self, frames, mask):
                x = frames.masked_fill(~mask[..., None], 0.0)
                return TemporalOutput(x, masked_mean(x.abs() ** self.power, mask, dim=1))
    '''),
    "source": ("data.source", None, '''
        from mmfuse.data.schema import QARecord
        from mmfuse.data.sources import register_source

        @register_source("ext_toy")
        def load(split, spec, root):
            return [QARecord(question_id=f"{split}-0", image="a.png", question="what?", answers=["yes"] * 10,
                             answer_type="yes/no")]
    '''),
    "weighting": ("loss.weighting", "loss.options.floor", '''
        from mmfuse.objectives.multitask import LossWeighting, register_weighting

        @register_weighting("ext_floor")
        class Floor(LossWeighting):
            """Static weights, never below ``floor``."""

            def __init__(self, tasks, weights=None, *, floor: float = 0.5) -> None:
                super().__init__(tasks, weights)
                self.static = {t: max(w, floor) for t, w in self.static.items()}
    '''),
    "reward": ("rl.reward", None, '''
        import torch
        from mmfuse.rl.rewards import register_reward

        @register_reward("ext_length")
        def length_reward(predictions, batch):
            return torch.tensor([float(len(p.split())) for p in predictions])
    '''),
    "advantage": ("rl.advantage", None, '''
        from mmfuse.rl.advantages import Advantages, register_advantage

        @register_advantage("ext_score_only")
        def score_only(inp, opt):
            """Every token gets its answer's summed reward: no baseline at all."""
            total = (inp.rewards * inp.mask).sum(-1, keepdim=True)
            return Advantages(total.expand_as(inp.rewards) * inp.mask, None)
    '''),
}
NAMES = {"fusion": "ext_product", "pooling": "ext_power_mean", "source": "ext_toy", "weighting": "ext_floor",
         "reward": "ext_length", "advantage": "ext_score_only"}
REGISTRIES = {"fusion": FUSIONS, "pooling": TEMPORAL_POOLINGS, "source": SOURCES, "weighting": WEIGHTINGS,
              "reward": REWARDS, "advantage": ADVANTAGES}


def overrides(kind: str, option: bool) -> list[str]:
    key, opt, _ = FILES[kind]
    out = [f"{key}={NAMES[kind]}"]
    if kind == "pooling":
        out.append("model.video.enabled=true")
    if option and opt:
        out.append(f"{opt}=3")
    return out


@pytest.fixture
def register(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write the component's file, then import it (the one registration import); the registry is restored
    afterwards, so nothing leaks into other tests."""

    def do(kind: str) -> None:
        registry = REGISTRIES[kind]
        monkeypatch.setattr(registry, "_items", dict(registry._items))
        module = f"mmfuse_ext_{kind}"
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(FILES[kind][2]))
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.delitem(sys.modules, module, raising=False)
        importlib.import_module(module)
        monkeypatch.delitem(sys.modules, module)

    return do


@pytest.mark.parametrize("kind", sorted(FILES))
def test_a_new_component_is_a_config_choice_after_its_import(kind: str, register) -> None:
    key = FILES[kind][0]
    with pytest.raises(ConfigError, match=rf"{key}.*valid choices"):
        load_config(TINY, overrides(kind, option=False))
    register(kind)
    cfg = load_config(TINY, overrides(kind, option=True))
    assert OmegaConf.select(cfg, key) == NAMES[kind]


def test_the_new_parts_work(register) -> None:
    for kind in FILES:
        register(kind)
    cfg = load_config(TINY, ["model.fusion.name=ext_product", "model.fusion.hparams.scale=0.5"])
    model = build_model(cfg.model, num_answers=3, text_vocab_size=50).eval()
    batch = {"text": {"input_ids": torch.randint(5, 50, (2, 6)), "attention_mask": torch.ones(2, 6, dtype=torch.long)},
             "image": torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)}
    assert model.fusion.scale == 0.5 and model(batch)["vqa"].shape == (2, 3)
    pool = build_temporal_pooling("ext_power_mean", 4, 3, power=1.0)
    frames, mask = torch.tensor([[[1.0, -2, 3, 4], [3, 2, -1, 0], [9, 9, 9, 9]]]), torch.tensor([[True, True, False]])
    torch.testing.assert_close(pool(frames, mask).pooled, torch.tensor([[2.0, 2.0, 2.0, 2.0]]))
    assert [r.question_id for r in load_records("ext_toy", "test", None, None)] == ["test-0"]
    weighting = build_weighting("ext_floor", ["a", "b"], {"a": 0.1, "b": 2.0}, floor=0.25)
    total, weights = weighting({"a": torch.tensor(4.0), "b": torch.tensor(1.0)})
    assert weights == {"a": 0.25, "b": 2.0} and float(total) == pytest.approx(3.0)
    assert get_reward("ext_length")(["a b", "c"], {}).tolist() == [2.0, 1.0]


def test_config_py_names_no_registered_part() -> None:
    """The choice lists come from the components: no registered name is spelt out in config.py."""
    text = (Path(__file__).resolve().parent.parent / "mmfuse" / "config.py").read_text()
    for registry in REGISTRIES.values():
        for name in registry.names():
            assert f'"{name}"' not in text and f"'{name}'" not in text, f"{name!r} is restated in config.py"
