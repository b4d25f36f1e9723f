"""The data of a run and each quantized layer's regressors, as the pipeline builds them (Fig. 3)."""

from __future__ import annotations

import torch


def load_data(cfg):
    """(FP model, calibration images, held-out images, test set) exactly as ``run_erq`` loads them."""
    from roundlab.data import calibration_split, load_dataset
    from roundlab.zoo import load_model

    torch.manual_seed(cfg.seed)
    model, data_cfg = load_model(cfg.model, device=cfg.device, checkpoint=cfg.checkpoint)
    dataset = cfg.dataset or data_cfg.get("dataset", "fashion-mnist")
    train = load_dataset(dataset, split="train", root=cfg.data_root, data_config=data_cfg)
    test = load_dataset(dataset, split="test", root=cfg.data_root, data_config=data_cfg)
    calib, heldout = calibration_split(train, n=cfg.calib_images, n_heldout=cfg.heldout_images, seed=cfg.seed)
    if cfg.eval_images is not None:
        test = test.subset(cfg.eval_images)
    return model, calib, heldout, test


def layer_inputs(model, calib, heldout, cfg) -> dict[str, dict]:
    """Per quantized layer: ``Xt``/``Xt_h`` = ``[X̄ | 1]`` (float64) on calibration/held-out images, as Wqer sees them.

    The pipeline's own :func:`~roundlab.pipeline.run.calibrate_and_capture` and input quantization (independent data
    flow), so ``Xt[:, S]ᵀ Xt[:, S] / N`` is the ``M`` of the pipeline's problems (callers check this)."""
    from roundlab.pipeline.aqer import design
    from roundlab.pipeline.run import calibrate_and_capture
    from roundlab.pipeline.stages import quantize_input

    if cfg.data_flow != "independent":
        raise ValueError("layer_inputs supports the independent data flow only")
    _, layers, fp_in, fp_in_h = calibrate_and_capture(model, calib, cfg, heldout)
    out = {}
    for name, layer in layers.items():
        has_bias = layer.bias is not None
        out[name] = {"Xt": design(quantize_input(layer, fp_in[name]), has_bias),
                     "Xt_h": design(quantize_input(layer, fp_in_h[name]), has_bias) if name in fp_in_h else None,
                     "kind": getattr(layer, "kind", "linear")}
    return out
