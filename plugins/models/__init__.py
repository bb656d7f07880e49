"""Built-in learned models. Each lives in its own module (torch imported there) and is registered here
lazily by ``"module:attribute"`` so that listing plugins never imports torch."""
from __future__ import annotations

from harness import hookimpl


@hookimpl
def crs_bench_register_models(registry) -> None:
    registry.add("linear-context", "plugins.models.linear_context:LinearContextRecommender",
                 "Bag of context words and context movies with a linear item head: the fast learned baseline.")
