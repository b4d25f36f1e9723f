"""Model surgery: turn a timm ViT / DeiT / Swin into a fake-quantized model (ERQ_SPEC §1–§2).

Each supported architecture is an :class:`Architecture` registered by name in ``ARCHITECTURES`` (a
:class:`~roundlab.registry.Registry`): it lists every Linear/Conv2d of the model with its ``kind``, the attention
modules, and the (LayerNorm, Linear) pairs of the reparameterisation.
:func:`quantize_model` then wraps, in place,

* every listed ``nn.Linear`` as :class:`QuantLinear` and the patch-embedding ``nn.Conv2d`` as :class:`QuantConv2d`,
* every attention module's q·kᵀ and attn·v as :class:`QuantMatMul` (see :mod:`roundlab.quant.attention`),

and refuses (one clear error) a model, block, attention or layer it does not know, rather than quantize it wrongly.

Quantizer placement (release defaults; ``QuantConfig`` switches):

==============  ===============================================  ==========================================
kind            input quantizer                                   weight quantizer
==============  ===============================================  ==========================================
patch_embed     none (FP image); 8-bit layer-wise if enabled     per output channel over C_in·k·k
qkv, fc1        channel-wise (last dim), folded by §4 later      dual-uniform (or per row)
proj, fc2       layer-wise                                       per row
reduction       layer-wise (channel-wise + §4 if enabled)        per row (bias-free Linear)
head            layer-wise                                       per row
matmul1         q, kᵀ: layer-wise uniform
matmul2         softmax: log√2; v: layer-wise uniform
==============  ===============================================  ==========================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from timm.layers import Mlp
from timm.models.swin_transformer import PatchMerging, SwinTransformer, SwinTransformerBlock, SwinTransformerStage
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

from roundlab.errors import RoundlabError, check
from roundlab.quant.attention import ATTENTION_FORWARDS
from roundlab.quant.base import Quantizer
from roundlab.quant.config import QuantConfig
from roundlab.quant.dual import DualUniformQuantizer
from roundlab.quant.log2 import Log2Quantizer
from roundlab.quant.modules import QuantConv2d, QuantLinear, QuantMatMul
from roundlab.quant.uniform import UniformQuantizer
from roundlab.registry import Registry

CONFIG_ATTR = "roundlab_quant_config"
KINDS = ("patch_embed", "qkv", "proj", "fc1", "fc2", "reduction", "head")


@dataclass(frozen=True)
class Architecture:
    """How to quantize one family of timm models.

    ``layers(model)``: ``{module path: kind}`` for every Linear/Conv2d of the model (validating its structure);
    ``attentions(model)``: attention module paths; ``reparam_pairs(model, cfg)``: ``(norm path, linear path)``;
    ``segments(model)`` (optional; streamed calibration runs each quantizer's passes from its own segment): the
    forward after the stem as a chain of callables, each taking the previous one's output — the first an
    ``nn.Module`` (its input is where the stem ends), the last returning the logits. None: the whole model is one.
    """

    name: str
    model_class: type
    layers: Callable[[nn.Module], dict[str, str]]
    attentions: Callable[[nn.Module], list[str]]
    reparam_pairs: Callable[[nn.Module, QuantConfig], list[tuple[str, str]]]
    segments: Callable[[nn.Module], list[Callable]] | None = None


def _check_type(module: nn.Module, expected: type, path: str, arch: str) -> None:
    check(type(module) is expected,
          f"unsupported module {path} ({type(module).__name__}) in a {arch} model: roundlab quantizes timm "
          f"{expected.__name__} here")


def _check_attention(module: nn.Module, path: str, arch: str) -> None:
    check(type(module) in ATTENTION_FORWARDS,
          f"unsupported attention module {path} ({type(module).__name__}) in a {arch} model; supported: "
          f"{sorted(c.__name__ for c in ATTENTION_FORWARDS)}")
    check(getattr(module, "gate", None) is None, f"gated attention ({path}) is not supported")


# -- ViT / DeiT ----------------------------------------------------------------------------------------------------
def _vit_layers(model: VisionTransformer) -> dict[str, str]:
    check(getattr(model, "attn_pool", None) is None,
          "ViT with attention pooling (global_pool='map'/'prr') is not supported")
    plan = {"patch_embed.proj": "patch_embed"}
    for i, blk in enumerate(model.blocks):
        _check_type(blk, Block, f"blocks.{i}", "ViT")
        _check_attention(blk.attn, f"blocks.{i}.attn", "ViT")
        _check_type(blk.mlp, Mlp, f"blocks.{i}.mlp", "ViT")
        plan.update({f"blocks.{i}.attn.qkv": "qkv", f"blocks.{i}.attn.proj": "proj",
                     f"blocks.{i}.mlp.fc1": "fc1", f"blocks.{i}.mlp.fc2": "fc2"})
    for head in ("head", "head_dist"):  # head_dist: DeiT's VisionTransformerDistilled
        if isinstance(getattr(model, head, None), nn.Linear):
            plan[head] = "head"
    return plan


def _vit_attentions(model: VisionTransformer) -> list[str]:
    return [f"blocks.{i}.attn" for i in range(len(model.blocks))]


def _vit_reparam_pairs(model: VisionTransformer, cfg: QuantConfig) -> list[tuple[str, str]]:
    pairs = []
    for i in range(len(model.blocks)):
        pairs += [(f"blocks.{i}.norm1", f"blocks.{i}.attn.qkv"), (f"blocks.{i}.norm2", f"blocks.{i}.mlp.fc1")]
    return pairs


def _own_forward(model: nn.Module, base: type) -> bool:
    """Whether ``model``'s class replaces ``base``'s forward (then its segments are unknown: one segment)."""
    return any(getattr(type(model), f) is not getattr(base, f) for f in ("forward", "forward_features"))


def _vit_segments(model: VisionTransformer) -> list[Callable]:
    """timm's ``forward_features`` without a mask: stem, ``blocks`` one by one, ``norm``; then ``forward_head``."""
    if _own_forward(model, VisionTransformer):
        return []
    return [*model.blocks, lambda x: model.forward_head(model.norm(x))]


# -- Swin (timm >= 0.9: NHWC, PatchMerging at the start of stages 2+) -----------------------------------------------
def _swin_blocks(model: SwinTransformer):
    for s, stage in enumerate(model.layers):
        for b, blk in enumerate(stage.blocks):
            yield f"layers.{s}.blocks.{b}", blk


def _swin_layers(model: SwinTransformer) -> dict[str, str]:
    plan = {"patch_embed.proj": "patch_embed"}
    for s, stage in enumerate(model.layers):
        if isinstance(stage.downsample, PatchMerging):
            plan[f"layers.{s}.downsample.reduction"] = "reduction"
        else:
            _check_type(stage.downsample, nn.Identity, f"layers.{s}.downsample", "Swin")
        for b, blk in enumerate(stage.blocks):
            path = f"layers.{s}.blocks.{b}"
            _check_type(blk, SwinTransformerBlock, path, "Swin")
            _check_attention(blk.attn, f"{path}.attn", "Swin")
            _check_type(blk.mlp, Mlp, f"{path}.mlp", "Swin")
            plan.update({f"{path}.attn.qkv": "qkv", f"{path}.attn.proj": "proj",
                         f"{path}.mlp.fc1": "fc1", f"{path}.mlp.fc2": "fc2"})
    if isinstance(getattr(model.head, "fc", None), nn.Linear):
        plan["head.fc"] = "head"
    return plan


def _swin_attentions(model: SwinTransformer) -> list[str]:
    return [f"{path}.attn" for path, _ in _swin_blocks(model)]


def _swin_reparam_pairs(model: SwinTransformer, cfg: QuantConfig) -> list[tuple[str, str]]:
    pairs = []
    for s, stage in enumerate(model.layers):
        if cfg.reparam_patch_merging and isinstance(stage.downsample, PatchMerging):
            pairs.append((f"layers.{s}.downsample.norm", f"layers.{s}.downsample.reduction"))
        for b, blk in enumerate(stage.blocks):
            path = f"layers.{s}.blocks.{b}"
            res, win = getattr(blk, "input_resolution", None), getattr(blk, "window_size", None)
            if res is not None and win is not None and (res[0] % win[0] or res[1] % win[1]):
                raise RoundlabError(f"cannot reparameterize {path}: its {tuple(res)} feature map is zero-padded to "
                                    f"whole {tuple(win)} windows after norm1, which the fold does not commute with")
            pairs += [(f"{path}.norm1", f"{path}.attn.qkv"), (f"{path}.norm2", f"{path}.mlp.fc1")]
    return pairs


def _swin_segments(model: SwinTransformer) -> list[Callable]:
    """Each stage's ``downsample`` and blocks one by one (timm's stage forward), then ``norm`` and ``forward_head``."""
    if _own_forward(model, SwinTransformer) or any(type(st).forward is not SwinTransformerStage.forward
                                                    for st in model.layers):
        return []
    chain = [m for stage in model.layers for m in (stage.downsample, *stage.blocks)]
    return chain + [lambda x: model.forward_head(model.norm(x))]


#: Supported model families by name; :func:`find_architecture` takes the first, in registration order, whose
#: ``model_class`` the model is an instance of (VisionTransformerDistilled is a ViT).
ARCHITECTURES: Registry[Architecture] = Registry.of_named("architecture", Architecture)


def register_architecture(arch: Architecture, *, override: bool = False) -> Architecture:
    """Add ``arch`` under its own name (a new family of timm models that :func:`quantize_model` should accept)."""
    return ARCHITECTURES.add(arch, override=override)


register_architecture(Architecture("vit", VisionTransformer, _vit_layers, _vit_attentions, _vit_reparam_pairs,
                                   _vit_segments))
register_architecture(Architecture("swin", SwinTransformer, _swin_layers, _swin_attentions, _swin_reparam_pairs,
                                   _swin_segments))


def find_architecture(model: nn.Module) -> Architecture:
    """The :class:`Architecture` of ``model``; RoundlabError for anything else."""
    for _, arch in ARCHITECTURES.items():
        if isinstance(model, arch.model_class):
            return arch
    supported = ", ".join(f"timm {a.model_class.__name__}" for _, a in ARCHITECTURES.items())
    raise RoundlabError(f"cannot quantize a {type(model).__name__}: supported models are {supported} "
                        "(DeiT's VisionTransformerDistilled included)")


def model_config(model: nn.Module) -> QuantConfig:
    """The :class:`QuantConfig` that :func:`quantize_model` applied to ``model``."""
    cfg = getattr(model, CONFIG_ATTR, None)
    check(cfg is not None, f"{type(model).__name__} is not quantized; call roundlab.quant.quantize_model first")
    return cfg


# -- quantizer factories -------------------------------------------------------------------------------------------
def make_act_quantizer(kind: str, name: str, cfg: QuantConfig):
    """The input quantizer of a layer of ``kind`` (None for the FP patch-embedding input)."""
    if kind == "patch_embed":
        if not cfg.quantize_patch_embed_input:
            return None
        return UniformQuantizer(cfg.patch_embed_input_bits, cfg.act_percentiles, "tensor", name)
    channel = ((kind in ("qkv", "fc1") and cfg.channelwise_post_ln)
               or (kind == "reduction" and cfg.reparam_patch_merging))
    return UniformQuantizer(cfg.abits, cfg.act_percentiles, "channel" if channel else "tensor", name)


def make_weight_quantizer(kind: str, name: str, cfg: QuantConfig):
    """The weight quantizer of a layer of ``kind``: dual-uniform for qkv/fc1 if enabled, else per output channel."""
    if kind in ("qkv", "fc1") and cfg.dual_uniform:
        return DualUniformQuantizer(cfg.wbits, cfg.weight_percentiles, cfg.dual_k_from, cfg.dual_k_divisor,
                                    cfg.dual_tail, name)
    return UniformQuantizer(cfg.wbits, cfg.weight_percentiles, "row", name, role="weight")


def _replace(model: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, child = path.rpartition(".")
    setattr(model.get_submodule(parent_path) if parent_path else model, child, new)


def quantize_model(model: nn.Module, cfg: QuantConfig | None = None) -> nn.Module:
    """Fake-quantize ``model`` in place (all quantizers start off and uncalibrated); returns ``model``.

    Afterwards: calibrate activations with :func:`~roundlab.quant.calibration_mode`, fold with
    :func:`~roundlab.quant.reparameterize`, calibrate weights with :func:`~roundlab.quant.calibrate_weights`
    (or each ``layer.weight_quantizer.calibrate``), and switch quantizers with :func:`~roundlab.quant.set_quant_state`.
    """
    cfg = QuantConfig() if cfg is None else cfg
    check(isinstance(cfg, QuantConfig), f"quantize_model needs a QuantConfig, got {type(cfg).__name__}")
    check(isinstance(model, nn.Module), f"quantize_model needs a torch nn.Module, got {type(model).__name__}")
    check(getattr(model, CONFIG_ATTR, None) is None, "this model is already quantized")
    arch = find_architecture(model)
    plan = arch.layers(model)
    attentions = arch.attentions(model)
    for path, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)) and path not in plan:
            raise RoundlabError(f"unsupported layer {path} ({type(module).__name__}) in a {arch.name} model: "
                                "roundlab does not know how to quantize it")
    for path, kind in plan.items():
        module = model.get_submodule(path)
        if kind == "head" and not cfg.quantize_head:
            continue
        cls = QuantConv2d if kind == "patch_embed" else QuantLinear
        check(isinstance(module, nn.Conv2d if kind == "patch_embed" else nn.Linear),
              f"{path} should be a {'Conv2d' if kind == 'patch_embed' else 'Linear'}, got {type(module).__name__}")
        _replace(model, path, cls(module, name=path, kind=kind, act_quantizer=make_act_quantizer(kind, path, cfg),
                                  weight_quantizer=make_weight_quantizer(kind, path, cfg)))
    for path in attentions:
        attn = model.get_submodule(path)
        attn.__class__ = ATTENTION_FORWARDS[type(attn)]
        if cfg.quantize_attention:
            u = (cfg.abits, cfg.act_percentiles, "tensor")
            attn.matmul1 = QuantMatMul(name=f"{path}.matmul1", a_quantizer=UniformQuantizer(*u, f"{path}.matmul1[q]"),
                                       b_quantizer=UniformQuantizer(*u, f"{path}.matmul1[k]"))
            attn.matmul2 = QuantMatMul(name=f"{path}.matmul2",
                                       a_quantizer=Log2Quantizer(cfg.abits, cfg.softmax_percentiles,
                                                                 f"{path}.matmul2[attn]"),
                                       b_quantizer=UniformQuantizer(*u, f"{path}.matmul2[v]"))
        else:
            attn.matmul1 = QuantMatMul(name=f"{path}.matmul1")
            attn.matmul2 = QuantMatMul(name=f"{path}.matmul2")
    for module in model.modules():              # every percentile search takes its quantile ranks one way
        if isinstance(module, Quantizer):
            module.quantile_rank = cfg.quantile_rank
    setattr(model, CONFIG_ATTR, cfg)
    return model
