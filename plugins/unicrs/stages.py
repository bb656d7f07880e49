"""UniCRS's three training stages (SYSTEMS.md §7), as the plugin's ``crs_bench_train``:

1. **pretrain**, semantic-fusion pre-training: every turn of both roles, the turn itself *in* the input, one
   unit per entity the turn mentions (items included); CE over all entities; selected on valid loss.
2. **conv**, the conversation prompt: every recommender turn; LM loss on ``System: response<eos>`` (movies
   masked as ``<movie>``); selected on valid loss.
3. **rec**, the recommendation prompt: the protocol's recommendation samples; CE over all entities through the
   entity-tied head (or the run's loss over the catalogue); selected on the harness's validation metric
   (``train.select_metric``), i.e. exactly how every other model of the harness is selected.

Each stage has its own epochs, learning rate, warm-up, batch size, patience and unit cap (`presets`), AdamW
with weight decay and a linear warm-up/decay schedule, gradient clipping (``train.grad_clip``), and early
stopping. After every epoch it writes ``checkpoint-prompt-<stage>.pt`` (safe: tensors, numbers and strings,
loaded with ``weights_only=True`` and checked against the run's config hash and dataset fingerprint, the
helpers of `harness.training`), and ``-best.pt`` when the epoch improved; a finished stage's checkpoint holds
the selected weights and the RNG state, so ``--resume`` skips it, and an interrupted stage continues from its
last epoch exactly as if it had not stopped. Frozen backbones are never written (they reload from source).
"""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch.nn import functional as F

from harness.data import RECOMMENDER, Split
from harness.seeding import capture_rng_state, restore_rng_state
from harness.api import shard, sum_value
from harness.training import (TrainingState, check_identity, checkpoint_identity, close_epoch, epoch_order,
                              load_best, load_checkpoint, optimisation_step, resume_training, save_checkpoint,
                              save_training)

from . import CHECKPOINT_PREFIX
from .model import context_entities, torch_threads
from .presets import STAGE_NAMES


@dataclass(frozen=True)
class Unit:
    """One training or validation example of a stage: the context is ``turns[:length]`` of a dialogue."""

    uid: str
    split: Split
    dialogue_index: int
    length: int
    entities: tuple[int, ...]
    target: int = -1  # pretrain: an entity id; rec: an item index
    response: str = ""  # conv: the masked reference

    @property
    def turns(self) -> list[Any]:
        return self.split.dialogues[self.dialogue_index].turns[:self.length]


@dataclass
class StageSpec:
    name: str
    epochs: int
    lr: float
    warmup: int
    batch_size: int
    patience: int
    weight_decay: float
    max_samples: int | None
    valid_samples: int | None

    @classmethod
    def of(cls, settings: dict[str, Any], stage: str, epoch_cap: int) -> "StageSpec":
        get = lambda key: settings.get(f"{stage}_{key}")  # noqa: E731
        return cls(stage, min(get("epochs"), epoch_cap), get("lr"), get("warmup"), get("batch_size"),
                   get("patience"), settings["weight_decay"], get("max_samples"), get("valid_samples"))


# ------------------------------------------------------------------------------------------- units


def pretrain_units(split: Split, item_entities: Sequence[int]) -> list[Unit]:
    """Every turn (both roles) that mentions an entity or item: one unit per distinct entity, the turn in the
    input, the context entities those of the earlier turns."""
    units = []
    for d, dialogue in enumerate(split.dialogues):
        for t, turn in enumerate(dialogue.turns):
            targets = dict.fromkeys([*turn.entities, *(item_entities[i] for i in turn.items)])
            if not targets:
                continue
            before = context_entities(dialogue.turns[:t])
            units += [Unit(f"{split.name}/{dialogue.id}/{t}/{j}", split, d, t + 1, before, target)
                      for j, target in enumerate(targets)]
    return units


def conv_units(split: Split) -> list[Unit]:
    """Every recommender turn t >= 1 with text: context turns[:t], the masked response as target."""
    units = []
    for sample in split.conv_samples:
        turns = split.dialogues[sample.dialogue_index].turns
        if sample.reference.strip() and turns[sample.turn].role == RECOMMENDER:
            units.append(Unit(sample.uid, split, sample.dialogue_index, sample.turn,
                              context_entities(turns[:sample.turn]), response=sample.reference))
    return units


def rec_units(split: Split, samples: Sequence[Any]) -> list[Unit]:
    return [Unit(s.uid, split, s.dialogue_index, s.turn, s.context_entities, target=s.label) for s in samples]


def capped(units: list[Unit], limit: int | None, stage: str) -> list[Unit]:
    """The first `limit` units by SHA-256 of ``unicrs-<stage>:<uid>``, in their original order: the same subset
    for every seed and every model that uses this rule."""
    if limit is None or limit >= len(units):
        return units
    order = sorted(range(len(units)), key=lambda i: hashlib.sha256(f"unicrs-{stage}:{units[i].uid}".encode()).digest())
    return [units[i] for i in sorted(order[:limit])]


# ------------------------------------------------------------------------------------------ stages


@dataclass
class StageTask:
    """What differs between stages: units, the step loss, the selection value (higher is better)."""

    units: list[Unit]
    # (mean loss of a chunk, how many things it averages over: read only with several processes)
    loss: Callable[[list[Unit]], tuple[torch.Tensor, "int | torch.Tensor"]]
    select: Callable[[], tuple[float, dict[str, Any]]]
    selection: str
    parameters: list[torch.nn.Parameter]
    valid_units: int = 0
    available: int = 0
    extra: dict[str, Any] | None = None


def _mean_over(model: Any, units: list[Unit], size: int, value: Callable[[list[Unit]], tuple[float, int]]
               ) -> float:
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(units), size):
            part_total, part_count = value(units[start:start + size])
            total, count = total + part_total, count + part_count
    return total / max(1, count)


def pretrain_task(run: Any, model: Any, spec: StageSpec) -> StageTask:
    items = model.item_entities.tolist()
    available = pretrain_units(run.train_split, items)
    units = capped(available, spec.max_samples, "pretrain")
    valid = capped(pretrain_units(run.dataset.splits["valid"], items), spec.valid_samples, "pretrain-valid")
    model.ensure_texts([u.turns for u in units + valid])

    def batch(chunk: list[Unit]) -> tuple[dict[str, Any], torch.Tensor]:
        targets = torch.tensor([u.target for u in chunk], dtype=torch.long, device=model.device)
        return model.batch([u.turns for u in chunk], [u.entities for u in chunk]), targets

    def loss(chunk: list[Unit]) -> tuple[torch.Tensor, int]:
        inputs, targets = batch(chunk)
        return F.cross_entropy(model.pretrain_logits(inputs), targets), len(chunk)

    def select() -> tuple[float, dict[str, Any]]:
        hits: list[float] = []

        def value(chunk: list[Unit]) -> tuple[float, int]:
            inputs, targets = batch(chunk)
            logits = model.pretrain_logits(inputs)
            hits.append(float((logits.argmax(1) == targets).sum()))
            return float(F.cross_entropy(logits, targets, reduction="sum")), len(chunk)

        mean = _mean_over(model, valid, spec.batch_size, value)
        return -mean, {"valid_loss": mean, "valid_recall@1": sum(hits) / max(1, len(valid))}

    return StageTask(units, loss, select, "valid loss (lower is better)", model.stage_parameters("pretrain"),
                     len(valid), len(available))


def conv_task(run: Any, model: Any, spec: StageSpec) -> StageTask:
    available = conv_units(run.train_split)
    units = capped(available, spec.max_samples, "conv")
    valid = capped(conv_units(run.dataset.splits["valid"]), spec.valid_samples, "conv-valid")
    model.ensure_texts([u.turns for u in units + valid])

    def batch(chunk: list[Unit]) -> dict[str, Any]:
        return model.batch([u.turns for u in chunk], [u.entities for u in chunk], [u.response for u in chunk])

    def select() -> tuple[float, dict[str, Any]]:
        def value(chunk: list[Unit]) -> tuple[float, int]:
            inputs = batch(chunk)
            tokens = int((inputs["targets"] != -100).sum())
            return float(model.conv_loss(inputs)) * tokens, tokens

        mean = _mean_over(model, valid, spec.batch_size, value)
        return -mean, {"valid_loss": mean, "valid_perplexity": math.exp(min(mean, 50.0))}

    def loss(chunk: list[Unit]) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = batch(chunk)
        return model.conv_loss(inputs), (inputs["targets"] != -100).sum()  # a mean over response tokens

    return StageTask(units, loss, select, "valid loss (lower is better)",
                     model.stage_parameters("conv"), len(valid), len(available))


def rec_task(run: Any, model: Any, spec: StageSpec) -> StageTask:
    plan, metric = run.loss_plan, run.config["train"]["select_metric"]
    available = rec_units(run.train_split, run.train_samples)
    units = capped(available, spec.max_samples, "rec")
    model.ensure_texts([u.turns for u in units])

    def loss(chunk: list[Unit]) -> tuple[torch.Tensor, int]:
        labels = torch.tensor([u.target for u in chunk], dtype=torch.long, device=model.device)
        inputs = model.rec_inputs(chunk)
        return model.training_loss(inputs, labels, plan.loss), len(chunk)

    def select() -> tuple[float, dict[str, Any]]:
        valid = run.validate()
        if valid.get(metric) is None:
            raise KeyError(f"selection metric '{metric}' is not produced by the configured metrics")
        return float(valid[metric]), {"valid": valid}

    return StageTask(units, loss, select, f"valid {metric} (harness validation)", model.stage_parameters("rec"),
                     available=len(available),
                     extra={"loss": run.config["loss"]["name"] if model.settings["rec_softmax"] == "items"
                            else "ce over all KG entities"})


TASKS = {"pretrain": pretrain_task, "conv": conv_task, "rec": rec_task}


# ------------------------------------------------------------------------------------------ loop


def _schedule(warmup: int, total: int) -> Callable[[int], float]:
    """Linear warm-up over `warmup` steps, then linear decay to 0 at `total` (UniCRS's linear schedule)."""
    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))
    return factor


def _salt(stage: str) -> int:
    """A per-stage offset of the shuffling seed, so the stages do not visit their units in related orders."""
    return int(hashlib.sha256(f"unicrs-{stage}".encode()).hexdigest()[:6], 16)


def run_stage(run: Any, model: Any, stage: str, spec: StageSpec, epoch_offset: int) -> dict[str, Any]:
    """Train one stage with checkpoints, early stopping and best-epoch reload; returns its summary."""
    path = Path(run.run_dir) / f"{CHECKPOINT_PREFIX}{stage}.pt"
    best_path = path.with_name(f"{CHECKPOINT_PREFIX}{stage}-best.pt")
    if hasattr(model, "stage_started"):
        model.stage_started(stage)
    if spec.epochs == 0:
        return {"name": STAGE_NAMES[stage], "epochs": 0, "epochs_run": 0, "steps": 0, "units": 0, "seconds": 0.0,
                "skipped": "epochs is 0"}
    saved = None
    if run.resume and path.is_file():
        saved = load_checkpoint(path)
        check_identity(path, saved, run)
        if saved.get("finished"):
            model.load_trainable_state(saved["model"])
            restore_rng_state(saved["rng"])
            run.log(f"stage {stage}: finished earlier, skipped ({path})")
            return saved["summary"]
    task = TASKS[stage](run, model, spec)
    is_rec, plan = stage == "rec", run.loss_plan
    loss_module = plan.module if is_rec and plan is not None else None
    sampler = plan.sampler if is_rec and plan is not None else None
    min_batch = plan.min_batch if is_rec and plan is not None else 1
    world = run.world  # several processes: each takes a strided share of every batch (harness.distributed)
    if world.size > 1 and min_batch > 1:
        raise ValueError(f"loss '{run.config['loss']['name']}' compares samples within a batch: the UniCRS "
                         "stages cannot split it over processes (--processes 1)")
    optimizer = torch.optim.AdamW(task.parameters, lr=spec.lr, weight_decay=spec.weight_decay)
    steps_per_epoch = max(1, math.ceil(len(task.units) / spec.batch_size))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(spec.warmup, steps_per_epoch * spec.epochs))
    state = TrainingState()
    if saved is not None:
        state = resume_training(saved, model.load_trainable_state, optimizer, scheduler, loss_module)
        run.log(f"stage {stage}: resumed from epoch {state.epoch} ({path})")
    settings = run.config["train"]
    autocast = settings["precision"] != "fp32" and str(run.device).startswith("cuda")
    dtype = torch.bfloat16 if settings["precision"] == "bf16" else torch.float16
    targets = torch.tensor([u.target for u in task.units], dtype=torch.long)
    while state.epoch < spec.epochs and state.bad_epochs < spec.patience:
        epoch = state.epoch + 1
        started = time.perf_counter()
        model.train()
        if loss_module is not None:
            loss_module.train()
        if is_rec and plan is not None and plan.epoch_hook is not None:
            plan.epoch_hook.on_epoch_start(epoch - 1)
        order = epoch_order(run.seed + _salt(stage), epoch, len(task.units), sampler, targets, run.device).tolist()
        total, batches = 0.0, 0
        bar = run.progress(total=len(task.units), desc=f"{stage} {epoch}", unit="unit")
        for start in range(0, len(order), spec.batch_size):
            chunk = [task.units[i] for i in order[start:start + spec.batch_size]]
            if len(chunk) < min_batch:
                continue
            local = shard(chunk, world) if world.size > 1 else chunk
            with torch.autocast(device_type="cuda", dtype=dtype, enabled=autocast):
                loss, weight = task.loss(local) if local else (None, 0)
            if world.size > 1:  # this rank's share of the batch mean: its mean weighted by its share
                mine = float(weight)  # read back only here: one process never synchronises for it
                share = mine / max(sum_value(mine, str(run.device)), 1.0)
                loss = None if loss is None else loss * share
            total += optimisation_step(loss, optimizer, scheduler, task.parameters, settings["grad_clip"],
                                       f"at stage {stage}, epoch {epoch}, step {state.steps}",
                                       lr_setting=f"model.params.{stage}_lr", world=world)
            batches, state.steps = batches + 1, state.steps + 1
            bar.update(len(chunk))
        bar.close()
        train_seconds = time.perf_counter() - started
        value, metrics = task.select()
        state.seconds += time.perf_counter() - started
        state.samples_seen += len(task.units)
        improved = close_epoch(state, epoch, value, spec.patience, spec.epochs, lambda: save_checkpoint(
            best_path, {"model": model.trainable_state(), "epoch": epoch, "identity": checkpoint_identity(run)}))
        summary = {"epoch": epoch, "train_loss": total / max(1, batches), "selection_value": value,
                   "improved": improved, "train_seconds": round(train_seconds, 2),
                   **{k: v for k, v in metrics.items() if k != "valid"}}
        state.history.append(summary)
        save_training(path, run, model.trainable_state(), optimizer, scheduler, state, loss_module)
        run.log(f"stage {stage} epoch {epoch}: loss {summary['train_loss']:.4f}, selection {value:.4f}"
                + (" *" if improved else ""))
        run.epoch_end(epoch_offset + epoch, {**summary, "stage": stage, **({"valid": metrics["valid"]}
                                                                             if "valid" in metrics else {})})
    load_best(best_path, run, model.load_trainable_state)
    steps = max(1, state.steps)
    result = {"name": STAGE_NAMES[stage], "epochs": spec.epochs, "epochs_run": state.epoch, "lr": spec.lr,
              "warmup_steps": spec.warmup, "batch_size": spec.batch_size, "patience": spec.patience,
              "weight_decay": spec.weight_decay, "schedule": "linear warm-up, linear decay",
              "units": len(task.units), "units_available": task.available, "max_samples": spec.max_samples,
              "valid_units": task.valid_units, "selection": task.selection, "best_epoch": state.best_epoch,
              "best_selection_value": None if state.best_epoch == 0 else state.best_value,
              "stopped_early": state.stopped_early, "steps": state.steps, "seconds": round(state.seconds, 2),
              "seconds_per_step": round(sum(h["train_seconds"] for h in state.history) / steps, 3)
              if state.history else None, "history": state.history, **(task.extra or {})}
    save_checkpoint(path, {"model": model.trainable_state(), "finished": True, "summary": result,
                           "rng": capture_rng_state(), "identity": checkpoint_identity(run)})
    return result


def train_stages(run: Any) -> dict[str, Any]:
    """All of the model's stages in order; the record's ``training`` summary."""
    model = run.model
    cap = run.config["train"]["epochs"]
    if cap == 0:
        return {"trained": False, "selection": "none (train.epochs is 0)"}
    summaries: dict[str, Any] = {}
    offset = 0
    for stage in model.prompt_stages:
        with torch_threads(model.settings["threads"]):
            summaries[stage] = run_stage(run, model, stage, StageSpec.of(model.settings, stage, cap), offset)
        model.stage_log[stage] = {k: v for k, v in summaries[stage].items() if k != "history"}
        offset += summaries[stage]["epochs"]
        model.after_stage(stage)
    rec = summaries.get("rec", {})
    seconds = sum(s["seconds"] for s in summaries.values())
    units = sum(s["units"] * s["epochs_run"] for s in summaries.values())
    return {
        "trained": True,
        "stages": summaries,
        "epochs_run": sum(s["epochs_run"] for s in summaries.values()),
        "best_epoch": rec.get("best_epoch"),
        "selection_metric": run.config["train"]["select_metric"],
        "best_valid_value": rec.get("best_selection_value"),
        "stopped_early": rec.get("stopped_early"),
        "steps": sum(s["steps"] for s in summaries.values()),
        "train_samples": len(run.train_samples),
        "throughput_samples_per_second": round(units / seconds, 1) if seconds else None,
        "seconds_per_stage": {stage: s["seconds"] for stage, s in summaries.items()},
    }

