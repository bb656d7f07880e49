"""The GCRS backbone: any Hugging Face causal LM (or a tiny LLaMA from a config), the new vocabulary added to
its tokenizer and embeddings, and peft LoRA whose only trainable embedding rows are the new tokens' ones.

Why peft's ``trainable_token_indices``: it trains exactly the listed rows (a small delta over a frozen
embedding) and, for tied embeddings (SmolLM2), ties the output head to the same delta; untied heads get their
own delta for the same rows (the paper trains the new rows in both the input embedding and the head).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from plugins.unicrs.backbones import BackboneError

from .sequences import Vocabulary, new_tokens


@dataclass
class Backbone:
    model: Any  # the peft model
    tokenizer: Any
    vocab: Vocabulary
    source: str
    layers_total: int
    tied: bool
    test_only: bool


def _base(name: str, cache_dir: Path, tiny_texts: Sequence[str]) -> tuple[Any, Any, str, bool]:
    if name == "tiny":
        from plugins.unicrs.backbones import tiny_decoder, tiny_tokenizer

        tokenizer = tiny_tokenizer(tiny_texts)
        return tiny_decoder(tokenizer, arch="llama"), tokenizer, "tiny-llama-2l", True
    from plugins.unicrs.backbones import load_causal_lm

    model, tokenizer = load_causal_lm(name, cache_dir, "gcrs backbone", "model.params.backbone")
    return model, tokenizer, name, False  # the name as given, not this machine's path (records are shared)


def _module_name(model: Any, module: Any) -> str:
    for name, candidate in model.named_modules():
        if candidate is module:
            return name.split(".")[-1]
    raise BackboneError(f"cannot find the embedding module of {type(model).__name__}")


def load(settings: dict[str, Any], cache_dir: Path, tiny_texts: Sequence[str], device: str, seed: int) -> Backbone:
    """Base LM in fp32, the L x K code tokens and five special tokens added, LoRA + trainable new rows."""
    from peft import LoraConfig, get_peft_model

    from plugins.unicrs.backbones import cut_decoder

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        base, tokenizer, source, test_only = _base(settings["backbone"], cache_dir, tiny_texts)
        layers_total = cut_decoder(base, settings["decoder_layers"])
        if tokenizer.eos_token_id is None:
            raise BackboneError(f"gcrs backbone '{settings['backbone']}' has a tokenizer without an eos token")
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokens = new_tokens(settings["levels"], settings["codebook_size"])
        first = len(tokenizer)
        tokenizer.add_tokens(tokens, special_tokens=True)
        ids = tokenizer.convert_tokens_to_ids(tokens)
        if ids != list(range(first, first + len(tokens))):
            raise BackboneError("gcrs: the tokenizer already holds some of the semantic-ID tokens")
        base.resize_token_embeddings(max(len(tokenizer), base.get_input_embeddings().weight.shape[0]))
        tied = base.get_output_embeddings().weight is base.get_input_embeddings().weight
        indices = list(range(first, first + len(tokens)))
        trainable: Any = indices if tied else {_module_name(base, base.get_input_embeddings()): indices,
                                               _module_name(base, base.get_output_embeddings()): indices}
        config = LoraConfig(task_type="CAUSAL_LM", r=settings["lora_r"], lora_alpha=settings["lora_alpha"],
                            lora_dropout=settings["lora_dropout"], target_modules=list(settings["lora_targets"]),
                            trainable_token_indices=trainable)
        model = get_peft_model(base.float(), config).to(device)
    tokenizer.padding_side = "left"
    return Backbone(model, tokenizer, Vocabulary(first, settings["levels"], settings["codebook_size"]), source,
                    layers_total, tied, test_only)
