"""GCRS training as the plugin's ``crs_bench_train`` (SYSTEMS.md §11.2): next-token CE on the assistant side of
every training recommender turn, one instance per mentioned item (each placing a different item right after
<MODE=REC>), a CHAT instance for turns without items; AdamW on the LoRA weights and the new vocabulary rows,
linear warm-up and decay, gradient clipping. The epoch kept is the one with the lowest valid loss on a fixed
valid subset. A finished run's trainable state is checkpointed, so ``--resume`` skips training.
"""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from harness.data import Split
from harness.seeding import capture_rng_state, restore_rng_state
from harness.training import (check_identity, checkpoint_identity, load_checkpoint, optimisation_step,
                              save_checkpoint)
from plugins.generators.lm import length_batches
from plugins.unicrs.model import torch_threads

CHECKPOINT = "checkpoint-gcrs.pt"  # training finished: the selected adapter and the summary
EPOCH_CHECKPOINT = "checkpoint-gcrs-epoch.pt"  # after every epoch: what `--resume` continues from


@dataclass(frozen=True)
class Instance:
    uid: str
    prompt: list[int]
    target: list[int]
    mode_rec: bool


def instances(model: Any, split: Split) -> list[Instance]:
    """One instance per (recommender turn with text, mentioned item); one CHAT instance per turn without."""
    out = []
    for sample in split.conv_samples:
        turn = split.dialogues[sample.dialogue_index].turns[sample.turn]
        if not turn.text.strip():
            continue
        prompt = model.serializer.prompt(split.context(sample))
        items = list(dict.fromkeys(turn.items)) or [None]
        out += [Instance(f"{sample.uid}/{j}", prompt, model.serializer.target(turn, item), item is not None)
                for j, item in enumerate(items)]
    return out


def capped(units: list[Instance], limit: int | None, salt: str) -> list[Instance]:
    """The first `limit` instances by SHA-256 of ``gcrs-<salt>:<uid>``, in their original order."""
    if limit is None or limit >= len(units):
        return units
    order = sorted(range(len(units)), key=lambda i: hashlib.sha256(f"gcrs-{salt}:{units[i].uid}".encode()).digest())
    return [units[i] for i in sorted(order[:limit])]


def mean_loss(model: Any, units: Sequence[Instance], batch_size: int) -> float:
    """Token-weighted mean target CE (no gradients)."""
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for batch in length_batches([len(u.prompt) + len(u.target) for u in units], batch_size):
            chosen = [units[i] for i in batch]
            tokens = sum(len(u.target) for u in chosen)
            total += float(model.lm_loss([u.prompt for u in chosen], [u.target for u in chosen])) * tokens
            count += tokens
    return total / max(1, count)


def train(run: Any) -> dict[str, Any]:
    """GCRS's own training stage, on one process: its loss is a mean over target tokens and LoRA dropout is
    drawn per process, so several ranks would not train the one-process model (refused, not replicated)."""
    if run.world.size > 1:
        raise ValueError("model 'gcrs' trains on one process: run it with --processes 1")
    model, s = run.model, run.model.settings
    epochs = min(s["epochs"], run.config["train"]["epochs"])
    if epochs == 0:
        return {"trained": False, "selection": "none (epochs is 0)"}
    path = Path(run.run_dir) / CHECKPOINT
    if run.resume and path.is_file():
        saved = load_checkpoint(path)
        check_identity(path, saved, run)
        model.load_trainable_state(saved["model"])
        model.training_log = saved["summary"]
        run.log(f"gcrs: training finished earlier, skipped ({path})")
        return saved["summary"]
    with torch_threads(s["threads"]):
        summary = _train(run, model, s, epochs, Path(run.run_dir) / EPOCH_CHECKPOINT)
    model.training_log = summary
    save_checkpoint(path, {"model": model.trainable_state(), "summary": summary,
                           "identity": checkpoint_identity(run)})
    return summary


def _train(run: Any, model: Any, s: dict[str, Any], epochs: int, epoch_path: Path) -> dict[str, Any]:
    """The LoRA epochs; after each, everything the next one needs (adapter, optimizer, schedule, best epoch,
    history, RNG) is saved to `epoch_path`, so `--resume` continues an interrupted run as if it had not
    stopped (same steps, same losses, same selected epoch)."""
    started = time.perf_counter()
    available = instances(model, run.train_split)
    units = capped(available, s["max_train_instances"], "train")
    valid = capped(instances(model, run.dataset.splits["valid"]), s["valid_instances"], "valid")
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=s["lr"], weight_decay=s["weight_decay"])
    total_steps = max(1, math.ceil(len(units) / s["batch_size"])) * epochs
    warmup = s["warmup"]
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: (step + 1) / warmup if step < warmup
                                                  else max(0.0, (total_steps - step) / max(1, total_steps - warmup)))
    lengths = [len(u.prompt) + len(u.target) for u in units]
    best, best_epoch, best_state, history, steps, train_seconds = math.inf, 0, None, [], 0, 0.0
    clip = run.config["train"]["grad_clip"]
    done = 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(run.seed)  # LoRA dropout
        if run.resume and epoch_path.is_file():
            saved = load_checkpoint(epoch_path)
            check_identity(epoch_path, saved, run)
            model.load_trainable_state(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            restore_rng_state(saved["rng"])
            done, steps, train_seconds, history = saved["epoch"], saved["steps"], saved["train_seconds"], saved["history"]
            best, best_epoch, best_state = saved["best"], saved["best_epoch"], saved["best_state"]
            run.log(f"gcrs: resumed after epoch {done} ({epoch_path})")
        for epoch in range(done + 1, epochs + 1):
            model.train()
            timer, losses = time.perf_counter(), []
            order = np.random.default_rng([run.seed, epoch]).permutation(len(units))
            bar = run.progress(total=len(units), desc=f"gcrs {epoch}", unit="instance")
            for batch in length_batches(lengths, s["batch_size"], order):
                chosen = [units[i] for i in batch]
                loss = model.lm_loss([u.prompt for u in chosen], [u.target for u in chosen])
                losses.append(optimisation_step(loss, optimizer, scheduler, parameters, clip,
                                                f"gcrs epoch {epoch}, step {steps}"))
                steps += 1
                bar.update(len(chosen))
            bar.close()
            seconds = time.perf_counter() - timer
            train_seconds += seconds
            value = mean_loss(model, valid, s["batch_size"] * 2)
            improved = value < best
            if improved:
                best, best_epoch, best_state = value, epoch, model.trainable_state()
            history.append({"epoch": epoch, "train_loss": float(np.mean(losses)) if losses else None,
                            "first_step_loss": losses[0] if losses else None, "last_step_loss": losses[-1] if losses
                            else None, "valid_loss": value, "train_seconds": round(seconds, 2), "improved": improved})
            run.log(f"gcrs epoch {epoch}: loss {history[-1]['train_loss']:.4f}, valid loss {value:.4f}")
            save_checkpoint(epoch_path, {"model": model.trainable_state(), "optimizer": optimizer.state_dict(),
                                         "scheduler": scheduler.state_dict(), "rng": capture_rng_state(),
                                         "epoch": epoch, "steps": steps, "train_seconds": train_seconds,
                                         "history": history, "best": best, "best_epoch": best_epoch,
                                         "best_state": best_state, "identity": checkpoint_identity(run)})
            run.epoch_end(epoch, history[-1])
    if best_state is not None:
        model.load_trainable_state(best_state)
    model.eval()
    return {"trained": True, "epochs_run": epochs, "best_epoch": best_epoch, "selection_metric": "valid LM loss",
            "best_valid_value": best, "stopped_early": False, "steps": steps, "instances": len(units),
            "instances_available": len(available), "rec_instances": sum(u.mode_rec for u in units),
            "valid_instances": len(valid), "train_samples": len(run.train_samples),
            "subset": "all" if len(units) == len(available) else
            f"first {len(units)} by SHA-256('gcrs-train:' + instance id)",
            "optimizer": "AdamW", "lr": s["lr"], "warmup_steps": s["warmup"], "batch_size": s["batch_size"],
            "schedule": "linear warm-up, linear decay", "seconds": round(time.perf_counter() - started, 2),
            "seconds_per_step": round(train_seconds / max(1, steps), 3), "history": history}
