"""GPU figures for benchmarks/gpu_check.sh, with randomly initialised models of real size (no weights are
downloaded or read: a GPU machine may reach nothing).

* `hybrid` training steps/s, fp32 vs bf16 autocast: the real model code (`plugins.models.hybrid.Hybrid`,
  dim 128, R-GCN over the KG) on a synthetic dataset with ReDial's catalogue size (6,924 items), its text
  encoder a random BERT of all-MiniLM-L6-v2's shape (6 layers, 384 wide) written to a scratch directory;
  batches of 64 are built once (the frozen encoder's vectors, as the disk cache gives them), then timed;
* the `lm` decoder path (`plugins.generators.lm.LMGenerator.nll`: LoRA on q/v, left-padded prompts,
  logits only for the target) on a random SmolLM2-135M-shaped llama (30 layers, 576 wide, vocabulary
  49,152), batches of 8 x (96 prompt + 48 target) tokens, fp32 vs bf16 autocast;
* scoring + top-50 (`harness.ranking.top_items`, `standard` and `novel`) of a ReDial-size batch (256
  contexts x 6,924 items) by the same hybrid, on the GPU vs the CPU.

Prints one line per figure and the ratios. Usage: python benchmarks/bench_gpu.py [--steps 30]
"""
from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REDIAL_ITEMS = 6924
MINILM = {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536,
          "max_position_embeddings": 512, "vocab_size": 30522}
SMOLLM2_135M = {"model_type": "llama", "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
                "num_attention_heads": 9, "num_key_value_heads": 3, "max_position_embeddings": 2048,
                "tie_word_embeddings": True, "rms_norm_eps": 1e-5, "vocab_size": 49152}


def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def rate(step: Callable[[], Any], steps: int, device: str, warmup: int = 2) -> float:
    """Steps per second after `warmup` untimed steps (kernels chosen, caches filled)."""
    for _ in range(warmup):
        step()
    synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return steps / (time.perf_counter() - started)


def random_encoder(directory: Path, words: set[str]) -> Path:
    """A random BERT of MiniLM's shape and a WordPiece vocabulary of the corpus' words, saved for `TextEncoder`."""
    from transformers import BertConfig, BertModel, BertTokenizerFast
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    directory.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(words)
    vocab += [f"[unused{i}]" for i in range(MINILM["vocab_size"] - len(vocab))]
    (directory / "vocab.txt").write_text("\n".join(vocab[:MINILM["vocab_size"]]) + "\n")
    BertTokenizerFast(vocab_file=str(directory / "vocab.txt"), do_lower_case=True).save_pretrained(directory)
    BertModel(BertConfig(**MINILM)).save_pretrained(directory)
    return directory


@functools.lru_cache(maxsize=1)
def redial_sized() -> tuple[Any, Any, frozenset[str]]:
    """A synthetic dataset with ReDial's catalogue size, its training statistics and its words (built once)."""
    import re

    from harness.popularity import compute_statistics
    from plugins.synthetic import build_synthetic

    dataset = build_synthetic(num_items=REDIAL_ITEMS, train_dialogues=1200, valid_dialogues=50, test_dialogues=300)
    train = dataset.splits["train"]
    stats = compute_statistics(dataset.num_items, train.dialogues, train.rec_samples)
    words = frozenset(w for split in dataset.splits.values() for d in split.dialogues for t in d.turns
                      for w in re.findall(r"[a-z]+", t.text.lower()))
    return dataset, stats, words


def hybrid_context(device: str, scratch: Path) -> tuple[Any, Any, Path]:
    from harness.api import RunContext

    dataset, stats, words = redial_sized()
    encoder = scratch / "encoder"
    if not encoder.is_dir():
        random_encoder(encoder, set(words))
    return dataset, RunContext(dataset, stats, device, 0, scratch / "cache", {}), encoder


def hybrid_model(ctx: Any, encoder: Path) -> Any:
    from plugins.models.hybrid import Hybrid

    return Hybrid(ctx, dim=128, text_encoder=str(encoder), max_tokens=256, kg_layers=1, num_bases=8).to(ctx.device)


def hybrid_steps(device: str, scratch: Path, steps: int) -> dict[str, float]:
    import torch

    dataset, ctx, encoder = hybrid_context(device, scratch)
    model = hybrid_model(ctx, encoder)
    split = dataset.splits["train"]
    samples = split.rec_samples
    batches = [model.make_batch(split, samples[i:i + 64]) for i in range(0, 64 * 8, 64)]
    labels = [torch.tensor([s.label for s in samples[i:i + 64]], device=device) for i in range(0, 64 * 8, 64)]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    cuda = device.startswith("cuda")
    cross_entropy = torch.nn.CrossEntropyLoss()
    figures = {}
    for precision in ("fp32", "bf16"):
        position = [0]

        def step() -> None:
            i = position[0] % len(batches)
            position[0] += 1
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=precision == "bf16" and cuda):
                loss = model.training_loss(batches[i], labels[i], cross_entropy)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        model.train()
        figures[precision] = rate(step, steps, device)
    return figures


def scoring(device: str, scratch: Path, repeats: int) -> float:
    """Batches of 256 ReDial-size contexts scored and ranked (standard + novel top-50) per second."""
    import torch

    from harness.ranking import context_item_mask, context_representatives, top_items

    dataset, ctx, encoder = hybrid_context(device, scratch)
    model = hybrid_model(ctx, encoder)
    model.eval()
    split = dataset.splits["test"]
    contexts, _ = context_representatives(split.rec_samples)
    batch = model.make_batch(split, contexts[:256])
    mask = context_item_mask(contexts[:256], (len(contexts[:256]), dataset.num_items), device)

    def step() -> None:
        with torch.no_grad():
            scores = model.scores(batch).float()
            top_items(scores, 50)
            top_items(scores, 50, mask)

    return rate(step, repeats, device, warmup=2)


def lm_steps(device: str, steps: int) -> dict[str, float]:
    import torch
    import transformers

    from harness.api import RunContext
    from plugins.generators.lm import LMGenerator
    from plugins.synthetic import build_synthetic

    class Tokenizer:  # the decoder path needs token ids only: no vocabulary files on a bare machine
        eos_token_id, pad_token_id = 2, None

        def __len__(self) -> int:
            return SMOLLM2_135M["vocab_size"]

    dataset = build_synthetic(num_items=60, train_dialogues=4, valid_dialogues=2, test_dialogues=2)
    generator = LMGenerator(RunContext(dataset, None, device, 0, Path(tempfile.gettempdir()), {}), model="random",
                            config=dict(SMOLLM2_135M))
    original = transformers.AutoTokenizer.from_pretrained
    transformers.AutoTokenizer.from_pretrained = staticmethod(lambda *a, **k: Tokenizer())
    try:
        generator.load()
    finally:
        transformers.AutoTokenizer.from_pretrained = original
    rng = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, 49152, (96,), generator=rng).tolist() for _ in range(8)]
    targets = [torch.randint(3, 49152, (48,), generator=rng).tolist() for _ in range(8)]
    optimizer = torch.optim.AdamW([p for p in generator.model.parameters() if p.requires_grad], lr=2e-4)
    cuda = device.startswith("cuda")
    figures = {}
    generator.model.train()
    for precision in ("fp32", "bf16"):
        def step() -> None:
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=precision == "bf16" and cuda):
                loss, tokens = generator.nll(prompts, targets)
            optimizer.zero_grad(set_to_none=True)
            (loss / tokens).backward()
            optimizer.step()

        figures[precision] = rate(step, steps, device)
    return figures


def main() -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--device", default="cuda", help="cuda (the figures), or cpu: a smoke run of the same code")
    args = parser.parse_args()
    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("bench_gpu: no CUDA device: nothing to measure (--device cpu runs the code paths)", file=sys.stderr)
        return 1
    where = torch.cuda.get_device_name(0) if device.startswith("cuda") else "CPU only (smoke run)"
    print(f"device: {where}, torch {torch.__version__}, CUDA {torch.version.cuda}; CPU threads: {torch.get_num_threads()}",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as name:
        scratch = Path(name)
        hybrid = hybrid_steps(device, scratch, args.steps)
        print(f"hybrid training steps/s (batch 64, 6,924 items): fp32 {hybrid['fp32']:.2f}, bf16 {hybrid['bf16']:.2f}"
              f"  -> bf16/fp32 {hybrid['bf16'] / hybrid['fp32']:.2f}x", flush=True)
        lm = lm_steps(device, args.steps)
        print(f"lm decoder steps/s (SmolLM2-135M shape, LoRA, 8 x 144 tokens): fp32 {lm['fp32']:.2f}, "
              f"bf16 {lm['bf16']:.2f}  -> bf16/fp32 {lm['bf16'] / lm['fp32']:.2f}x", flush=True)
        cpu = scoring("cpu", scratch, repeats=3)
        if device.startswith("cuda"):
            gpu = scoring(device, scratch, repeats=20)
            print(f"scoring + top-50 (standard and novel) of 256 contexts x 6,924 items, batches/s: GPU {gpu:.1f}, "
                  f"CPU {cpu:.2f}  -> GPU/CPU {gpu / cpu:.1f}x", flush=True)
        else:
            print(f"scoring + top-50 of 256 contexts x 6,924 items, batches/s: CPU {cpu:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
