"""The semantic-ID table of a dataset: item strings -> frozen sentence embeddings -> RQ-VAE codes -> collision
resolution -> a frozen [I, L] table, cached on disk per dataset fingerprint and tokenizer settings (so every
seed and every later run of the same settings reads the same IDs).

Item string (SYSTEMS.md §11.5): ``title: <name> | <field>: <values> ...`` from the catalogue metadata when it
has descriptive fields (ReDial, synthetic), else ``title: <name> | related: <KG neighbour names>`` (INSPIRED
ships no metadata file; its KG neighbours are genres, people and other entities).
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from harness.api import item_name, write_atomic

from .rqvae import RQTraining, RQVAE, collision_rate, resolve_collisions, train_rqvae, usage

TEMPLATE = "title: <name> | <metadata field>: <values> ... (else) | related: <KG neighbour names, up to 16>"
SKIPPED_FIELDS = {"iri", "id", "url"}
MAX_NEIGHBOURS = 16
FORMAT_VERSION = "2"
HASH_DIM = 64


def item_texts(dataset: Any) -> list[str]:
    """One descriptive string per catalogue item (the template above)."""
    catalogue, kg = dataset.catalogue, dataset.kg
    neighbours: list[list[int]] | None = None
    texts = []
    for index, title in enumerate(catalogue.titles):
        parts = [f"title: {item_name(title)}"]
        meta = catalogue.metadata[index] if catalogue.metadata else {}
        for key, value in sorted(meta.items()):
            if key in SKIPPED_FIELDS or not value:
                continue
            values = value if isinstance(value, (list, tuple)) else [value]
            parts.append(f"{key}: {', '.join(str(v) for v in values)}")
        if len(parts) == 1 and kg is not None and kg.entity_names:
            if neighbours is None:
                neighbours = [sorted(n) for n in kg.neighbours()]
            names = [kg.entity_names[e] for e in neighbours[kg.item_entities[index]][:MAX_NEIGHBOURS]]
            if names:
                parts.append(f"related: {', '.join(names)}")
        texts.append(" | ".join(parts))
    return texts


def hash_embeddings(texts: Sequence[str], dim: int = HASH_DIM) -> np.ndarray:
    """Deterministic hashed bag-of-words vectors (L2-normalised): the test-tiny stand-in for an encoder."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for row, text in enumerate(texts):
        for word in text.lower().split():
            digest = hashlib.sha256(word.encode()).digest()
            out[row, digest[0] % dim] += 1.0 if digest[1] % 2 else -1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms > 0, norms, 1.0)


def embed(texts: Sequence[str], encoder: str, cache_dir: Path, device: str) -> np.ndarray:
    if encoder == "hash":
        return hash_embeddings(texts)
    from plugins.models.text_encoder import TextEncoder

    return TextEncoder(encoder, max_tokens=128, device=device, cache_dir=cache_dir).encode(list(texts))


def standardise(x: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance per dimension. Why: unit-norm sentence vectors vary ~0.04 per dimension, so
    the reconstruction term is met by the mean vector and every item collapses onto one code (measured on
    INSPIRED: 99.9% collisions, one codeword used per level); standardised, all levels use >= 90% of codes."""
    return (x - x.mean(0)) / x.std(0).clamp(min=1e-6)


RQ_KEYS = ("text_encoder", "levels", "codebook_size", "latent_dim", "rq_hidden", "beta", "rq_epochs", "rq_lr",
           "rq_weight_decay", "rq_batch_size", "rq_seed")


def build_table(embeddings: np.ndarray, settings: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    """([I, L] unique codes, statistics) from item embeddings."""
    started = time.perf_counter()
    x = standardise(torch.from_numpy(np.asarray(embeddings, dtype=np.float32)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings["rq_seed"])
        model = RQVAE(x.shape[1], settings["rq_hidden"], settings["latent_dim"], settings["levels"],
                      settings["codebook_size"], settings["beta"])
        history = train_rqvae(model, x, RQTraining(settings["rq_epochs"], settings["rq_lr"],
                                                   settings["rq_weight_decay"], settings["rq_batch_size"],
                                                   settings["rq_seed"]))
    with torch.no_grad():
        z = model.encoder(x)
        codes, chosen, residuals = model.quantize(z)
        reconstruction = float(((model.decoder(chosen.sum(1)) - x) ** 2).mean())
        resolved, resolution = resolve_collisions(codes, residuals, model.codebooks.detach())
    stats = {
        "items": int(x.shape[0]), "embedding_dim": int(x.shape[1]),
        "collision_rate_before": collision_rate(codes), "collision_rate_after": collision_rate(resolved),
        "codebook_usage_per_level": usage(resolved, settings["codebook_size"]),
        "codebook_usage_per_level_before": usage(codes, settings["codebook_size"]),
        "reconstruction_mse": reconstruction, "input": "embeddings standardised per dimension", "resolution": resolution, "epochs": settings["rq_epochs"],
        "history": history, "seconds": round(time.perf_counter() - started, 2)}
    return resolved.numpy().astype(np.int64), stats


def load_or_build(dataset: Any, settings: dict[str, Any], cache_dir: Path, device: str = "cpu"
                  ) -> tuple[np.ndarray, dict[str, Any]]:
    """The dataset's table from ``<cache>/gcrs-semantic-ids/<key>.json``, built and written when absent."""
    identity = {"dataset": dataset.fingerprint or dataset.name, "items": len(dataset.catalogue),
                "format": FORMAT_VERSION, **{key: settings[key] for key in RQ_KEYS}}
    key = hashlib.sha256(json.dumps(identity, sort_keys=True, default=list).encode()).hexdigest()[:16]
    path = Path(cache_dir) / "gcrs-semantic-ids" / f"{key}.json"
    if path.is_file():
        stored = json.loads(path.read_text())
        codes = np.asarray(stored["codes"], dtype=np.int64)
        if codes.shape == (len(dataset.catalogue), settings["levels"]):
            return codes, {**stored["stats"], "cache": "hit", "cache_key": key}
    texts = item_texts(dataset)
    codes, stats = build_table(embed(texts, settings["text_encoder"], Path(cache_dir), device), settings)
    stats.update(item_template=TEMPLATE, item_text_example=texts[0] if texts else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps({"identity": identity, "stats": stats, "codes": codes.tolist()}).encode())
    return codes, {**stats, "cache": "built", "cache_key": key}
