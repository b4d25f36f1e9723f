"""Quantizers, quantized modules, model surgery and the RepQ-ViT reparameterisation."""
