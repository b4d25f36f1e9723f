"""roundlab: post-training quantization of vision transformers with pluggable rounding solvers.

The package reproduces ERQ (Zhong et al., ICML 2024 / TPAMI 2025): Aqer, a closed-form ridge update that absorbs
activation-quantization error into the full-precision weights, followed by Wqer, which quantizes the weights segment by
segment, choosing each segment's rounding with any registered solver and ridge-updating the rest.
"""

__version__ = "0.1.0"
