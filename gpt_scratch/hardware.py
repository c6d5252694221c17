"""What this machine does fast, measured rather than assumed: bf16 matmuls and memory reads.

A CPU with AVX-512 BF16 or AMX (recent Xeons, AMD Zen 4 and later EPYC/Ryzen) runs bf16 matmuls several times
faster than fp32; an AVX2-only CPU emulates them, ~100x slower than fp32. ``bf16_speed()`` times both once per
process (a fraction of a second, cached) and ``warn_if_slow_bf16`` turns a slow result into a warning that
names the measured slowdown and suggests fp32. ``measure_read_bandwidth`` is the memory read rate that bounds
decoding one sequence (each new token reads every weight once).
"""

from __future__ import annotations

import functools
import time
import warnings
from dataclasses import dataclass

import torch

SLOW_BF16_RATIO = 1.5  # bf16 is "slow" when a bf16 matmul takes this many times as long as the fp32 one


@dataclass(frozen=True)
class Bf16Speed:
    """Matmul speed of bf16 and fp32 on one device, and what the probe concluded."""

    fp32_flops: float
    bf16_flops: float
    capability: str  # torch's CPU capability (AVX2, AVX512, ...) or the GPU's name

    @property
    def slowdown(self) -> float:
        """How many times longer a bf16 matmul takes than an fp32 one (< 1: bf16 is faster)."""
        return self.fp32_flops / self.bf16_flops

    @property
    def fast(self) -> bool:
        return self.slowdown < SLOW_BF16_RATIO


def _matmul_seconds(dtype: torch.dtype, size: int, device: str) -> float:
    """Best of two timed (size x size) matmuls after one warm-up."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    best = float("inf")
    for i in range(3):
        start = time.perf_counter()
        a @ b
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i:
            best = min(best, time.perf_counter() - start)
    return best


@functools.cache
def bf16_speed(device: str = "cpu", size: int = 256) -> Bf16Speed:
    """Time a (size x size) matmul in fp32 and bf16 on ``device``, once per process.

    At 256 the probe takes ~1 ms where bf16 is fast and ~0.3 s where it is emulated (0.3 GFLOP/s).
    """
    flops = 2 * size**3
    fp32 = flops / _matmul_seconds(torch.float32, size, device)
    bf16 = flops / _matmul_seconds(torch.bfloat16, size, device)
    if device.startswith("cuda"):
        capability = torch.cuda.get_device_name(torch.device(device))
    else:
        capability = torch.backends.cpu.get_cpu_capability()
    return Bf16Speed(fp32_flops=fp32, bf16_flops=bf16, capability=capability)


def slow_bf16_reason(device: str | torch.device = "cpu") -> str | None:
    """Why bf16 should not be used on ``device`` (the measured slowdown), or None where bf16 is fast."""
    device = str(device)
    if device.startswith("cuda"):
        return None  # every GPU we train on has bf16 or fp16 tensor cores; autocast handles the rest
    speed = bf16_speed(device)
    if speed.fast:
        return None
    return (
        f"a bf16 matmul runs {speed.slowdown:.0f}x slower than fp32 on this CPU "
        f"(measured: bf16 {speed.bf16_flops / 1e9:.1f} GFLOP/s, fp32 {speed.fp32_flops / 1e9:.1f} GFLOP/s; "
        f"torch CPU capability {speed.capability}, no native bf16)"
    )


def warn_if_slow_bf16(what: str, device: str | torch.device = "cpu") -> bool:
    """Warn that ``what`` (e.g. "--mixed-precision bf16") will be slow on ``device``; True if it warned."""
    reason = slow_bf16_reason(device)
    if reason is None:
        return False
    warnings.warn(f"{what}: {reason}; use fp32 instead", UserWarning, stacklevel=2)
    return True


def measure_read_bandwidth(megabytes: int = 256, seconds: float = 0.5) -> float:
    """Bytes per second at which this process reads memory: the best ``sum`` of a buffer larger than the caches."""
    buffer = torch.ones(megabytes * 2**20 // 4)
    buffer.sum()  # touch every page once
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline or best == float("inf"):
        start = time.perf_counter()
        buffer.sum()
        best = min(best, time.perf_counter() - start)
    return buffer.numel() * buffer.element_size() / best


__all__ = ["Bf16Speed", "bf16_speed", "measure_read_bandwidth", "slow_bf16_reason", "warn_if_slow_bf16"]
