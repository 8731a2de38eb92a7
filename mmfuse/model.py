"""``FusionModel(encoders, fusion, heads)`` and ``build_model(cfg, ...)``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn

from mmfuse.encoders import EncoderOutput, TextEncoder, VideoEncoder, VisionEncoder
from mmfuse.fusion import FusionOutput, build_fusion, check_inputs
from mmfuse.heads import ClassifierHead
from mmfuse.layers import normalize

log = logging.getLogger(__name__)

# model.modalities: the encoders a model may have (the config room keeps its own copy, config_checks.MODALITIES,
# as it may not import the model; tests/test_modalities.py checks that they agree)
MODALITIES = ("text", "image")


class UnimodalProjection(nn.Module):
    """The fusion's stand-in when a model has one modality (``model.modalities=[text]`` or ``[image]``):
    a unimodal baseline is one model whatever ``model.fusion.name`` says.

    The ``concat`` fusion's projection with a single input, ``LayerNorm(GELU(Linear(x)))``, applied to the
    pooled vector and, with the same weights, to every token (so heads that read tokens, the answer generator,
    get them in the pooled vector's space and no parameter goes unused).

    Shapes:
        ``inputs[modality]``: ``EncoderOutput`` (tokens ``[R,N,in_dim]``, mask ``[R,N]``, pooled ``[R,in_dim]``).
        output: ``FusionOutput(pooled [B,dim], tokens [B,N,dim], mask [B,N], attention None)``; ``B = R``, or
        with ``index={modality: [B]}`` (fast path: one image row per distinct image) the rows it selects.

    Args:
        modality: the one modality read from ``inputs`` (others are ignored).
        in_dim: its feature size.
        dim: output size (``model.fusion.dim``).
    """

    accepts_index = True  # project each image once, then gather per question

    def __init__(self, modality: str, in_dim: int, dim: int) -> None:
        super().__init__()
        self.modality = modality
        self.in_dims = {modality: int(in_dim)}
        self.dim = int(dim)
        self.proj = nn.Sequential(nn.Linear(in_dim, dim), nn.GELU(), nn.LayerNorm(dim))

    def forward(self, inputs: Mapping[str, EncoderOutput], index: Mapping[str, Tensor] | None = None) -> FusionOutput:
        (x,) = check_inputs(inputs, self.in_dims, "unimodal")
        pooled, tokens, mask = self.proj(x.pooled), self.proj(x.tokens), x.mask
        rows = (index or {}).get(self.modality)
        if rows is not None:
            pooled, tokens, mask = pooled[rows], tokens[rows], mask[rows]
        return FusionOutput(pooled=pooled, tokens=tokens, mask=mask)


class FusionModel(nn.Module):
    """Text and image encoders → fusion → task heads.

    Args:
        text: a text encoder (``forward(input_ids, attention_mask) -> EncoderOutput``), or None for an
            image-only model.
        image: the vision encoder with ``data_config``: an image encoder (``forward(images) ->
            EncoderOutput``) or a video encoder (``is_video = True``, ``forward(video, mask)``, e.g.
            :class:`~mmfuse.encoders.VideoEncoder`). Its output enters the fusion as the ``"image"``
            modality either way, so every fusion works on video unchanged. None for a text-only model.
        fusion: any module honouring the fusion contract (``dict[str, EncoderOutput] ->
            FusionOutput``): a registered one or a user's own (one modality: :class:`UnimodalProjection`).
        heads: task name → head (``FusionOutput -> logits``).
        data_config: without an image encoder, the ``{"img_size", "mean", "std"}`` it would have had (the data
            path still decodes images at the model's size).
        is_video: without an image encoder, whether the model was configured for video data.

    ``modalities`` lists the encoders present (``"text"``, ``"image"``); a missing one is never built and its
    input is never read from the batch.

    ``forward(batch)`` reads ``batch["text"]`` (``input_ids``/``attention_mask`` ``[B,L]``),
    ``batch["image"]`` (``[U,3,H,W]`` uint8 or already-normalised float) or, for a video encoder,
    ``batch["video"]`` (``[U,T,3,H,W]``, optional ``batch["video_mask"]`` ``[U,T]``), and the optional
    ``batch["image_index"]`` ``[B]`` mapping each question to its image row: each image is
    encoded once and its features gathered per question (a fusion whose ``accepts_index`` is
    True receives the per-image rows and ``index={"image": image_index}`` and gathers after its
    own per-image work; its output must equal that of the gathered inputs). Returns ``{"fusion": FusionOutput,
    "text": EncoderOutput [B,...], "image": EncoderOutput [U,...], "image_index": [B] | None, <task>: logits}``
    with logits for every classifier head (the answer generator runs in its task, it needs targets or
    a decoding strategy); a one-modality model's dict has no entry for the missing modality. :meth:`fuse`
    re-pairs the encoded questions with other image rows (ITM negatives).
    """

    mean: Tensor  # buffer [3]: the image encoder's normalisation
    std: Tensor  # buffer [3]

    def __init__(self, text: nn.Module | None, image: nn.Module | None, fusion: nn.Module,
                 heads: Mapping[str, nn.Module], data_config: Mapping[str, Any] | None = None,
                 is_video: bool = False) -> None:
        super().__init__()
        built = {name: enc for name, enc in (("text", text), ("image", image)) if enc is not None}
        if not built:
            raise ValueError("FusionModel needs a text or an image encoder (model.modalities)")
        self.encoders = nn.ModuleDict(built)
        self.modalities: tuple[str, ...] = tuple(built)
        self.fusion = fusion
        self.heads = nn.ModuleDict(dict(heads))
        if image is not None:
            data_config = cast(dict[str, Any], image.data_config)  # the vision encoder's preprocessing (a property)
            is_video = bool(getattr(image, "is_video", False))
        elif data_config is None:
            raise ValueError("a FusionModel without an image encoder needs data_config (img_size, mean, std): "
                             "the data path decodes images at the model's size")
        self.image_size: tuple[int, int] = tuple(data_config["img_size"])
        self.register_buffer("mean", torch.tensor(data_config["mean"]), persistent=False)
        self.register_buffer("std", torch.tensor(data_config["std"]), persistent=False)
        self.is_video = bool(is_video)

    def encode_image(self, images: Tensor, mask: Tensor | None = None) -> Any:
        """Encode ``[U,3,H,W]`` images, or ``[U,T,3,H,W]`` clips (with ``mask [U,T]``) for a video encoder."""
        if "image" not in self.encoders:
            raise RuntimeError("this model has no image encoder (model.modalities=[text]): it never reads images")
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

    def encode(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """``{modality: EncoderOutput}`` for this model's modalities only (``text [B,...]``, ``image [U,...]``):
        the input of a modality the model does not have is never read."""
        out: dict[str, Any] = {}
        if "text" in self.encoders:
            out["text"] = self.encoders["text"](batch["text"]["input_ids"], batch["text"]["attention_mask"])
        if "image" in self.encoders:
            out["image"] = self.encode_visual(batch)
        return out

    def fuse(self, text: Any | None, image: Any | None, index: Tensor | None) -> FusionOutput:
        """Fuse question rows ``text [B,...]`` with image rows ``image [U,...]`` (``index [B]``: row of
        each question's image; None: one image row per question). A one-modality model passes None for
        the other."""
        inputs = {name: x for name, x in (("text", text), ("image", image)) if x is not None}
        if index is not None and "image" in inputs:
            if getattr(self.fusion, "accepts_index", False):
                # the fusion gathers per-question rows itself, after its per-image work
                return self.fusion(inputs, index={"image": index})
            inputs["image"] = inputs["image"].index_select(index)  # per-image → per-question rows
        return self.fusion(inputs)

    def forward(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        enc = self.encode(batch)
        index = batch.get("image_index")
        fused = self.fuse(enc.get("text"), enc.get("image"), index)
        out: dict[str, Any] = {"fusion": fused, **enc, "image_index": index}
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

    ``model.modalities`` (default both) picks the encoders: with one modality the other encoder is not built
    and the fusion is bypassed (:class:`UnimodalProjection` to ``model.fusion.dim``, whatever
    ``model.fusion.name`` says; a ``fusion`` passed in is still used and gets that one modality).
    """
    if "model" in model_cfg:
        if num_frames is None:
            num_frames = ((model_cfg.get("data") or {}).get("video") or {}).get("num_frames")
        model_cfg = model_cfg["model"]
    modalities = check_modalities(model_cfg.get("modalities", MODALITIES))
    t, i, f = model_cfg["text"], model_cfg["image"], model_cfg["fusion"]
    video = model_cfg.get("video") or {}
    text: TextEncoder | None = None
    if "text" in modalities:
        text = TextEncoder(pretrained=t["pretrained"], config=dict(t["config"]), vocab_size=text_vocab_size,
                           pad_token_id=pad_token_id, freeze=t["freeze"],
                           dedupe=bool(t.get("dedupe", False)), pool=str(t.get("pool", "mean")),
                           embed_init_std=t.get("embed_init_std"))
    image: VisionEncoder | VideoEncoder | None = None  # the ViT, wrapped for clips below when video is enabled
    if "image" in modalities:
        image = build_vision_encoder(i)
        if video.get("enabled"):
            if num_frames is None:
                raise ValueError("a video model needs num_frames (data.video.num_frames): "
                                 "pass the whole config or num_frames=")
            image = VideoEncoder(image, int(num_frames), video["pooling"], video["output"],
                                 **dict(video.get("hparams") or {}))
    in_dims = {name: enc.out_dim for name, enc in (("text", text), ("image", image)) if enc is not None}
    if fusion is None and len(in_dims) == 1:
        (name, in_dim), = in_dims.items()
        log.warning("model.modalities=[%s]: the fusion is bypassed (model.fusion.name=%s is not built); %s "
                    "features are projected to model.fusion.dim=%d", name, f["name"], name, int(f["dim"]))
        fusion = UnimodalProjection(name, in_dim, int(f["dim"]))
    elif fusion is None:
        fusion = build_fusion(f["name"], in_dims, f["dim"], **dict(f["hparams"]))
    if callable(heads):
        heads = heads()
    if heads is None:
        if num_answers is None:
            raise ValueError("build_model needs heads (mmfuse.tasks.build_heads) or num_answers")
        heads = {"vqa": ClassifierHead(int(f["dim"]), num_answers)}
    # a text-only model keeps the ViT's input size and statistics: the data path decodes images at that size
    return FusionModel(text, image, fusion, heads, data_config=None if image is not None else vision_data_config(i),
                       is_video=bool(video.get("enabled")))


def check_modalities(modalities: Sequence[str]) -> tuple[str, ...]:
    """``model.modalities`` as a tuple in canonical order; ValueError unless it is a non-empty list of distinct
    names from :data:`MODALITIES` (``load_config`` checks the same, as a ``ConfigError``)."""
    given = [str(m) for m in modalities] if isinstance(modalities, Sequence) and not isinstance(modalities, str) \
        else None
    if not given or len(set(given)) != len(given) or not set(given) <= set(MODALITIES):
        raise ValueError(f"model.modalities is {modalities!r}; expected a non-empty list of distinct modalities "
                         f"from: {', '.join(MODALITIES)}")
    return tuple(m for m in MODALITIES if m in given)


def build_vision_encoder(image_cfg: Mapping[str, Any], weights: bool = True) -> VisionEncoder:
    """The ViT of the ``model.image`` config node (``weights=False``: no pretrained weights loaded, e.g. to
    read its input size and normalisation without a download)."""
    i = image_cfg
    return VisionEncoder(name=i["name"], pretrained=bool(i["pretrained"]) and weights,
                         checkpoint_path=i["checkpoint_path"] if weights else None, img_size=i["img_size"],
                         patch_size=i["patch_size"], embed_dim=i["embed_dim"], depth=i["depth"],
                         num_heads=i["num_heads"], stem=i["stem"], pos_embed=i.get("pos_embed", "learned"),
                         pool=i.get("pool", "cls"), coords=bool(i.get("coords", False)),
                         freeze=i["freeze"], **dict(i["kwargs"]))


def vision_data_config(image_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``{"img_size": (H, W), "mean", "std"}`` of the ``model.image`` ViT, read from a weightless copy built on
    the meta device (no memory, no download, no random numbers drawn)."""
    with torch.device("meta"):
        return build_vision_encoder(image_cfg, weights=False).data_config


def image_input_size(model_cfg: Mapping[str, Any]) -> tuple[int, int]:
    """``(H, W)`` the model's images are resized to (what the data path decodes to), from the ``model`` node."""
    return cast(tuple[int, int], tuple(vision_data_config(model_cfg["image"])["img_size"]))


def fuse_batch(model: FusionModel, batch: dict[str, Any]) -> FusionOutput:
    """The fused features of a batch (a :class:`~mmfuse.model.FusionModel`'s encoders and fusion only)."""
    enc = model.encode(batch)
    return model.fuse(enc.get("text"), enc.get("image"), batch.get("image_index"))
