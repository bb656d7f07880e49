"""Built-in LLM backends (`openai`, `hf`) for components that generate text, such as LumiCRS's `pda`.

Registered lazily ("module:attribute"): importing this module imports neither torch nor transformers.
"""
from __future__ import annotations

from harness.api import hookimpl


@hookimpl
def crs_bench_register_llm_backends(registry) -> None:
    registry.add("openai", "plugins.llm.backends:OpenAIChat",
                 "OpenAI-compatible chat-completions HTTP API (base_url, model, api_key_env).", version="1")
    registry.add("hf", "plugins.llm.backends:HFCausalLM",
                 "Local Hugging Face causal LM (model: name or path; default smollm2, offline).", version="1")
