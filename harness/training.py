"""The default training loop: AdamW with warm-up, gradient clipping, per-epoch checkpoints, and early
stopping on a validation metric. Test data never enters this module (PROTOCOL.md §6.1)."""
from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .boundary import PluginFailure, Suspect, guard
from .errors import RunError
from .results import write_atomic
from .seeding import capture_rng_state, restore_rng_state

CHECKPOINT = "checkpoint.pt"
BEST_CHECKPOINT = "checkpoint-best.pt"


@dataclass
class TrainingState:
    """Everything needed to continue training exactly where it stopped."""

    epoch: int = 0  # epochs completed
    best_value: float = float("-inf")
    best_epoch: int = 0
    bad_epochs: int = 0
    steps: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    samples_seen: int = 0
    stopped_early: bool = False


class CheckpointError(RunError):
    """A checkpoint that cannot be used: not a safe tensor file, or written for other data or settings."""


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """`torch.save` into memory, then an atomic write: a killed run never leaves half a checkpoint. Public,
    with `load_checkpoint` and the identity checks, for stage plugins that train their own way."""
    import torch

    from .run_directory import checkpoint_failure

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    try:
        write_atomic(path, buffer.getvalue())
    except OSError as error:  # a full disk is the harness's write failing, not the model's fault
        raise RunError(checkpoint_failure(error, path)) from None


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Tensors, numbers, strings and containers only (``weights_only=True``): a planted checkpoint cannot run
    code; it is refused with its path."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: not a safe checkpoint ({first}); delete it to train from scratch") from None


def checkpoint_identity(run: Any) -> dict[str, str]:
    """What a checkpoint belongs to: the same config (hash) on the same data (fingerprint)."""
    return {"config_hash": run.config_hash, "dataset_fingerprint": run.dataset.fingerprint}


def check_identity(path: Path, saved: dict[str, Any], run: Any) -> None:
    stored, current = saved.get("identity") or {}, checkpoint_identity(run)
    for key, what in (("dataset_fingerprint", "dataset fingerprint"), ("config_hash", "config hash")):
        if stored.get(key) != current[key]:
            raise CheckpointError(
                f"{path}: written for {what} {str(stored.get(key))[:12]}, this run has {current[key][:12]} (the "
                f"{'data' if key == 'dataset_fingerprint' else 'settings'} changed): rerun without --resume to "
                "train from scratch")


# --- pieces of an epoch loop, shared with stage plugins that train their own way (plugins/unicrs/stages.py) ---


def epoch_order(seed: int, epoch: int, count: int, sampler: Any = None, labels: Any = None,
                device: str = "cpu") -> Any:
    """The epoch's sample order: a permutation from a generator seeded by (seed, epoch), or, for a loss that
    wants a weighted sampler, `count` draws with replacement by its weights of `labels`."""
    import torch

    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    if sampler is not None:
        weights = sampler.sample_weights(labels.to(device)).detach().float().cpu()
        return torch.multinomial(weights, count, replacement=True, generator=generator)
    return torch.randperm(count, generator=generator)


def non_finite_loss(value: float, where: str, lr_setting: str = "train.lr") -> str:
    """The one message for a non-finite training loss: where it happened and which learning rate to lower."""
    return f"non-finite training loss {value} {where}; lower {lr_setting} or check the loss for log(0) or division by zero"


def optimisation_step(loss: Any, optimizer: Any, scheduler: Any, parameters: Any, grad_clip: float,
                      where: str, lr_setting: str = "train.lr", world: Any = None) -> float:
    """Backward, optional gradient clipping, optimizer and schedule step; returns the loss value, read once
    (the step's one host synchronisation). A non-finite loss raises FloatingPointError naming `where` and the
    learning-rate setting to lower, before anything is updated.

    With several processes (`world`, a `harness.distributed.World` of size > 1), `loss` is this rank's
    share of the batch loss (None when its share is empty, see `shard`): the values and the gradients are
    summed over the ranks before the check and the step, so every rank takes the one-process step."""
    import torch

    parameters = list(parameters)
    distributed = world is not None and world.size > 1
    value = 0.0 if loss is None else float(loss.detach())
    if distributed:
        from .distributed import sum_value

        value = sum_value(value, str(parameters[0].device) if parameters else "cpu")
    if not math.isfinite(value):
        raise FloatingPointError(non_finite_loss(value, where, lr_setting))
    optimizer.zero_grad(set_to_none=True)
    if loss is not None:
        loss.backward()
    if distributed:
        from .distributed import sum_gradients

        sum_gradients(parameters)
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
    optimizer.step()
    scheduler.step()
    return value


def close_epoch(state: TrainingState, epoch: int, value: float, patience: int, epochs: int,
                save_best: Any) -> bool:
    """Early-stopping bookkeeping of a finished epoch (best value and epoch, epochs without improvement,
    whether training stopped early); `save_best()` writes the best checkpoint when the epoch improved."""
    improved = value > state.best_value
    if improved:
        state.best_value, state.best_epoch, state.bad_epochs = value, epoch, 0
        save_best()
    else:
        state.bad_epochs += 1
    state.epoch = epoch
    state.stopped_early = state.bad_epochs >= patience and epoch < epochs
    return improved


def save_training(path: Path, run: Any, model_state: dict[str, Any], optimizer: Any, scheduler: Any,
                  state: TrainingState, loss_module: Any = None) -> None:
    """The resumable checkpoint of an epoch: weights, optimizer, schedule, loop state, a stateful loss's
    state, every RNG and the run's identity."""
    save_checkpoint(path, {"model": model_state, "optimizer": optimizer.state_dict(),
                           "scheduler": scheduler.state_dict(), "state": state.__dict__,
                           "loss": loss_module.state_dict() if loss_module is not None else None,
                           "rng": capture_rng_state(), "identity": checkpoint_identity(run)})


def resume_training(saved: dict[str, Any], load_model: Any, optimizer: Any, scheduler: Any,
                    loss_module: Any = None) -> TrainingState:
    """Restore what `save_training` wrote (already loaded and identity-checked): the loop continues as if it
    had not stopped."""
    load_model(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    if saved.get("loss") is not None and loss_module is not None:
        loss_module.load_state_dict(saved["loss"])  # stateful losses (CSL histograms) continue too
    restore_rng_state(saved["rng"])
    return TrainingState(**saved["state"])


def load_best(path: Path, run: Any, load_model: Any) -> None:
    """Reload the best epoch's weights, when a best checkpoint was written."""
    if path.is_file():
        best = load_checkpoint(path)
        check_identity(path, best, run)
        load_model(best["model"])


def train(run: Any) -> TrainingState:
    """Train `run.model` on `run.train_samples`, checkpointing into `run.run_dir` after every epoch.

    What to do with the loss (device, train/eval, epoch hook, weighted sampling, checkpointing) comes
    from `run.loss_plan`, decided once at build time. Leaves the best validation checkpoint loaded in the
    model when it returns.
    """
    import torch

    model, settings, device, plan = run.model, run.config["train"], run.device, run.loss_plan
    samples = run.train_samples
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings["lr"], weight_decay=settings["weight_decay"])
    steps_per_epoch = max(1, -(-len(samples) // settings["batch_size"]))
    warmup = int(settings["warmup_ratio"] * steps_per_epoch * settings["epochs"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0)
    state = TrainingState()
    checkpoint_path, best_path = run.run_dir / CHECKPOINT, run.run_dir / BEST_CHECKPOINT
    if run.resume and checkpoint_path.is_file():
        saved = load_checkpoint(checkpoint_path)
        check_identity(checkpoint_path, saved, run)
        state = resume_training(saved, model.load_state_dict, optimizer, scheduler, plan.module)
        run.log(f"resumed from epoch {state.epoch} ({checkpoint_path})")
    autocast = settings["precision"] != "fp32" and device.startswith("cuda")
    dtype = torch.bfloat16 if settings["precision"] == "bf16" else torch.float16
    select = settings["select_metric"]
    loss_fn = plan.loss
    labels_all = torch.tensor([s.label for s in samples], dtype=torch.long)

    from .distributed import current, shard, sum_gradients, sum_value

    world = current()  # several processes: each takes a share of every batch, gradients summed (distributed.py)
    if world.size > 1 and plan.min_batch > 1:
        raise RunError(f"loss '{run.components['loss'].name}' compares samples within a batch: it cannot be "
                       "split over processes (--processes 1)")
    suspects = [Suspect.of(run.components["model"], model), Suspect.of(run.components["loss"], loss_fn)]
    loss_what, model_name = suspects[1].what, run.components["model"].name
    while state.epoch < settings["epochs"] and state.bad_epochs < settings["patience"]:
        epoch = state.epoch + 1
        started = time.perf_counter()
        with guard(f"train step (epoch {epoch}, start)", *suspects):
            model.train()
            if plan.module is not None:
                plan.module.train()  # stateful losses (CSL, AHL) act only in training mode
            if plan.epoch_hook is not None:
                plan.epoch_hook.on_epoch_start(epoch - 1)  # 0-based: deferred re-weighting, per-epoch resets
            order = epoch_order(run.seed, epoch, len(samples), plan.sampler, labels_all, device)
        total, batches = 0.0, 0
        bar = run.progress(total=len(samples), desc=f"epoch {epoch}", unit="sample")
        for start in range(0, len(samples), settings["batch_size"]):
            chunk = [samples[i] for i in order[start:start + settings["batch_size"]].tolist()]
            if len(chunk) < plan.min_batch:
                continue  # batch_min_2: e.g. DR-Loss ranks positives against the batch's negatives
            step = f"train step (epoch {epoch}, step {state.steps})"
            with guard(step, *suspects):
                local = shard(chunk, world) if world.size > 1 else chunk
                optimizer.zero_grad(set_to_none=True)
                value = 0.0
                if local:
                    batch = model.make_batch(run.train_split, local)
                    labels = torch.tensor([s.label for s in local], dtype=torch.long, device=device)
                    with torch.autocast(device_type="cuda", dtype=dtype, enabled=autocast):
                        loss = model.training_loss(batch, labels, loss_fn) * (len(local) / len(chunk))
                    value = float(loss.detach())  # the step's one host synchronisation
                    loss.backward()
                if world.size > 1:
                    value = sum_value(value, device)
                    sum_gradients(list(model.parameters()))
                if not math.isfinite(value):
                    raise PluginFailure(loss_what, step, non_finite_loss(value, f"(model '{model_name}')"))
                if settings["grad_clip"]:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), settings["grad_clip"])
                optimizer.step()
                scheduler.step()
            total += value
            batches += 1
            state.steps += 1
            bar.update(len(chunk))
        bar.close()
        state.seconds += time.perf_counter() - started
        state.samples_seen += len(samples)
        valid = run.validate()
        value = valid.get(select)
        if value is None:
            raise KeyError(f"selection metric '{select}' is not produced by the configured metrics")
        improved = close_epoch(state, epoch, value, settings["patience"], settings["epochs"], lambda: save_checkpoint(
            best_path, {"model": model.state_dict(), "epoch": epoch, "identity": checkpoint_identity(run)}))
        summary = {"epoch": epoch, "train_loss": total / max(1, batches), f"valid_{select}": value,
                   "improved": improved}
        state.history.append(summary)
        save_training(checkpoint_path, run, model.state_dict(), optimizer, scheduler, state, plan.module)
        run.log(f"epoch {epoch}: loss {summary['train_loss']:.4f}, valid {select} {value:.4f}"
                + (" *" if improved else ""))
        run.epoch_end(epoch, {**summary, "valid": valid})
    load_best(best_path, run, model.load_state_dict)
    return state


def remove_checkpoints(run_dir: Path) -> None:
    for name in (CHECKPOINT, BEST_CHECKPOINT):
        (run_dir / name).unlink(missing_ok=True)
