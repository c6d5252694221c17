"""Faster decoding on CPU: fewer bytes per weight, and weights laid out for reading one row at a time.

Decoding one sequence reads every weight once per new token, so its speed is bound by memory reads:

- ``quantize(model, "int8")``: torch's dynamic int8 quantization of every ``nn.Linear`` (int8 weights with one
  fp32 scale per output row, activations quantized on the fly): a quarter of the bytes. Measured faster here than
  torchao's int8 weight-only (BENCHMARK.md), and it needs no extra package.
- ``quantize(model, "bf16")``: the whole model in bf16, half the bytes, where the CPU has native bf16 (warns with
  the measured slowdown where it has not, see ``gpt_scratch.hardware``).
- ``layout_for_decoding(model)``: fp32 weights kept, each ``nn.Linear`` weight stored (in, out) in memory with its
  logical (out, in) shape unchanged, as GPT-2's Conv1D stores it: ``x @ W.T`` for a single row then reads the
  weight in order. For inference only: ``save_pretrained`` needs contiguous tensors (reload the folder to train).

Each returns the same model object (changed in place, in eval mode): its ``generate()`` and ``generate_fast``
take the new path. Quantized models are for inference: ``save_pretrained`` of an int8 model is not supported.

    model = gpt_scratch.quantize(model, "int8")
    out = model.generate(input_ids, max_new_tokens=50)
"""

from __future__ import annotations

import warnings
from typing import TypeVar

import torch
from torch import nn

from gpt_scratch.hardware import warn_if_slow_bf16

QUANTIZE_CHOICES = ("int8", "bf16")
Model = TypeVar("Model", bound=nn.Module)


def quantize(model: Model, mode: str) -> Model:
    """``model`` with ``mode`` ("int8" or "bf16") weights, in eval mode, for inference on CPU."""
    if mode not in QUANTIZE_CHOICES:
        raise ValueError(f"quantize: mode must be one of {', '.join(QUANTIZE_CHOICES)}, got {mode!r}")
    model.eval()
    if mode == "bf16":
        warn_if_slow_bf16("bf16 weights (quantize 'bf16')", _device_of(model))
        return model.to(torch.bfloat16)
    if _device_of(model).type != "cpu":
        raise ValueError(f"quantize: int8 is for CPU inference; the model is on {_device_of(model)}")
    with warnings.catch_warnings():  # torch.ao.quantization's notice that it moves to torchao
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8, inplace=True)


def layout_for_decoding(model: Model) -> Model:
    """Every ``nn.Linear`` weight of ``model`` stored (in, out) in memory, same values and (out, in) shape."""
    for module in model.modules():
        if isinstance(module, nn.Linear) and module.weight.is_contiguous():
            module.weight.data = module.weight.data.t().contiguous().t()  # tied weights change together
    return model.eval()


def weight_bytes(model: nn.Module) -> int:
    """Bytes of the model's weights (each shared tensor once), int8 packed weights included."""
    seen: dict[int, int] = {}
    for tensor in list(model.parameters()) + list(model.buffers()):
        seen[tensor.data_ptr()] = tensor.numel() * tensor.element_size()
    for module in model.modules():
        packed = getattr(module, "_packed_params", None)
        if packed is not None and hasattr(packed, "_weight_bias"):
            weight, bias = packed._weight_bias()
            seen[id(module)] = weight.numel() * weight.element_size()
            if bias is not None:
                seen[id(module) + 1] = bias.numel() * bias.element_size()
    return sum(seen.values())


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


__all__ = ["QUANTIZE_CHOICES", "layout_for_decoding", "quantize", "weight_bytes"]
