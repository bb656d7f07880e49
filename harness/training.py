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


def _save(path: Path, payload: dict[str, Any]) -> None:
    import torch

    from .run_directory import checkpoint_failure

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    try:
        write_atomic(path, buffer.getvalue())
    except OSError as error:  # a full disk is the harness's write failing, not the model's fault
        raise RunError(checkpoint_failure(error, path)) from None


def _load(path: Path) -> dict[str, Any]:
    """Tensors, numbers, strings and containers only (``weights_only=True``): a planted checkpoint cannot run
    code; it is refused with its path."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: not a safe checkpoint ({first}); delete it to train from scratch") from None


def _identity(run: Any) -> dict[str, str]:
    """What a checkpoint belongs to: the same config (hash) on the same data (fingerprint)."""
    return {"config_hash": run.config_hash, "dataset_fingerprint": run.dataset.fingerprint}


def _check_identity(path: Path, saved: dict[str, Any], run: Any) -> None:
    stored, current = saved.get("identity") or {}, _identity(run)
    for key, what in (("dataset_fingerprint", "dataset fingerprint"), ("config_hash", "config hash")):
        if stored.get(key) != current[key]:
            raise CheckpointError(
                f"{path}: written for {what} {str(stored.get(key))[:12]}, this run has {current[key][:12]} (the "
                f"{'data' if key == 'dataset_fingerprint' else 'settings'} changed): rerun without --resume to "
                "train from scratch")


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
        saved = _load(checkpoint_path)
        _check_identity(checkpoint_path, saved, run)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        if saved.get("loss") is not None and plan.module is not None:
            plan.module.load_state_dict(saved["loss"])  # stateful losses (CSL histograms) continue too
        state = TrainingState(**saved["state"])
        restore_rng_state(saved["rng"])
        run.log(f"resumed from epoch {state.epoch} ({checkpoint_path})")
    autocast = settings["precision"] != "fp32" and device.startswith("cuda")
    dtype = torch.bfloat16 if settings["precision"] == "bf16" else torch.float16
    select = settings["select_metric"]
    loss_fn = plan.loss
    labels_all = torch.tensor([s.label for s in samples], dtype=torch.long)

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
            generator = torch.Generator().manual_seed(run.seed * 100_003 + epoch)
            if plan.sampler is not None:
                weights = plan.sampler.sample_weights(labels_all.to(device)).detach().float().cpu()
                order = torch.multinomial(weights, len(samples), replacement=True, generator=generator)
            else:
                order = torch.randperm(len(samples), generator=generator)
        total, batches = 0.0, 0
        bar = run.progress(total=len(samples), desc=f"epoch {epoch}", unit="sample")
        for start in range(0, len(samples), settings["batch_size"]):
            chunk = [samples[i] for i in order[start:start + settings["batch_size"]].tolist()]
            if len(chunk) < plan.min_batch:
                continue  # batch_min_2: e.g. DR-Loss ranks positives against the batch's negatives
            step = f"train step (epoch {epoch}, step {state.steps})"
            with guard(step, *suspects):
                batch = model.make_batch(run.train_split, chunk)
                labels = torch.tensor([s.label for s in chunk], dtype=torch.long, device=device)
                with torch.autocast(device_type="cuda", dtype=dtype, enabled=autocast):
                    loss = model.training_loss(batch, labels, loss_fn)
                value = float(loss.detach())  # the step's one host synchronisation
                if not math.isfinite(value):
                    raise PluginFailure(loss_what, step, f"non-finite training loss {value} (model '{model_name}'); "
                                        "lower train.lr or check the loss for log(0) or division by zero")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
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
        improved = value > state.best_value
        if improved:
            state.best_value, state.best_epoch, state.bad_epochs = value, epoch, 0
            _save(best_path, {"model": model.state_dict(), "epoch": epoch, "identity": _identity(run)})
        else:
            state.bad_epochs += 1
        state.epoch = epoch
        summary = {"epoch": epoch, "train_loss": total / max(1, batches), f"valid_{select}": value,
                   "improved": improved}
        state.history.append(summary)
        state.stopped_early = state.bad_epochs >= settings["patience"] and epoch < settings["epochs"]
        _save(checkpoint_path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                "scheduler": scheduler.state_dict(), "state": state.__dict__,
                                "loss": plan.module.state_dict() if plan.module is not None else None,
                                "rng": capture_rng_state(), "identity": _identity(run)})
        run.log(f"epoch {epoch}: loss {summary['train_loss']:.4f}, valid {select} {value:.4f}"
                + (" *" if improved else ""))
        run.epoch_end(epoch, {**summary, "valid": valid})
    if best_path.is_file():
        best = _load(best_path)
        _check_identity(best_path, best, run)
        model.load_state_dict(best["model"])
    return state


def remove_checkpoints(run_dir: Path) -> None:
    for name in (CHECKPOINT, BEST_CHECKPOINT):
        (run_dir / name).unlink(missing_ok=True)
