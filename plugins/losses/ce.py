"""Cross-entropy over the catalogue: the reference loss every long-tail loss is compared with (LOSSES.md §4)."""
from __future__ import annotations

from harness.api import hookimpl


def build_cross_entropy(ctx, label_smoothing: float = 0.0):
    """Softmax cross-entropy over item logits, averaged over the batch (fp32 even for bf16 logits)."""
    from ._base import CrossEntropy

    return CrossEntropy(label_smoothing=label_smoothing)


@hookimpl
def crs_bench_register_losses(registry) -> None:
    registry.add("ce", build_cross_entropy, "Softmax cross-entropy over catalogue items.", version="1")
