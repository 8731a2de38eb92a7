"""``FusionModel(encoders, fusion, heads)`` and ``build_model(cfg, ...)``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

import torch
from torch import Tensor, nn

from mmfuse.encoders import TextEncoder, VideoEncoder, VisionEncoder
from mmfuse.fusion import FusionOutput, build_fusion
from mmfuse.heads import ClassifierHead
from mmfuse.layers import normalize


class FusionModel(nn.Module):
    """Text and image encoders → fusion → task heads.

    Args:
        text: a text encoder (``forward(input_ids, attention_mask) -> EncoderOutput``).
        image: the vision encoder with ``data_config``: an image encoder (``forward(images) ->
            EncoderOutput``) or a video encoder (``is_video = True``, ``forward(video, mask)``, e.g.
            :class:`~mmfuse.encoders.VideoEncoder`). Its output enters the fusion as the ``"image"``
            modality either way, so every fusion works on video unchanged.
        fusion: any module honouring the fusion contract (``dict[str, EncoderOutput] ->
            FusionOutput``): a registered one or a user's own.
        heads: task name → head (``FusionOutput -> logits``).

    ``forward(batch)`` reads ``batch["text"]`` (``input_ids``/``attention_mask`` ``[B,L]``),
    ``batch["image"]`` (``[U,3,H,W]`` uint8 or already-normalised float) or, for a video encoder,
    ``batch["video"]`` (``[U,T,3,H,W]``, optional ``batch["video_mask"]`` ``[U,T]``), and the optional
    ``batch["image_index"]`` ``[B]`` mapping each question to its image row: each image is
    encoded once and its features gathered per question (a fusion whose ``accepts_index`` is
    True receives the per-image rows and ``index={"image": image_index}`` and gathers after its
    own per-image work; its output must equal that of the gathered inputs). Returns ``{"fusion": FusionOutput,
    "text": EncoderOutput [B,...], "image": EncoderOutput [U,...], "image_index": [B] | None, <task>: logits}``
    with logits for every classifier head (the answer generator runs in its task, it needs targets or
    a decoding strategy). :meth:`fuse` re-pairs the encoded questions with other image rows (ITM negatives).
    """

    mean: Tensor  # buffer [3]: the image encoder's normalisation
    std: Tensor  # buffer [3]

    def __init__(self, text: nn.Module, image: nn.Module, fusion: nn.Module, heads: Mapping[str, nn.Module]) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict({"text": text, "image": image})
        self.fusion = fusion
        self.heads = nn.ModuleDict(dict(heads))
        dc = cast(dict[str, Any], image.data_config)  # the vision encoder's preprocessing (a property)
        self.image_size: tuple[int, int] = dc["img_size"]
        self.register_buffer("mean", torch.tensor(dc["mean"]), persistent=False)
        self.register_buffer("std", torch.tensor(dc["std"]), persistent=False)
        self.is_video = bool(getattr(image, "is_video", False))

    def encode_image(self, images: Tensor, mask: Tensor | None = None) -> Any:
        """Encode ``[U,3,H,W]`` images, or ``[U,T,3,H,W]`` clips (with ``mask [U,T]``) for a video encoder."""
        if images.dtype == torch.uint8:
            shape = images.shape
            images = normalize(images.reshape(-1, *shape[-3:]), self.mean, self.std).reshape(shape)
        if self.is_video:
            return self.encoders["image"](images, mask)
        return self.encoders["image"](images)

    def encode_visual(self, batch: Mapping[str, Any]) -> Any:
        """Encode the batch's ``video`` (video encoder) or ``image``; a mismatch says which is missing."""
        key = "video" if self.is_video else "image"
        if key not in batch:
            have = "video" if "video" in batch else "image" if "image" in batch else "neither"
            raise KeyError(f"this model encodes {'videos (model.video.enabled=true)' if self.is_video else 'images'} "
                           f"but the batch has {'no visual input' if have == 'neither' else 'a ' + repr(have)}; "
                           "set model.video.enabled to match the data")
        return self.encode_image(batch[key], batch.get("video_mask") if self.is_video else None)

    def fuse(self, text: Any, image: Any, index: Tensor | None) -> FusionOutput:
        """Fuse question rows ``text [B,...]`` with image rows ``image [U,...]`` (``index [B]``: row of
        each question's image; None: one image row per question)."""
        if index is not None and getattr(self.fusion, "accepts_index", False):
            # the fusion gathers per-question rows itself, after its per-image work
            return self.fusion({"text": text, "image": image}, index={"image": index})
        if index is not None:
            image = image.index_select(index)  # per-image → per-question rows
        return self.fusion({"text": text, "image": image})

    def forward(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        text = self.encoders["text"](batch["text"]["input_ids"], batch["text"]["attention_mask"])
        image = self.encode_visual(batch)
        index = batch.get("image_index")
        fused = self.fuse(text, image, index)
        out: dict[str, Any] = {"fusion": fused, "text": text, "image": image, "image_index": index}
        for name, head in self.heads.items():
            if isinstance(head, ClassifierHead):
                out[name] = head(fused)
        return out


def build_model(model_cfg: Mapping[str, Any], num_answers: int | None = None, text_vocab_size: int | None = None,
                pad_token_id: int = 0, fusion: nn.Module | None = None,
                heads: Mapping[str, nn.Module] | Callable[[], Mapping[str, nn.Module]] | None = None,
                num_frames: int | None = None) -> FusionModel:
    """Build a :class:`FusionModel` from the ``model`` config node (or the whole config).

    Sizes flow one way: encoders report ``out_dim`` → the fusion gets ``in_dims`` and
    ``dim`` → heads get ``dim`` and their sizes from the data. ``heads`` are normally built by the
    tasks (:func:`mmfuse.tasks.build_heads`, what the systems do), or a callable returning them, called
    after the encoders and fusion so the parameters are initialised in that order; without them, ``num_answers``
    gives a lone ``vqa`` answer classifier with the ``tasks.vqa`` defaults. Pass ``fusion`` to use a
    built module instead of ``model.fusion.name``.

    With ``model.video.enabled`` the ViT is wrapped in a :class:`VideoEncoder` (``model.video.pooling``,
    ``output``, ``hparams``) for clips of up to ``num_frames`` frames (default: ``data.video.num_frames``
    when the whole config is given).
    """
    if "model" in model_cfg:
        if num_frames is None:
            num_frames = ((model_cfg.get("data") or {}).get("video") or {}).get("num_frames")
        model_cfg = model_cfg["model"]
    t, i, f = model_cfg["text"], model_cfg["image"], model_cfg["fusion"]
    text = TextEncoder(pretrained=t["pretrained"], config=dict(t["config"]), vocab_size=text_vocab_size,
                       pad_token_id=pad_token_id, freeze=t["freeze"])
    image: VisionEncoder | VideoEncoder  # the ViT, wrapped for clips below when video is enabled
    image = build_vision_encoder(i)
    video = model_cfg.get("video") or {}
    if video.get("enabled"):
        if num_frames is None:
            raise ValueError("a video model needs num_frames (data.video.num_frames): "
                             "pass the whole config or num_frames=")
        image = VideoEncoder(image, int(num_frames), video["pooling"], video["output"],
                             **dict(video.get("hparams") or {}))
    if fusion is None:
        in_dims = {"text": text.out_dim, "image": image.out_dim}
        fusion = build_fusion(f["name"], in_dims, f["dim"], **dict(f["hparams"]))
    if callable(heads):
        heads = heads()
    if heads is None:
        if num_answers is None:
            raise ValueError("build_model needs heads (mmfuse.tasks.build_heads) or num_answers")
        heads = {"vqa": ClassifierHead(int(f["dim"]), num_answers)}
    return FusionModel(text, image, fusion, heads)


def build_vision_encoder(image_cfg: Mapping[str, Any], weights: bool = True) -> VisionEncoder:
    """The ViT of the ``model.image`` config node (``weights=False``: no pretrained weights loaded, e.g. to
    read its input size and normalisation without a download)."""
    i = image_cfg
    return VisionEncoder(name=i["name"], pretrained=bool(i["pretrained"]) and weights,
                         checkpoint_path=i["checkpoint_path"] if weights else None, img_size=i["img_size"],
                         patch_size=i["patch_size"], embed_dim=i["embed_dim"], depth=i["depth"],
                         num_heads=i["num_heads"], stem=i["stem"], freeze=i["freeze"], **dict(i["kwargs"]))


def image_input_size(model_cfg: Mapping[str, Any]) -> tuple[int, int]:
    """``(H, W)`` the model's images are resized to (what the data path decodes to), from the ``model`` node."""
    return cast(tuple[int, int], tuple(build_vision_encoder(model_cfg["image"], weights=False).data_config["img_size"]))


def fuse_batch(model: FusionModel, batch: dict[str, Any]) -> FusionOutput:
    """The fused features of a batch (a :class:`~mmfuse.model.FusionModel`'s encoders and fusion only)."""
    text = model.encoders["text"](batch["text"]["input_ids"], batch["text"]["attention_mask"])
    return model.fuse(text, model.encode_visual(batch), batch.get("image_index"))
