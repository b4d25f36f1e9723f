"""The model zoo: small timm transformers trained on Fashion-MNIST (committed), and real timm names.

    from roundlab.zoo import list_models, load_model, ModelCard
    model, data_cfg = load_model("fmnist-vit")                        # FP timm model in eval mode + its data config
    model, data_cfg = load_model("deit_small_patch16_224")            # weights from the local HF/torch-hub cache
    model, data_cfg = load_model("vit_small_patch16_224", checkpoint="weights.safetensors")

``data_cfg`` is a timm-style data config (``input_size``, ``mean``, ``std``, ``interpolation``, ``crop_pct``, ...)
plus ``dataset`` ("fashion-mnist" or "imagenet") and ``num_classes``; pass it to ``roundlab.data.load_dataset``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from roundlab.errors import RoundlabError
from roundlab.zoo.card import CHECKPOINT_DIR, ModelCard
from roundlab.zoo.registry import ZOO, Recipe, ZooEntry, get_entry, register_zoo_model

__all__ = ["list_models", "load_model", "ModelCard", "Recipe", "ZooEntry", "ZOO", "get_entry", "register_zoo_model",
           "checkpoint_path", "load_card", "CHECKPOINT_DIR"]


def list_models(trained_only: bool = False) -> list[str]:
    """Zoo model names (``trained_only``: those with a committed checkpoint)."""
    return [n for n in ZOO if not trained_only or checkpoint_path(n).is_file()]


def checkpoint_path(name: str, directory: str | Path | None = None) -> Path:
    return Path(directory or CHECKPOINT_DIR) / f"{get_entry(name).name}.safetensors"


def load_card(name: str, directory: str | Path | None = None) -> ModelCard:
    return ModelCard.load(get_entry(name).name, directory)


def _read_state_dict(path: Path) -> dict:
    if not path.is_file():
        raise RoundlabError(f"checkpoint file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        sd = torch.load(path, map_location="cpu", weights_only=True)
        return sd.get("state_dict", sd.get("model", sd)) if isinstance(sd, dict) else sd
    except Exception as e:   # noqa: BLE001 - corrupt files raise many types
        raise RoundlabError(f"cannot read checkpoint {path}: {type(e).__name__}: {str(e)[:200]}") from None


def check_state_dtypes(model: torch.nn.Module, state: dict, fits: str) -> None:
    """A floating parameter must come from a floating tensor (an int32 checkpoint would truncate every weight)."""
    own = dict(model.state_dict())
    for k, v in state.items():
        if k in own and own[k].is_floating_point() and isinstance(v, torch.Tensor) and not v.is_floating_point():
            raise RoundlabError(f"{fits}: {k} is stored as {v.dtype}, the model needs floating-point weights")


def load_zoo_model(name: str, checkpoint: str | Path | None = None) -> tuple[torch.nn.Module, dict]:
    entry = get_entry(name)
    path = Path(checkpoint).expanduser() if checkpoint else checkpoint_path(name)
    if not path.is_file():
        hint = "" if checkpoint else f"; train it with `roundlab train-zoo --model {name}`"
        raise RoundlabError(f"no checkpoint for zoo model {name!r} at {path}{hint}")
    model = entry.build()
    state = _read_state_dict(path)
    fits = f"checkpoint {path} does not fit zoo model {name!r} ({entry.timm_class} {entry.arch})"
    check_state_dtypes(model, state, fits)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:   # shape mismatches
        first = next((line.strip() for line in str(e).splitlines() if "size mismatch" in line), str(e)[:200])
        raise RoundlabError(f"{fits}: {first}") from None
    if missing or unexpected:
        raise RoundlabError(f"{fits}: missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]}")
    return model, dict(entry.data_config)


def load_model(name: str, device: str | torch.device = "cpu", checkpoint: str | Path | None = None,
               download: bool = False) -> tuple[torch.nn.Module, dict]:
    """An FP model in eval mode on ``device`` and its data config.

    ``name``: a zoo model (``list_models()``) or any timm model name (optionally ``name.tag``).
    ``checkpoint``: a weights file to load instead of the committed zoo checkpoint / the cached timm weights.
    ``download``: let timm fetch missing pretrained weights (needs a network); otherwise only local files are used.
    """
    if name in ZOO:
        model, data_cfg = load_zoo_model(name, checkpoint)
    else:
        from roundlab.zoo.timm_names import is_timm_name, load_timm_model, timm_data_config

        if not is_timm_name(name):
            raise RoundlabError(f"unknown model {name!r}: not a zoo model ({', '.join(ZOO)}) nor a timm model name")
        model = load_timm_model(name, checkpoint=checkpoint, download=download)
        data_cfg = timm_data_config(model)
    return model.to(device).eval(), data_cfg
