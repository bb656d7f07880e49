"""Every interface a plugin implements, declared and documented here. The runner checks the components
of a run once, when it builds them (`conformance.check`: recommender, loss, augmenter, metric families,
response generator), never in a hot path; components that build others by name (an LLM backend, a
retriever) check what they build the same way.

Interfaces are structural (`typing.Protocol`): a plugin needs no base class, only the members listed.
Optional capabilities are separate runtime-checkable protocols (a loss that adjusts test scores, one
that wants a weighted sampler, ...), tested with ``isinstance`` at build time.

Shapes: ``B`` a batch, ``I`` the catalogue size (items are indices 0..I-1 in catalogue order).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:  # torch stays out of `import harness.api`
    import numpy as np
    import torch

    from ..data import ConvSample, Dataset, Dialogue, RecSample, Split
    from ..ranking import MetricContext, RankedLists


# --- data -------------------------------------------------------------------------------------


@runtime_checkable
class DatasetFactory(Protocol):
    """``factory(data_dir, **params) -> Dataset``: catalogue, optional KG and the three splits' dialogues.

    The harness builds the recommendation and conversation samples from the dialogues (the protocol's
    rules in `harness.data.build_samples`), so a loader returns dialogues only. Register with
    ``input_files=callable(data_dir) -> [Path, ...]`` when the dataset reads files: they are hashed into
    the dataset fingerprint, and their change invalidates the cache.
    """

    def __call__(self, data_dir: Path | None, **params: Any) -> "Dataset": ...


# --- recommendation ---------------------------------------------------------------------------


@runtime_checkable
class Recommender(Protocol):
    """Scores every catalogue item for a context.

    ``trainable`` says whether the built-in training stage trains it (then it must also be a
    `TrainableRecommender`); baselines set it to False and only score.
    """

    trainable: bool

    def make_batch(self, split: "Split", samples: Sequence["RecSample"]) -> Any:
        """Featurize samples: padding, tensors on the model's device."""

    def scores(self, batch: Any) -> "torch.Tensor":
        """[B, I] scores, finite or -inf (never NaN); the harness takes the top 50 on the device."""


@runtime_checkable
class TrainableRecommender(Recommender, Protocol):
    """A `Recommender` that is a ``torch.nn.Module``, trained by the built-in training stage.

    ``forward(batch)`` returns [B, I] training logits; ``training_loss`` is one optimisation step's
    objective (`harness.api.LogitsTraining` supplies ``loss(self(batch), labels)``; models with
    auxiliary terms, e.g. a contrastive prototype term, override it).
    """

    def training_loss(self, batch: Any, labels: "torch.Tensor", loss: "Loss") -> "torch.Tensor":
        """Scalar loss for one batch; `labels` are [B] item indices on the model's device."""

    def parameters(self) -> Iterator["torch.nn.Parameter"]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...

    def train(self, mode: bool = True) -> Any: ...

    def eval(self) -> Any: ...

    def to(self, device: Any) -> Any: ...


class LogitsTraining:
    """Mixin giving a `TrainableRecommender` the plain objective ``loss(forward(batch), labels)``."""

    def training_loss(self, batch: Any, labels: "torch.Tensor", loss: "Loss") -> "torch.Tensor":
        return loss(self(batch).float(), labels)  # type: ignore[operator]


# --- losses -----------------------------------------------------------------------------------


@runtime_checkable
class Loss(Protocol):
    """``loss(logits [B, I], labels [B]) -> scalar``.

    Static needs are declared at registration with ``requires=``: ``"item_counts"`` (global training-
    label counts, read from ``ctx.stats``), ``"cosine_head"`` / ``"bounded_head"`` (a model capability,
    `provides=` at the model's registration), ``"epoch_hook"`` (must be an `EpochHookLoss`),
    ``"batch_min_2"`` (the trainer never passes a batch of one), ``"rng"`` (the loss seeds its own
    generator from ``ctx.seed``). Dynamic capabilities are the protocols below.
    """

    def __call__(self, logits: "torch.Tensor", labels: "torch.Tensor") -> "torch.Tensor": ...


@runtime_checkable
class ModuleLoss(Protocol):
    """A loss that is a ``torch.nn.Module``: moved to the run's device, switched between train and eval
    (stateful losses update state only in training mode), and checkpointed with the model."""

    def to(self, device: Any) -> Any: ...

    def train(self, mode: bool = True) -> Any: ...

    def eval(self) -> Any: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


@runtime_checkable
class EpochHookLoss(Protocol):
    """Called by the trainer before every training epoch (0-based): deferred re-weighting, resets."""

    def on_epoch_start(self, epoch: int) -> None: ...


@runtime_checkable
class ScoreAdjustingLoss(Protocol):
    """Changes test-time scores (post-hoc logit adjustment) when ``adjusts_scores`` is True."""

    adjusts_scores: bool

    def adjust_scores(self, scores: "torch.Tensor") -> "torch.Tensor": ...


@runtime_checkable
class WeightedSamplingLoss(Protocol):
    """Wants training samples drawn with replacement by per-sample weights when
    ``wants_weighted_sampler`` is True (e.g. ACFL's class-balanced sampling)."""

    wants_weighted_sampler: bool

    def sample_weights(self, labels: "torch.Tensor") -> "torch.Tensor":
        """[N] non-negative weights for the N training labels."""


# --- data augmentation ------------------------------------------------------------------------


@runtime_checkable
class Augmenter(Protocol):
    """Adds synthetic training dialogues before samples are built; never sees valid or test."""

    def augment(self, train: Sequence["Dialogue"], rng: random.Random) -> list["Dialogue"]:
        """The *new* dialogues, each marked ``synthetic=True``; the input is not modified."""

    def statistics(self) -> dict[str, Any]:
        """Generated / filtered / accepted counts, for the record."""


# --- metrics ----------------------------------------------------------------------------------


@runtime_checkable
class RankingMetricFamily(Protocol):
    """Task ``rec``: computed from the top-50 lists of one setting. Declared with a `MetricSpec`."""

    def compute(self, lists: "RankedLists", ctx: "MetricContext") -> dict[str, Any]:
        """Flat ``{key: value or None}``; every key must match the family's declared patterns."""


@runtime_checkable
class ConversationMetricFamily(Protocol):
    """Task ``conv``: computed from generated responses and their references (both clean: movie mentions
    as ``<movie>``)."""

    def compute_text(self, predictions: Sequence[str], references: Sequence[str]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ConvOutputs:
    """Everything stored about the scored responses of a run, aligned by position (`harness.conversation`).

    ``predictions`` are what text metrics score: the generated text cleaned as the references are
    (mentions of catalogue items as ``<movie>``). ``responses`` are the texts as generated, titles in
    place. ``recommended`` is the name of the recommender's top item for each context (None without a
    recommender), ``gold`` the names of the items the reference turn mentions, ``contexts`` the dialogue
    so far as ``User: ...`` / ``System: ...`` lines.
    """

    predictions: Sequence[str]
    references: Sequence[str]
    responses: Sequence[str]
    contexts: Sequence[str]
    recommended: Sequence[str | None]
    gold: Sequence[Sequence[str]]


@runtime_checkable
class OutputsMetricFamily(Protocol):
    """Optional, for conversation families that need more than the text pairs (the recommended item, the
    gold items, the context): the harness calls ``compute_outputs`` instead of ``compute_text``."""

    def compute_outputs(self, outputs: ConvOutputs) -> dict[str, Any]: ...


@runtime_checkable
class OutputsBootstrapTerms(Protocol):
    """Optional, for `OutputsMetricFamily` families: the metric as terms over responses (unit
    ``"responses"``), so `bench compare` re-weights them in a paired bootstrap (`harness.significance`)."""

    def bootstrap_terms_outputs(self, outputs: ConvOutputs) -> list[Any]: ...


@runtime_checkable
class IdentifiedMetricFamily(Protocol):
    """Optional, for metric families whose values depend on more than their version and parameters (an
    LLM judge: the judge model and endpoint, the rubric). ``identity()`` is stored with the family in
    ``record.metric_families.<name>.details``, so runs scored differently never share a leaderboard table."""

    def identity(self) -> dict[str, Any]: ...


@runtime_checkable
class BootstrapTerms(Protocol):
    """Optional, for ranking families: the metric as sums over resampling units, so a paired bootstrap
    re-weights instead of recomputing (see `harness.significance`)."""

    def bootstrap_terms(self, lists: "RankedLists", ctx: "MetricContext") -> list[Any]: ...


@runtime_checkable
class ResamplingUnit(Protocol):
    """Optional, for ranking families without terms: what the bootstrap resamples when it recomputes
    them, ``"samples"`` (the default) or ``"contexts"`` (list-level metrics)."""

    resampling_unit: str


@runtime_checkable
class TextBootstrapTerms(Protocol):
    """Optional, for conversation families: the `BootstrapTerms` of generated text."""

    def bootstrap_terms_text(self, predictions: Sequence[str], references: Sequence[str]) -> list[Any]: ...


# --- generation -------------------------------------------------------------------------------


@runtime_checkable
class LLMBackend(Protocol):
    """A chat model for components that generate text (augmenters, judges, generators)."""

    calls: int

    def identity(self) -> dict[str, Any]:
        """What makes its output differ (kind, model, endpoint): part of every generation cache key."""

    def chat(self, messages: Sequence[dict[str, str]], *, temperature: float, max_tokens: int,
             seed: int) -> str: ...


@runtime_checkable
class Retriever(Protocol):
    """Nearest documents of a fixed corpus (demonstration retrieval, retrieval-based responses)."""

    def index(self, corpus: Sequence[str]) -> None:
        """Build the index once; document ids are positions in `corpus`."""

    def search(self, queries: Sequence[str], k: int,
               exclude: Sequence[Sequence[int]] | None = None) -> tuple["np.ndarray", "np.ndarray"]:
        """([Q, k] document ids, [Q, k] scores), best first; ``exclude[q]`` ids are never returned for
        query q (a training query's own conversation). One batched call, never a loop over the corpus."""


@runtime_checkable
class ResponseGenerator(Protocol):
    """Writes the recommender's next utterance: the conversation task.

    Attached to any recommender by config (``generator: {name, params}``), or implemented by the model
    itself (a model that speaks).
    """

    def fit(self, train: "Split", valid: "Split") -> dict[str, Any]:
        """Train on the training split's conversation samples (select on valid); a summary for the record."""

    def generate(self, split: "Split", samples: Sequence["ConvSample"],
                 recommendations: "np.ndarray | None") -> list[str]:
        """One response per sample, in order, as plain text with item titles in place (the harness masks
        them for scoring). ``recommendations`` [N, k] are the run recommender's top-k item indices for each
        sample's context, best first (None when no recommender ranks); the reference is never passed."""


@runtime_checkable
class Describable(Protocol):
    """Optional for every component: resolved settings for the record (``components.<kind>.details``).
    A model's ``backbone`` and ``variant`` keys, when present, qualify its leaderboard row:
    ``model (backbone, variant)``, so rows that differ in them are told apart by name, not by hash."""

    def describe(self) -> dict[str, Any]: ...


# --- grids --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One grid cell of a recipe: a resolved config (defaults filled in, as the record stores it), its
    position in the recipe and its run id. Plain data, so it pickles to any worker."""

    index: int
    run_id: str
    config: dict[str, Any]

    @property
    def device(self) -> str:
        """The device the config asks for (``auto``, ``cpu``, ``cuda[:i]``): what an executor reserves."""
        return str(self.config.get("device", "auto"))


@dataclass
class CellResult:
    """What a cell sends back: its record (None when it failed) with the per-sample rows when the driver
    must write them (a remote worker), or the one-line error of a failed cell."""

    index: int
    run_id: str
    record: dict[str, Any] | None = None
    rows: list[dict[str, Any]] | None = None
    error: str | None = None
    seconds: float = 0.0


@runtime_checkable
class Executor(Protocol):
    """Runs the cells of a grid and yields one `CellResult` per cell as each finishes, in any order.

    ``run(cell)`` is a picklable callable the harness supplies: it runs the cell where it is called and
    never raises for a failing cell (its error is in the result). A `remote` executor runs it elsewhere
    (a Ray task, a Slurm array job); the driver then writes the records. When the caller stops iterating
    (a failure without ``--keep-going``), the executor cancels what has not finished. ``data_dir`` is
    the dataset directory the cells read: a remote executor checks it exists where cells run, before any
    cell starts."""

    remote: bool

    def map(self, run: Callable[[Cell], CellResult], cells: Sequence[Cell], *,
            data_dir: str | None) -> Iterator[CellResult]: ...
