"""What components and stage hooks are handed: the build context and the run in progress."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from ..data import Dataset, RecSample, Split
    from ..distributed import World
    from ..popularity import ItemStatistics
    from ..registry import Component, Registries
    from .conformance import LossPlan


@dataclass
class RunContext:
    """Everything a component may need to build itself for one run.

    ``dataset.splits["train"]`` (also ``train``) is the training split *after* augmentation, so a model
    that counts co-occurrences sees the synthetic dialogues. ``stats`` are computed from it: the label
    counts include the synthetic samples, the popularity (and so the tiers) counts real dialogues only.
    """

    dataset: "Dataset"
    stats: "ItemStatistics"
    device: str = "cpu"
    seed: int = 0
    cache_dir: Path = Path(".cache")
    config: dict[str, Any] = field(default_factory=dict)
    # every registered component, for components that build others by name (an augmenter's LLM backend)
    registries: "Registries | None" = None

    @property
    def train(self) -> "Split":
        return self.dataset.splits["train"]


@dataclass
class RunState:
    """A run in progress, as lifecycle and stage hooks see it.

    Stage implementations (``crs_bench_train``, ``crs_bench_predict``) use ``validate()`` for model
    selection (it goes through the predict stage, so a model that ranks its own way is selected on its own
    lists), ``epoch_end()`` to report an epoch to observers, ``log()`` and ``progress()``.
    """

    config: dict[str, Any]
    config_hash: str
    run_id: str
    run_dir: Path
    seed: int
    device: str
    quiet: bool = False
    resume: bool = False
    dataset: "Dataset | None" = None
    stats: "ItemStatistics | None" = None
    train_split: "Split | None" = None
    train_samples: list["RecSample"] = field(default_factory=list)
    components: dict[str, "Component"] = field(default_factory=dict)
    context: RunContext | None = None
    model: Any = None
    loss: Any = None
    loss_plan: "LossPlan | None" = None
    augmenter: Any = None
    generator: Any = None
    metrics: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    stages: dict[str, str] = field(default_factory=dict)  # stage -> plugin that implemented it
    _validate: Callable[[], dict[str, Any]] | None = None
    _epoch_end: Callable[[int, dict[str, Any]], None] | None = None
    _progress: Callable[..., Any] | None = None

    @property
    def world(self) -> "World":
        """This process's rank and the number of data-parallel processes (``--processes``, torchrun); a
        stage that owns training shards its batches with `harness.distributed.shard` and passes this to
        `harness.training.optimisation_step`, which sums losses and gradients over the ranks."""
        from ..distributed import current

        return current()

    @property
    def accelerator(self) -> Any:
        """Accelerate's process state of the run (`accelerate.PartialState`: process index, count, device,
        ``split_between_processes``, ``wait_for_everyone``), for plugin-owned stages; created on first use."""
        from ..distributed import accelerator_state

        return accelerator_state(self.device)

    def log(self, message: str) -> None:
        if not self.quiet:
            print(f"[{self.run_id}] {message}", file=sys.stderr, flush=True)

    def validate(self) -> dict[str, Any]:
        """Recommendation metrics of the valid split in the `standard` setting (model selection)."""
        assert self._validate is not None, "validate() is available once the run's stages are set up"
        return self._validate()

    def epoch_end(self, epoch: int, metrics: dict[str, Any]) -> None:
        """Report a finished, checkpointed epoch to the ``crs_bench_epoch_end`` observers."""
        if self._epoch_end is not None:
            self._epoch_end(epoch, metrics)

    def progress(self, **kwargs: Any) -> Any:
        """A tqdm-like bar (disabled when quiet or not on a terminal)."""
        assert self._progress is not None
        return self._progress(**kwargs)




__all__ = ["RunContext", "RunState"]
