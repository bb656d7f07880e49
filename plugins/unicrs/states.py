"""The frozen text encoder's token states, computed once per context and kept on disk.

Why: KGPrompt reads the encoder's last hidden states X (one vector per context token), and with a frozen
encoder X depends only on the context text. Encoding is a large part of a CPU run (all-MiniLM-L6-v2 encodes
~30 contexts of 128 tokens per second on 2 cores), and UniCRS's three stages and every seed read the same
contexts, so each distinct text is encoded once. As the sentence-vector cache (`plugins.models.text_encoder`)
does, states are keyed by the SHA-256 of the exact encoder input under
``<cache_dir>/unicrs-token-states/<encoder key>/``, in append-only ``.npz`` shards (``allow_pickle=False``:
loading a shard cannot run code) of float16 states, their lengths and the text hashes.

In memory all states live in one flat float16 tensor on the model's device; a batch is one gather with a
[B, L] index (offset + position, masked by length), so no Python loop touches the tensors per sample.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from plugins.models.text_encoder import cache_key, read_shards, text_hash, write_shard

STATES_FORMAT_VERSION = "1"  # bump when the encoder input format changes: it is part of the directory key
ENCODE_COUNTER: Counter[str] = Counter()  # encoder key -> texts encoded in this process (observable in tests)


def encoder_key(source: str, max_tokens: int) -> str:
    """Cache directory name: readable encoder name + hash of everything that changes the states."""
    return cache_key(source, {"encoder": source, "max_tokens": max_tokens, "format": STATES_FORMAT_VERSION})


class TokenStateStore:
    """Append-only shards of (hashes, lengths, float16 states); a damaged shard is only a cache miss."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.states: dict[str, np.ndarray] = {}
        for data in read_shards(self.directory, ("hashes", "lengths", "states")):
            ends = np.cumsum(data["lengths"])
            for key, end, length in zip(data["hashes"].tolist(), ends, data["lengths"]):
                self.states[key] = data["states"][end - length:end]

    def __contains__(self, key: str) -> bool:
        return key in self.states

    def add(self, keys: Sequence[str], states: Sequence[np.ndarray]) -> None:
        if not keys:
            return
        for key, value in zip(keys, states):
            self.states[key] = value
        write_shard(self.directory, hashes=np.asarray(list(keys)),
                    lengths=np.asarray([len(s) for s in states], np.int64),
                    states=np.concatenate(list(states)).astype(np.float16))


class TokenStates:
    """Frozen-encoder token states of context texts: `ensure` encodes what is missing (disk cache first),
    `gather` returns a padded batch."""

    def __init__(self, encoder: torch.nn.Module, tokenizer: Any, max_tokens: int, device: str,
                 store: TokenStateStore | None, key: str, batch_size: int = 32):
        self.encoder, self.tokenizer, self.max_tokens, self.device = encoder, tokenizer, max_tokens, device
        self.store, self.key, self.batch_size = store, key, batch_size
        self.width = int(encoder.config.hidden_size)
        self.flat = torch.zeros(0, self.width, dtype=torch.float16, device=device)
        self.where: dict[str, tuple[int, int]] = {}  # hash -> (offset, length) in `flat`
        self.encoded = 0  # texts this instance sent through the encoder
        self.cache_hits = 0

    def ensure(self, texts: Sequence[str]) -> None:
        """Make every text's states available (one encoder pass over the missing ones, one shard)."""
        missing: dict[str, str] = {}
        known: dict[str, np.ndarray] = {}
        for text in texts:
            key = text_hash(text)
            if key in self.where or key in missing or key in known:
                continue
            if self.store is not None and key in self.store:
                known[key] = self.store.states[key]
            else:
                missing[key] = text
        self.cache_hits += len(known)
        fresh = self._encode(missing) if missing else {}
        if fresh and self.store is not None:
            self.store.add(list(fresh), list(fresh.values()))
        self._append({**known, **fresh})

    def _encode(self, missing: dict[str, str]) -> dict[str, np.ndarray]:
        pending = sorted(missing.items(), key=lambda kv: len(kv[1]))  # similar lengths share a batch
        out: dict[str, np.ndarray] = {}
        was_training = self.encoder.training
        self.encoder.eval()
        with torch.no_grad():
            for start in range(0, len(pending), self.batch_size):
                part = pending[start:start + self.batch_size]
                tokens = self.tokenizer([text for _, text in part], truncation=True, max_length=self.max_tokens,
                                        padding=True, return_tensors="pt").to(self.device)
                hidden = self.encoder(input_ids=tokens["input_ids"],
                                      attention_mask=tokens["attention_mask"]).last_hidden_state
                lengths = tokens["attention_mask"].sum(1).tolist()
                hidden = hidden.float().cpu().numpy().astype(np.float16)
                for row, ((key, _), length) in enumerate(zip(part, lengths)):  # right padding: first `length`
                    out[key] = hidden[row, :length]
        self.encoder.train(was_training)
        self.encoded += len(pending)
        ENCODE_COUNTER[self.key] += len(pending)
        return out

    def _append(self, states: dict[str, np.ndarray]) -> None:
        if not states:
            return
        offset = self.flat.shape[0]
        for key, value in states.items():
            self.where[key] = (offset, len(value))
            offset += len(value)
        block = torch.from_numpy(np.concatenate(list(states.values())).astype(np.float16)).to(self.device)
        self.flat = torch.cat([self.flat, block])

    def gather(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """([B, L, d] float32 states, [B, L] mask) of texts already `ensure`d, right-padded."""
        self.ensure(texts)
        located = torch.tensor([self.where[text_hash(text)] for text in texts], dtype=torch.long,
                               device=self.device).reshape(-1, 2)
        offsets, lengths = located[:, 0], located[:, 1]
        width = max(1, int(lengths.max())) if len(texts) else 1
        positions = torch.arange(width, device=self.device)
        mask = positions[None, :] < lengths[:, None]
        index = torch.where(mask, offsets[:, None] + positions[None, :], torch.zeros_like(mask, dtype=torch.long))
        states = self.flat[index].float() * mask[:, :, None]
        return states, mask

    def describe(self) -> dict[str, Any]:
        return {"key": self.key, "format": f"npz float16 shards (allow_pickle=False), format {STATES_FORMAT_VERSION}",
                "encoded_this_run": self.encoded, "cache_hits": self.cache_hits,
                # where inside --cache-dir (this machine's absolute path would make the record unportable)
                "directory": None if self.store is None else
                f"{self.store.directory.parent.name}/{self.store.directory.name}"}
