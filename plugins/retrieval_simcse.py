"""The `simcse` retriever: the sentence encoder fine-tuned by unsupervised SimCSE on the indexed corpus, then
exact cosine search (`plugins.retrievers.DenseRetriever`). DCRS's retriever (SYSTEMS.md §8; Gao et al., 2021).

Objective: each text of a batch is encoded twice with dropout on; the two views of text i are the positive
pair and the other texts' second views the in-batch negatives,

    L = −(1/B) Σ_i log( exp(cos(h_i, h_i⁺)/τ) / Σ_j exp(cos(h_i, h_j⁺)/τ) ),   τ = 0.05.

Why bounded steps: one MiniLM step at batch 16 × 128 tokens costs ~1.75 s on the 2-core CPU (SYSTEMS.md
§0.4), so the default trains `steps` = 60 steps (960 texts, under one INSPIRED epoch) instead of the paper's
5 epochs; every setting is recorded. The fine-tuned encoder is saved under
``<cache_dir>/simcse/<key>/`` with `key` a hash of the corpus texts and every setting, so it is trained once
per dataset (fingerprinted by the corpus it indexes) and reused by every later run and seed; its embeddings
are cached by `TextEncoder` like the frozen encoder's. Pooling stays the encoder's own (mean for MiniLM,
whose pre-training used it) where the paper's BERT used CLS.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from harness.api import RunContext
from plugins.retrievers import DenseRetriever

TEMPERATURE = 0.05


def simcse_loss(first: Any, second: Any, temperature: float = TEMPERATURE) -> Any:
    """InfoNCE between two dropout views [B, d] (unit rows): positives on the diagonal."""
    import torch

    logits = first @ second.T / temperature
    return torch.nn.functional.cross_entropy(logits, torch.arange(first.shape[0], device=first.device))


class SimCSERetriever(DenseRetriever):
    """`DenseRetriever` whose encoder is first fine-tuned on the corpus passed to `index`."""

    def __init__(self, ctx: RunContext, encoder: str, max_tokens: int, steps: int, batch_size: int, lr: float,
                 temperature: float, seed: int):
        super().__init__(encoder=None)  # type: ignore[arg-type]  # set by index()
        if steps < 0 or batch_size < 2 or lr <= 0 or temperature <= 0:
            raise ValueError("simcse needs steps >= 0, batch_size >= 2, lr > 0 and temperature > 0")
        self.base, self.max_tokens, self.device, self.cache_dir = encoder, max_tokens, ctx.device, Path(ctx.cache_dir)
        self.settings = {"encoder": encoder, "max_tokens": max_tokens, "steps": steps, "batch_size": batch_size,
                         "lr": lr, "temperature": temperature, "seed": seed, "optimizer": "AdamW"}
        self.training: dict[str, Any] = {}

    def key(self, corpus: Sequence[str]) -> str:
        digest = hashlib.sha256()
        for text in corpus:
            digest.update(hashlib.sha256(text.encode()).digest())
        identity = json.dumps({**self.settings, "corpus": digest.hexdigest(), "format": 1}, sort_keys=True)
        return hashlib.sha256(identity.encode()).hexdigest()[:16]

    def index(self, corpus: Sequence[str]) -> None:
        """Fine-tune (or load the cached fine-tuned encoder), then encode the corpus."""
        from plugins.models.text_encoder import TextEncoder

        directory = self.cache_dir / "simcse" / self.key(corpus)
        if not (directory / "done.json").is_file():
            self.fit(list(corpus), directory)
        self.training = json.loads((directory / "done.json").read_text())
        self.encoder = TextEncoder(str(directory / "model"), self.max_tokens, self.device, self.cache_dir)
        super().index(corpus)

    def fit(self, corpus: list[str], directory: Path) -> None:
        import torch

        from plugins.models.text_encoder import TextEncoder

        started = time.perf_counter()
        text = TextEncoder(self.base, self.max_tokens, self.device, None)
        module = text.module
        s = self.settings
        optimizer = torch.optim.AdamW(module.parameters(), lr=s["lr"])
        rng = np.random.default_rng(s["seed"])
        losses: list[float] = []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s["seed"])  # dropout masks
            module.train()
            order: list[int] = []
            for _ in range(s["steps"]):
                if len(order) < s["batch_size"]:
                    order += rng.permutation(len(corpus)).tolist()
                batch, order = order[:s["batch_size"]], order[s["batch_size"]:]
                tokens = text.tokenize([corpus[i] for i in batch])
                loss = simcse_loss(text.embed(tokens), text.embed(tokens), s["temperature"])  # two dropout views
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(float(loss.detach()))
        module.eval()
        (directory / "model").mkdir(parents=True, exist_ok=True)
        module.save_pretrained(directory / "model")
        text.tokenizer.save_pretrained(directory / "model")
        summary = {"steps": len(losses), "texts_seen": len(losses) * s["batch_size"], "corpus": len(corpus),
                   "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
                   "mean_last_10": float(np.mean(losses[-10:])) if losses else None,
                   "seconds": round(time.perf_counter() - started, 2)}
        (directory / "done.json").write_text(json.dumps(summary))

    def describe(self) -> dict[str, Any]:
        base = super().describe() if self.encoder is not None else {"corpus": 0}
        return {**base, "kind": "simcse", "objective": "unsupervised SimCSE (dropout views, in-batch negatives)",
                "pooling": "mean (the encoder's own)", "settings": self.settings, "training": self.training}


def simcse_retriever(ctx: RunContext, encoder: str = "all-MiniLM-L6-v2", max_tokens: int = 128, steps: int = 60,
                     batch_size: int = 16, lr: float = 3e-5, temperature: float = TEMPERATURE,
                     seed: int = 0) -> SimCSERetriever:
    """The `simcse` retriever. `seed` is fixed (not the run seed) so that every seed of a benchmark shares
    one fine-tuned encoder."""
    return SimCSERetriever(ctx, encoder, max_tokens, steps, batch_size, lr, temperature, seed)
