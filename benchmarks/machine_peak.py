"""The machine's fp32 matrix-product rate, measured in the benchmark's own run.

Why: a vectorised search or graph build and its per-item loop do the same floating-point work, so their
ratio cannot exceed (rate of one big matrix product) / (rate of the loop's matrix-vector products). Printing
the rates beside the ratio says how much of a target the hardware allows.
"""
from __future__ import annotations

import time

import numpy as np


def fp32_gemm_gflops(size: int = 2048, repeats: int = 3) -> float:
    """GFLOP/s of the best of `repeats` [size, size] @ [size, size] float32 products (BLAS, its threads)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    a @ b  # warm-up: thread pool and caches
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2.0 * size ** 3 / best / 1e9


def rate(flops: float, seconds: float) -> float:
    """GFLOP/s of `flops` floating-point operations done in `seconds`."""
    return flops / seconds / 1e9
