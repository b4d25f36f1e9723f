"""Real timm models (``deit_small_patch16_224``, ``vit_small_patch16_224``, ``swin_small_patch4_window7_224``, ...).

Weights come from a local checkpoint file, else from the user's Hugging Face cache (``timm/<name>.<tag>``) or torch
hub cache (timm's legacy URL weights). Nothing is downloaded unless ``download=True``: offline and uncached is one
:class:`~roundlab.errors.RoundlabError` line naming where roundlab looked.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from roundlab.errors import RoundlabError

_HF_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


def is_timm_name(name: str) -> bool:
    import timm

    try:
        return bool(timm.is_model(name))
    except Exception:   # noqa: BLE001 - a malformed name is simply not a timm name
        return False


def _pretrained_cfg(name: str) -> dict:
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    if cfg is None:
        raise RoundlabError(f"timm has no pretrained weights registered for {name!r}; pass a checkpoint file")
    return cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg.__dict__)


def find_cached_weights(name: str) -> tuple[Path | None, list[str]]:
    """The cached weights file for timm model ``name`` (with or without ``.tag``) and the places looked in."""
    cfg = _pretrained_cfg(name)
    looked: list[str] = []
    hub_id = cfg.get("hf_hub_id")
    if hub_id:
        try:
            from huggingface_hub import constants, try_to_load_from_cache

            files = ([cfg["hf_hub_filename"]] if cfg.get("hf_hub_filename") else []) + list(_HF_FILES)
            looked.append(f"HF cache {constants.HF_HUB_CACHE} ({hub_id})")
            for filename in files:
                hit = try_to_load_from_cache(hub_id, filename)
                if isinstance(hit, str) and os.path.isfile(hit):
                    return Path(hit), looked
        except ImportError:
            looked.append("HF cache (huggingface_hub not installed)")
    url = cfg.get("url")
    if url:
        hub_dir = Path(torch.hub.get_dir()) / "checkpoints"
        looked.append(f"torch hub cache {hub_dir}")
        candidate = hub_dir / os.path.basename(url.split("?")[0])
        if candidate.is_file():
            return candidate, looked
    return None, looked


def load_timm_model(name: str, checkpoint: str | Path | None = None, download: bool = False) -> torch.nn.Module:
    """A timm model with pretrained weights from ``checkpoint``, the local caches, or (``download=True``) the hub."""
    import timm

    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise RoundlabError(f"checkpoint file not found: {path}")
        overlay = {"file": str(path), "source": "", "state_dict": None}
    elif download:
        overlay = None
    else:
        found, looked = find_cached_weights(name)
        if found is None:
            raise RoundlabError(f"no local weights for timm model {name!r} (looked in {'; '.join(looked) or 'nothing'}); "
                                "pass --checkpoint FILE, or download once online (download=True)")
        path = found
        overlay = {"file": str(found), "source": "", "state_dict": None}
    try:
        if overlay is None:
            return timm.create_model(name, pretrained=True)
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay)
    except RoundlabError:
        raise
    except Exception as e:   # noqa: BLE001 - timm/hub/torch raise many types; the user needs one line
        where = "the hub" if overlay is None else str(path)
        misfit = None if overlay is None else checkpoint_misfit(name, path)
        if misfit:
            raise RoundlabError(f"checkpoint {path} does not fit timm model {name!r}: {misfit}") from None
        msg = " ".join(str(e).split())[:300]
        raise RoundlabError(f"could not load weights for timm model {name!r} from {where}: "
                            f"{type(e).__name__}: {msg}") from None


def _read_state_dict(path: Path) -> dict | None:
    """The tensors of a weights file (safetensors, or a torch file holding a state dict, possibly under
    ``model``/``state_dict``); None when it cannot be read that way."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:   # noqa: BLE001 - unreadable: the caller reports timm's own error
        return None
    for key in ("model", "state_dict"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    return sd if isinstance(sd, dict) and all(isinstance(v, torch.Tensor) for v in sd.values()) else None


def checkpoint_misfit(name: str, path: Path) -> str | None:
    """What keeps the weights file from fitting timm model ``name`` (keys missing or unexpected, tensors of another
    shape, each with its first example), or None when the file cannot be read or seems to fit."""
    import timm

    found = _read_state_dict(path)
    if found is None:
        return None
    wanted = timm.create_model(name, pretrained=False).state_dict()
    missing = [k for k in wanted if k not in found]
    unexpected = [k for k in found if k not in wanted]
    shaped = [k for k in wanted if k in found and tuple(found[k].shape) != tuple(wanted[k].shape)]
    parts = []
    if shaped:
        k = shaped[0]
        parts.append(f"{len(shaped)} tensor(s) of another shape (first: {k} is {tuple(found[k].shape)} in the file, "
                     f"{tuple(wanted[k].shape)} in the model — weights of another model size?)")
    if missing:
        parts.append(f"{len(missing)} key(s) missing (first: {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s) (first: {unexpected[0]})")
    return "; ".join(parts) or None


def timm_data_config(model: torch.nn.Module) -> dict:
    """The model's own eval data config (input size, interpolation, crop, mean/std) plus dataset and class count."""
    from timm.data import resolve_model_data_config

    cfg = dict(resolve_model_data_config(model))
    cfg["num_classes"] = getattr(model, "num_classes", 1000)
    cfg["dataset"] = "imagenet"
    return cfg
