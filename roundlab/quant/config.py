"""``QuantConfig``: every choice the fake-quantized model makes, with the release's behaviour as the default.

The defaults reproduce the official ERQ release (the TPAMI code; ERQ_SPEC §1–§4, §12). Each field that departs from
RepQ-ViT or from the ICML paper says so. A config is a frozen dataclass, validated in ``__post_init__`` (a bad value
raises :class:`~roundlab.errors.RoundlabError`), and serialisable with ``dataclasses.asdict``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from roundlab.errors import RoundlabError, check
from roundlab.quant.grid import check_bits
from roundlab.quant.quantile import RANKS

#: Weight percentile candidates of the release (ERQ_SPEC §3.1; 1.0 = plain min/max). RepQ-ViT uses ACT_PERCENTILES.
WEIGHT_PERCENTILES = (0.97, 0.98, 0.99, 0.995, 0.9995, 0.9997, 0.9999, 0.99995, 0.99999, 1.0)
#: Activation (and log√2 post-softmax) percentile candidates (ERQ_SPEC §3.1, §3.2); min/max is not a candidate.
ACT_PERCENTILES = (0.999, 0.9999, 0.99999)

DUAL_K_FROM = ("dout", "din")


@dataclass(frozen=True)
class QuantConfig:
    """How :func:`roundlab.quant.quantize_model` fake-quantizes a timm ViT / DeiT / Swin.

    Attributes:
        wbits: weight bits, integer in [2, 8]; every QuantLinear/QuantConv2d weight, per output channel.
        abits: activation bits, integer in [2, 8]; every Linear input, both operands of q·kᵀ and attn·v.
        weight_percentiles: candidate percentiles p of the weight scale search (range [q_{1-p}, q_p], MSE picks;
            earliest wins ties). Release: 10 values incl. 1.0; RepQ-ViT: (0.999, 0.9999, 0.99999).
        act_percentiles: candidate percentiles of the uniform activation search. Release: (0.999, 0.9999, 0.99999).
        softmax_percentiles: candidate percentiles for the log√2 scale of the post-softmax operand (§3.2).
        quantize_attention: quantize both attention matmuls (q, kᵀ uniform; softmax log√2; v uniform). Release: True.
        quantize_head: wrap the classifier head(s) (``head``, ``head_dist``, Swin ``head.fc``) too; the head is not
            kept at higher precision in the release. False leaves them as FP ``nn.Linear``.
        quantize_patch_embed_input: quantize the image entering the patch-embedding conv. Release: False (FP);
            RepQ-ViT: True at ``patch_embed_input_bits``.
        patch_embed_input_bits: bits of that input quantizer when enabled (RepQ-ViT: 8).
        channelwise_post_ln: calibrate the post-LayerNorm inputs of ``qkv`` and ``fc1`` channel-wise (on the last
            dim). Release: True. False makes them layer-wise from the start (then ``reparam`` must be False).
        reparam: fold the channel-wise post-LN quantizers into LayerNorm + next Linear (§4) when
            :func:`~roundlab.quant.reparameterize` is called. False keeps them channel-wise at inference (no fold).
        round_zero: round the folded zero point z̄ = mean(z_c). Release: False (unrounded, inherited from RepQ-ViT;
            up to 2^b + 1 levels). True gives an integer grid and exact quantized equivalence.
        reparam_patch_merging: also calibrate Swin's PatchMerging ``reduction`` input channel-wise and fold it into
            ``downsample.norm`` (RepQ-ViT). Release: False (layer-wise, no fold).
        dual_uniform: TPAMI dual-uniform weight quantizer for ``qkv`` and ``fc1`` (§3.3). Release: True.
        dual_k_from: the number of outlier columns is K = ⌊D / dual_k_divisor⌋ with D = Dout ("dout", release) or
            Din ("din", probably what was meant).
        dual_k_divisor: the divisor of K (release: 20).
        dual_tail: per-row tail probability marking outliers: above the (1 − tail) quantile of the row's positive
            entries or below the ``tail`` quantile of its negative entries (release: 0.01).
        calibrate_act_with_quantized_weights: default of :func:`~roundlab.quant.calibration_mode`'s ``weight``:
            run the activation-calibration pass with weight quantizers on (RepQ-ViT) instead of FP weights (release).
        quantile_rank: the rank of every percentile in the searches: "float64" (p as given, default) or "release"
            (p rounded to float32 as the authors' torch.quantile calls do; numpy's float64 p above 2**24 values), so
            a release-conventions run reproduces the release's integer codes (``roundlab.quant.quantile``).
    """

    wbits: int = 4
    abits: int = 4
    weight_percentiles: tuple[float, ...] = WEIGHT_PERCENTILES
    act_percentiles: tuple[float, ...] = ACT_PERCENTILES
    softmax_percentiles: tuple[float, ...] = ACT_PERCENTILES
    quantize_attention: bool = True
    quantize_head: bool = True
    quantize_patch_embed_input: bool = False
    patch_embed_input_bits: int = 8
    channelwise_post_ln: bool = True
    reparam: bool = True
    round_zero: bool = False
    reparam_patch_merging: bool = False
    dual_uniform: bool = True
    dual_k_from: str = "dout"
    dual_k_divisor: int = 20
    dual_tail: float = 0.01
    calibrate_act_with_quantized_weights: bool = False
    quantile_rank: str = "float64"

    def __post_init__(self) -> None:
        check_bits(self.wbits, "QuantConfig.wbits")
        check_bits(self.abits, "QuantConfig.abits")
        check_bits(self.patch_embed_input_bits, "QuantConfig.patch_embed_input_bits")
        for name in ("weight_percentiles", "act_percentiles", "softmax_percentiles"):
            object.__setattr__(self, name, _percentiles(getattr(self, name), f"QuantConfig.{name}"))
        for f in fields(self):
            if f.type in (bool, "bool"):
                value = getattr(self, f.name)
                check(isinstance(value, bool), f"QuantConfig.{f.name} must be True or False, got {value!r}")
        check(self.dual_k_from in DUAL_K_FROM,
              f"QuantConfig.dual_k_from must be one of {DUAL_K_FROM}, got {self.dual_k_from!r}")
        check(isinstance(self.dual_k_divisor, int) and not isinstance(self.dual_k_divisor, bool)
              and self.dual_k_divisor >= 1,
              f"QuantConfig.dual_k_divisor must be a positive integer, got {self.dual_k_divisor!r}")
        check(isinstance(self.dual_tail, (int, float)) and not isinstance(self.dual_tail, bool)
              and 0.0 < self.dual_tail < 0.5,
              f"QuantConfig.dual_tail must be a number in (0, 0.5), got {self.dual_tail!r}")
        check(self.quantile_rank in RANKS,
              f"QuantConfig.quantile_rank must be one of {RANKS}, got {self.quantile_rank!r}")
        check(not self.reparam or self.channelwise_post_ln,
              "QuantConfig.reparam=True needs channelwise_post_ln=True (it folds the channel-wise quantizers)")
        check(not self.reparam_patch_merging or self.reparam,
              "QuantConfig.reparam_patch_merging=True needs reparam=True")


def _percentiles(values, what: str) -> tuple[float, ...]:
    try:
        out = tuple(values)
    except TypeError:
        raise RoundlabError(f"{what} must be a non-empty sequence of numbers in [0.5, 1], got {values!r}") from None
    ok = len(out) > 0 and all(isinstance(p, (int, float)) and not isinstance(p, bool) and 0.5 <= p <= 1.0
                              for p in out)
    check(ok, f"{what} must be a non-empty sequence of numbers in [0.5, 1], got {values!r}")
    return tuple(float(p) for p in out)
