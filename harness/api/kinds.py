"""The component kinds, defined once: everything else (registries, registration hooks, `bench plugins`,
the docs test) is derived from `KINDS`.

Adding a kind of component is one entry here, one registration hook in `hookspecs.py` and one interface in
`interfaces.py`; the plugin manager and the registries pick it up without further edits.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ComponentKind:
    """One kind of component a plugin can register."""

    registry: str  # the registry's name, plural: "models"
    singular: str  # how messages name one: "model"
    hook: str  # the registration hook that fills the registry
    interface: str  # the name of its interface in harness.api
    factory: str  # the factory signature, for docs and error messages


KINDS: tuple[ComponentKind, ...] = (
    ComponentKind("datasets", "dataset", "crs_bench_register_datasets", "DatasetFactory",
                  "factory(data_dir: Path | None, **params) -> Dataset"),
    ComponentKind("models", "model", "crs_bench_register_models", "Recommender",
                  "factory(ctx: RunContext, **params) -> Recommender"),
    ComponentKind("losses", "loss", "crs_bench_register_losses", "Loss",
                  "factory(ctx: RunContext, **params) -> Loss"),
    ComponentKind("augmenters", "augmenter", "crs_bench_register_augmenters", "Augmenter",
                  "factory(ctx: RunContext, **params) -> Augmenter"),
    ComponentKind("metrics", "metric", "crs_bench_register_metrics", "RankingMetricFamily",
                  "factory(**declared_params) -> RankingMetricFamily | ConversationMetricFamily"),
    ComponentKind("llm_backends", "LLM backend", "crs_bench_register_llm_backends", "LLMBackend",
                  "factory(cache_dir: Path, **params) -> LLMBackend"),
    ComponentKind("retrievers", "retriever", "crs_bench_register_retrievers", "Retriever",
                  "factory(ctx: RunContext, **params) -> Retriever"),
    ComponentKind("generators", "generator", "crs_bench_register_generators", "ResponseGenerator",
                  "factory(ctx: RunContext, **params) -> ResponseGenerator"),
    ComponentKind("executors", "executor", "crs_bench_register_executors", "Executor",
                  "factory(**params) -> Executor"),
)

BY_REGISTRY: dict[str, ComponentKind] = {kind.registry: kind for kind in KINDS}
REGISTRY_NAMES: tuple[str, ...] = tuple(BY_REGISTRY)


def kind_of(registry: str) -> ComponentKind:
    try:
        return BY_REGISTRY[registry]
    except KeyError:
        raise ValueError(f"unknown component kind {registry!r}; known: {', '.join(REGISTRY_NAMES)}") from None
