"""mmfuse: multimodal fusion research on PyTorch Lightning.

Public API::

    cfg = mmfuse.load_config("configs/experiments/easy_vqa.yaml", ["model.fusion.name=concat"])
    result = mmfuse.train(cfg)

    @mmfuse.register_fusion("my_fusion")
    class MyFusion(nn.Module): ...
"""

from mmfuse.config import ConfigError, load_config
from mmfuse.encoders import EncoderOutput
from mmfuse.fusion import FusionOutput, build_fusion, list_fusions, register_fusion
from mmfuse.model import FusionModel, build_model
from mmfuse.train import build_datamodule, evaluate, load_system, train
from mmfuse.crossval import cross_validate  # noqa: E402  (after train: it builds on it)

__version__ = "0.1.0"
__all__ = [
    "ConfigError", "EncoderOutput", "cross_validate", "FusionModel", "FusionOutput", "build_datamodule", "build_fusion",
    "build_model", "evaluate", "list_fusions", "load_config", "load_system", "register_fusion", "train",
]
