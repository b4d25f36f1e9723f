"""RepQ-ViT scale reparameterisation = ERQ's "Reparameterization Initialization" (ERQ_SPEC §4).

For a LayerNorm (γ, β) feeding a QuantLinear (W, b) whose input quantizer was calibrated channel-wise with
(s_c, z_c), c = 1..D::

    s̄ = mean(s),  z̄ = mean(z)  (rounded only if QuantConfig.round_zero)
    r_c = s_c / s̄,   t_c = m_c / r_c − m̄   with m_c = −z_c s_c, m̄ = −z̄ s̄
    γ ← γ / r,   β ← β / r − t          (new LN output x' = x / r − t)
    W[:, c] ← W[:, c] · r_c,   b ← b + W_new · t   (a bias is created if the Linear had none)
    input quantizer := layer-wise (s̄, z̄);  weight quantizer: reset (calibrated later, on the new W)

Exact in FP (W_new x' + b_new = W x + b). With an integer z̄ the layer-wise quantizer on x' equals the channel-wise
one on x; with the release's fractional z̄ it does not (up to 2^b + 1 levels). The fold is computed in float64.
"""

from __future__ import annotations

import torch
from torch import nn

from roundlab.errors import check
from roundlab.quant.config import QuantConfig
from roundlab.quant.modules import QuantLinear
from roundlab.quant.surgery import find_architecture, model_config
from roundlab.quant.uniform import UniformQuantizer


def fold_channelwise(norm: nn.LayerNorm, layer: QuantLinear, round_zero: bool = False) -> None:
    """Fold ``layer``'s calibrated channel-wise input quantizer into ``norm`` and ``layer`` (in place)."""
    q = layer.act_quantizer
    check(isinstance(norm, nn.LayerNorm) and norm.weight is not None and norm.bias is not None,
          f"cannot reparameterize {layer.name}: its input must come from a LayerNorm with affine weight and bias")
    check(isinstance(q, UniformQuantizer) and q.granularity == "channel",
          f"cannot reparameterize {layer.name}: its input quantizer is not channel-wise (already reparameterized?)")
    check(q.calibrated, f"cannot reparameterize {layer.name}: its channel-wise input quantizer is not calibrated; "
                        "run a forward pass inside roundlab.quant.calibration_mode(model) first")
    with torch.no_grad():
        s, z = q.scale.to(torch.float64), q.zero.to(torch.float64)
        s_bar, z_bar = s.mean(), z.mean()
        if round_zero:
            z_bar = torch.round(z_bar)
        r = s / s_bar
        t = (-z * s) / r - (-z_bar * s_bar)
        gamma, beta = norm.weight.to(torch.float64), norm.bias.to(torch.float64)
        norm.weight.copy_(gamma / r)
        norm.bias.copy_(beta / r - t)
        W = layer.weight.to(torch.float64) * r[None, :]
        b = W @ t
        if layer.bias is not None:
            b = b + layer.bias.to(torch.float64)
        layer.weight.copy_(W)
        if layer.bias is None:
            layer.bias = nn.Parameter(b.to(layer.weight.dtype), requires_grad=layer.weight.requires_grad)
        else:
            layer.bias.copy_(b)
    layer.act_quantizer = UniformQuantizer(q.bits, q.percentiles, "tensor", q.name).set_params(
        s_bar.to(q.scale.dtype), z_bar.to(q.zero.dtype))
    layer.act_quantizer.quantile_rank = q.quantile_rank
    layer.weight_quantizer.reset()


def reparameterize(model: nn.Module, cfg: QuantConfig | None = None) -> nn.Module:
    """§4 on every block's norm1→qkv and norm2→fc1 (and Swin's PatchMerging norm→reduction if
    ``cfg.reparam_patch_merging``), after activation calibration. A no-op when ``cfg.reparam`` is False.

    ``cfg`` defaults to the config :func:`~roundlab.quant.quantize_model` applied. Returns ``model``.
    """
    cfg = model_config(model) if cfg is None else cfg
    if not cfg.reparam:
        return model
    for norm_path, layer_path in find_architecture(model).reparam_pairs(model, cfg):
        layer = model.get_submodule(layer_path)
        check(isinstance(layer, QuantLinear), f"cannot reparameterize {layer_path}: it is not a QuantLinear")
        fold_channelwise(model.get_submodule(norm_path), layer, cfg.round_zero)
    return model
