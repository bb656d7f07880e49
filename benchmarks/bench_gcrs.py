"""GCRS ranking cost: constrained beam search (width 50, one prefill shared by the beams) against exact
full-catalogue scoring (one prefill, then one single-token forward per valid SID prefix of levels 0..L-2) per
context, and the share of the exact top-50 items that the beam's list recovers (beam error).

    PYTHONPATH=. python benchmarks/bench_gcrs.py --preset test-tiny            # synthetic, tiny random LM
    PYTHONPATH=. python benchmarks/bench_gcrs.py --preset cpu --dataset inspired --data-dir DIR --contexts 3

Both methods score the same contexts of the test split (the first N distinct recommendation contexts) with the
same weights (untrained LoRA: the cost does not depend on training; the recovered share of a trained model is
in its run record's lists). Times are medians over contexts, after one warm-up context; one torch thread by
default (see docs/gcrs.md for the measured figures).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch


def build(preset: str, dataset_name: str, data_dir: Path | None, cache_dir: Path, **overrides: Any) -> Any:
    from harness.api import RunContext
    from harness.loading import load
    from harness.plugin_manager import load_plugins
    from harness.popularity import compute_statistics
    from plugins.gcrs.model import GCRS

    plugins = load_plugins(autoload=False)
    params = {"num_items": 300, "train_dialogues": 100, "valid_dialogues": 20, "test_dialogues": 20} \
        if dataset_name == "synthetic" else {}
    dataset = load(plugins.registries.datasets.get(dataset_name), params, data_dir, cache_dir, None)
    train = dataset.splits["train"]
    ctx = RunContext(dataset, compute_statistics(dataset.num_items, train.dialogues, train.rec_samples), "cpu", 0,
                     cache_dir, {"loss": {"name": "ce"}})
    return GCRS(ctx, preset=preset, **overrides), dataset


def measure(model: Any, split: Any, contexts: int, width: int) -> dict[str, Any]:
    from harness.api import context_representatives
    from plugins.gcrs.decoding import beam_scores, exact_scores, prefill

    samples, _ = context_representatives(split.rec_samples)
    samples = samples[:contexts + 1]
    s, times = model.settings, {"beam": [], "exact": []}
    recovered = []
    model.eval()
    with torch.no_grad():
        for position, sample in enumerate(samples):
            prompt = model.make_batch(split, [sample])["prompts"]
            results = {}
            for method in (("beam",) if position == 0 else ("beam", "exact")):  # warm-up: one beam
                started = time.perf_counter()
                ids, mask, _, cache = prefill(model.lm, prompt, model.pad_id, model.device)
                if method == "beam":
                    results[method] = beam_scores(model.lm, model.trie, ids, mask, cache, width, s["trie_renorm"],
                                                  model.pad_id, model.num_items)[0]
                else:
                    results[method] = exact_scores(model.lm, model.trie, ids, mask, cache, s["trie_renorm"],
                                                   s["exact_rows"])[0]
                if position:  # the first context warms up
                    times[method].append(time.perf_counter() - started)
            if position:
                k = min(50, model.num_items)
                exact_top = set(results["exact"].topk(k).indices.tolist())
                beam_top = set(int(i) for i in results["beam"].topk(k).indices[torch.isfinite(
                    results["beam"].topk(k).values)].tolist())
                recovered.append(len(exact_top & beam_top) / k)
    return {"contexts": len(times["beam"]), "beam_width": width,
            "beam_seconds_per_context": statistics.median(times["beam"]),
            "exact_seconds_per_context": statistics.median(times["exact"]),
            "exact_over_beam": statistics.median(times["exact"]) / statistics.median(times["beam"]),
            "exact_top50_recovered_by_beam": statistics.mean(recovered),
            "prefixes_per_level": model.trie.counts(),
            "exact_single_token_rows": sum(model.trie.counts()[:-1])}  # + one prefill and one 2-token forward


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="test-tiny", choices=("test-tiny", "cpu", "paper"))
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--contexts", type=int, default=5)
    parser.add_argument("--width", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--layers", type=int, default=None, help="backbone layers kept (default: the preset's)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as temporary:
        cache = args.cache_dir or Path(temporary)
        started = time.perf_counter()
        overrides = {"decoder_layers": args.layers} if args.layers else {}
        model, dataset = build(args.preset, args.dataset, args.data_dir, cache, threads=args.threads, **overrides)
        built = time.perf_counter() - started
        result = {"preset": args.preset, "dataset": args.dataset, "items": dataset.num_items,
                  "backbone": model.source, "layers_used": model.settings["decoder_layers"] or model.layers_total,
                  "threads": args.threads, "build_seconds": round(built, 1),
                  **measure(model, dataset.splits["test"], args.contexts, args.width)}
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
