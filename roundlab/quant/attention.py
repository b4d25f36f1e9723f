"""Quantized attention forwards, one per supported timm attention class, registered in ``ATTENTION_FORWARDS``.

Model surgery swaps an attention module's class for its quantized subclass below (so every parameter, buffer and
helper method of the timm module stays where it is, and ``state_dict`` keys do not change) and attaches two
:class:`~roundlab.quant.modules.QuantMatMul` children: ``matmul1`` (q·kᵀ) and ``matmul2`` (attn·v). The forwards
always take timm's explicit (non-fused) path, so the softmax operand is available to its log√2 quantizer.

* ViT/DeiT (``timm.layers.Attention``): ``attn = matmul1(q, kᵀ) · scale`` (scale applied after the product, as in
  timm 0.4.12 / the release), optional additive or boolean mask, softmax, ``matmul2(attn, v)``.
* Swin (``WindowAttention``): ``q ← q · scale`` first, ``attn = matmul1(q, kᵀ) + relative-position bias (+ shift
  mask)``, softmax, ``matmul2(attn, v)``; so the log√2 quantizer sees the probabilities after bias and mask.
"""

from __future__ import annotations

from typing import Optional

import torch
from timm.models.swin_transformer import WindowAttention
from timm.models.vision_transformer import Attention  # re-exported from timm.layers in timm >= 1.0.x


def _add_attn_mask(attn: torch.Tensor, attn_mask: Optional[torch.Tensor], is_causal: bool) -> torch.Tensor:
    """timm/SDPA mask semantics: causal, boolean (True = keep) or additive float mask."""
    n = attn.shape[-1]
    if is_causal:
        return attn + attn.new_full((n, n), float("-inf")).triu_(1)
    if attn_mask is None:
        return attn
    if attn_mask.dtype == torch.bool:
        return attn.masked_fill(~attn_mask, float("-inf"))
    return attn + attn_mask


class QuantViTAttention(Attention):
    """timm ``Attention`` (ViT, DeiT) with both matmuls through ``self.matmul1`` / ``self.matmul2``."""

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None,
                is_causal: bool = False) -> torch.Tensor:
        B, N, _ = x.shape
        gate = getattr(self, "gate", None)
        gate = gate(x).sigmoid() if gate is not None else None
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        attn = self.matmul1(q, k.transpose(-2, -1)) * self.scale
        attn = _add_attn_mask(attn, attn_mask, is_causal)
        attn = self.attn_drop(attn.softmax(dim=-1))
        x = self.matmul2(attn, v)
        x = x.transpose(1, 2).reshape(B, N, self.num_heads * self.head_dim)
        norm = getattr(self, "norm", None)          # scale_norm (newer timm); absent in older versions
        if norm is not None:
            x = norm(x)
        if gate is not None:
            x = x * gate
        return self.proj_drop(self.proj(x))


class QuantWindowAttention(WindowAttention):
    """timm ``WindowAttention`` (Swin) with both matmuls through ``self.matmul1`` / ``self.matmul2``."""

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        B_, N, _ = x.shape
        qkv = self.qkv(x).reshape(B_, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q = q * self.scale
        attn = self.matmul1(q, k.transpose(-2, -1))
        attn = attn + self._get_rel_pos_bias()
        if mask is not None:
            num_win = mask.shape[0]
            attn = attn.view(-1, num_win, self.num_heads, N, N) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.num_heads, N, N)
        attn = self.attn_drop(self.softmax(attn))
        x = self.matmul2(attn, v)
        x = x.transpose(1, 2).reshape(B_, N, -1)
        return self.proj_drop(self.proj(x))


#: timm attention class -> its quantized subclass (exact type match: a subclass may change the forward).
ATTENTION_FORWARDS: dict[type, type] = {
    Attention: QuantViTAttention,
    WindowAttention: QuantWindowAttention,
}
