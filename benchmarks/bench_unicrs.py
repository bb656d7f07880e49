"""UniCRS `cpu` preset: training steps/s and peak RSS of one recommendation step (batch 8 x 128 tokens), against
the same step with the decoder's prefix path disabled, measured in the same run; optionally (--estimate) the
time of a full `bench run --model unicrs` on INSPIRED, extrapolated from a few timed steps of every stage.

    PYTHONPATH=. python benchmarks/bench_unicrs.py [--dataset inspired] [--batch 8] [--tokens 128]
        [--layers N] [--repeats 5] [--threads N] [--estimate] [--conv-limit 200]

Full step: R-GCN over the whole KG + KGPrompt (token/entity MLPs, fusion, task prefix, deep-prompt projection)
+ the frozen decoder under the per-layer prefixes, forward and backward, CE over all entities, AdamW step.
Reference ("prefix path disabled"): the same frozen decoder on the same tokens, forward and backward down to its
input embeddings (the gradient path a prefix needs), a fixed entity table as head, no KGPrompt: the cost any
prompt method pays. Target: full <= 1.5x reference. Steps alternate (round robin), so load from other processes
hits both alike; medians are reported. Peak RSS is the process's high-water mark after each variant's first
step (the reference runs first). Measured figures, and why the preset has 4 decoder layers and one thread:
docs/unicrs.md.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

TARGET_RATIO = 1.5


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def build(dataset_name: str, cache_dir: Path, data_dir: Path | None, **overrides: Any) -> tuple[Any, Any]:
    from harness.api import RunContext
    from harness.loading import load
    from harness.plugin_manager import load_plugins
    from harness.popularity import compute_statistics
    from plugins.unicrs.model import UniCRS

    plugins = load_plugins(autoload=False)
    dataset = load(plugins.registries.datasets.get(dataset_name), {}, data_dir, cache_dir, None)
    train = dataset.splits["train"]
    ctx = RunContext(dataset, compute_statistics(dataset.num_items, train.dialogues, train.rec_samples), "cpu", 0,
                     cache_dir, {"loss": {"name": "ce"}})
    torch.manual_seed(0)
    return UniCRS(ctx, preset="cpu", **overrides), dataset


def long_samples(split: Any, count: int) -> list[Any]:
    """The `count` recommendation samples with the longest contexts (so every row fills the token budget)."""
    return sorted(split.rec_samples, key=lambda s: -sum(len(t.text) for t in split.context(s)))[:count]


def step_functions(model: Any, batch: dict[str, Any], labels: torch.Tensor) -> dict[str, Callable[[], float]]:
    from plugins.unicrs.decoding import last_positions

    params = model.stage_parameters("rec")
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    decoder = model.decoder
    with torch.no_grad():  # E for every entity, fixed: the reference head
        fixed = model.prompts["rec"].project(model.entity_vectors("rec")[:-1]).detach().clone()
    table = torch.nn.Parameter(fixed)
    reference_optimizer = torch.optim.AdamW([table], lr=1e-4)
    targets = model.item_entities[labels]

    def full() -> float:
        start = time.perf_counter()
        loss = model.training_loss(batch, labels, None)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    def reference() -> float:
        start = time.perf_counter()
        embeds = decoder.get_input_embeddings()(batch["dec_ids"]).detach().requires_grad_(True)
        out = decoder.base_model(inputs_embeds=embeds, attention_mask=batch["dec_mask"].long(), use_cache=False)
        hidden = out.last_hidden_state
        u = hidden[torch.arange(hidden.shape[0]), last_positions(batch["dec_mask"])]
        loss = torch.nn.functional.cross_entropy(u @ table.T, targets)
        reference_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        reference_optimizer.step()
        return time.perf_counter() - start

    def prompt_only() -> float:  # the KGPrompt part of `full`, without the decoder
        start = time.perf_counter()
        entities = model.entity_vectors("rec")
        prompt = model.prompt("rec", batch, entities)
        sum(k.sum() + v.sum() for k, v in prompt.layers).backward()
        return time.perf_counter() - start

    return {"reference": reference, "full": full, "kgprompt": prompt_only}


def benchmark(args: argparse.Namespace) -> None:
    cache = Path(args.cache_dir)
    overrides = {"max_encoder_tokens": args.tokens, "max_context_tokens": args.tokens, "threads": args.threads}
    if args.layers:
        overrides["decoder_layers"] = args.layers
    started = time.perf_counter()
    model, dataset = build(args.dataset, cache, args.data_dir, **overrides)
    model.train()
    split = dataset.splits["train"]
    samples = long_samples(split, args.batch)
    batch = model.make_batch(split, samples)
    labels = torch.tensor([s.label for s in samples])
    g = model.geometry
    print(f"dataset={dataset.name} entities={model.pad_entity} batch={args.batch} "
          f"tokens={tuple(batch['dec_ids'].shape)} "
          f"encoder states={tuple(batch['states'].shape)} decoder layers {g.layers}/{model.decoder_layers_total} "
          f"(kv heads {g.kv_heads} x {g.head_dim}) prefix {model.settings['n_prefix_rec']} + "
          f"{batch['entities'].shape[1]} entities; threads={torch.get_num_threads()} load {os.getloadavg()[0]:.1f}; "
          f"built in {time.perf_counter() - started:.0f} s, RSS {peak_rss_mb():.0f} MB")
    steps = step_functions(model, batch, labels)
    rss = {}
    for name in ("reference", "full", "kgprompt"):
        steps[name]()  # warm-up
        rss[name] = peak_rss_mb()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():
            times[name].append(step())
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name in ("reference", "full", "kgprompt"):
        print(f"{name:10s} {medians[name]:7.3f} s/step  {1 / medians[name]:6.3f} steps/s  peak RSS {rss[name]:7.0f} MB"
              f"  (all: {', '.join(f'{t:.2f}' for t in times[name])})")
    ratio = medians["full"] / medians["reference"]
    print(f"full / reference = {ratio:.2f}x (target <= {TARGET_RATIO}x): {'OK' if ratio <= TARGET_RATIO else 'SLOW'}")


def _median_time(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up
    values = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        values.append(time.perf_counter() - start)
    return statistics.median(values)


def _stage_step(model: Any, stage: str, chunk: list[Any], train: bool) -> Callable[[], None]:
    """One optimisation step (or, with `train=False`, one no-grad evaluation) of a stage on `chunk`."""
    optimizer = torch.optim.AdamW(model.stage_parameters(stage), lr=1e-6)
    turns, entities = [u.turns for u in chunk], [u.entities for u in chunk]
    targets = torch.tensor([u.target for u in chunk])

    def loss() -> torch.Tensor:
        if stage == "pretrain":
            return torch.nn.functional.cross_entropy(model.pretrain_logits(model.batch(turns, entities)), targets)
        if stage == "conv":
            return model.conv_loss(model.batch(turns, entities, [u.response for u in chunk]))
        if train:
            return model.training_loss(model.batch(turns, entities), targets, None)
        return model.scores(model.batch(turns, entities)).sum()

    def run() -> None:
        if not train:
            model.eval()
            with torch.no_grad():
                loss()
            return
        model.train()
        value = loss()
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()

    return run


def estimate(args: argparse.Namespace) -> None:
    """Per-stage timing of the cpu preset on the dataset, extrapolated to one full `bench run`: encoding of every
    distinct context (cold cache), each stage's training steps and validation passes, the test ranking, and the
    conversation task (ranking and greedy generation of `--conv-limit` responses)."""
    from harness.conversation import choose_subset, contexts_only
    from plugins.unicrs import stages
    from plugins.unicrs.states import text_hash
    from plugins.unicrs.text import encoder_text

    overrides = {"decoder_layers": args.layers, "threads": args.threads}
    model, dataset = build(args.dataset, Path(args.cache_dir), args.data_dir, **overrides)
    with tempfile.TemporaryDirectory() as scratch:  # an empty token-state store: a first run encodes everything
        model.states.store.directory, model.states.store.states = Path(scratch), {}
        s = model.settings
        train, valid, test = (dataset.splits[name] for name in ("train", "valid", "test"))
        items = model.item_entities.tolist()
        units = {"pretrain": stages.capped(stages.pretrain_units(train, items), s["pretrain_max_samples"], "pretrain"),
                 "conv": stages.capped(stages.conv_units(train), s["conv_max_samples"], "conv"),
                 "rec": stages.capped(stages.rec_units(train, train.rec_samples), s["rec_max_samples"], "rec")}
        checks = {"pretrain": stages.capped(stages.pretrain_units(valid, items), s["pretrain_valid_samples"],
                                            "pretrain-valid"),
                  "conv": stages.capped(stages.conv_units(valid), s["conv_valid_samples"], "conv-valid"),
                  "rec": stages.rec_units(valid, valid.rec_samples)}
        conv_split, conv_samples = contexts_only(test, choose_subset(test.conv_samples, args.conv_limit))
        contexts = [u.turns for group in (*units.values(), *checks.values()) for u in group]
        contexts += [test.context(x) for x in test.rec_samples] + [conv_split.context(x) for x in conv_samples]
        distinct = list({text_hash(encoder_text(t, model.separator)): t for t in contexts}.values())
        started = time.perf_counter()
        model.ensure_texts(distinct[:64])
        encode_rate = 64 / (time.perf_counter() - started)
        encoding = len(distinct) / encode_rate
        print(f"threads={torch.get_num_threads()} load {os.getloadavg()[0]:.1f}; decoder layers "
              f"{model.geometry.layers}/{model.decoder_layers_total}; encoder {encode_rate:.1f} contexts/s, "
              f"{len(distinct)} distinct contexts: {encoding / 60:.1f} min on a cold cache")
        model.ensure_texts(distinct)
        size, total, rows = s["score_batch_size"], encoding, []
        for stage in stages.STAGE_NAMES:
            batch = s[f"{stage}_batch_size"]
            step = _median_time(_stage_step(model, stage, units[stage][:batch], train=True), args.repeats)
            check = _median_time(_stage_step(model, stage, checks[stage][:size], train=False), 1)
            epochs = s[f"{stage}_epochs"]
            steps = -(-len(units[stage]) // batch) * epochs
            passes = epochs * len(checks[stage]) / size
            if stage == "rec":  # the test stage: validate() once more, then the test split
                passes += (len(valid.rec_samples) + len(test.rec_samples)) / size
            seconds = steps * step + passes * check
            total += seconds
            rows.append((stage, len(units[stage]), steps, step, check, seconds))
        rank = _median_time(_stage_step(model, "rec", checks["rec"][:size], train=False), 1) * len(conv_samples) / size
        chunk = conv_samples[:s["generate_batch_size"]]
        generation = _median_time(lambda: model.generate(conv_split, chunk, None), 1) * len(conv_samples) / len(chunk)
        total += rank + generation
    print(f"{'stage':9s} {'units':>6s} {'steps':>6s} {'s/step':>7s} {'s/eval':>7s} {'minutes':>8s}")
    for stage, n_units, steps, step, check, seconds in rows:
        print(f"{stage:9s} {n_units:6d} {steps:6d} {step:7.2f} {check:7.2f} {seconds / 60:8.1f}")
    print(f"conv task: rank {len(conv_samples)} contexts {rank / 60:.1f} min, generate {generation / 60:.1f} min "
          f"({s['max_new_tokens']} new tokens, batches of {s['generate_batch_size']})")
    print(f"estimated full run: {total / 60:.1f} min (cold token-state cache), "
          f"{(total - encoding) / 60:.1f} min (warm)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="inspired")
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("CRS_BENCH_DATA"))
    parser.add_argument("--cache-dir", default=".cache")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--layers", type=int, default=None, help="decoder layers (default: the cpu preset's)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--estimate", action="store_true", help="extrapolate a full run from timed stage steps")
    parser.add_argument("--conv-limit", type=int, default=200)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the preset's)")
    args = parser.parse_args()
    from plugins.unicrs.presets import PRESETS

    args.threads = args.threads or PRESETS["cpu"]["threads"]
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.data_dir is None and args.dataset != "synthetic":
        sys.exit("set CRS_BENCH_DATA or --data-dir (or use --dataset synthetic)")
    (estimate if args.estimate else benchmark)(args)


if __name__ == "__main__":
    main()
