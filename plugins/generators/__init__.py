"""Built-in response generators (the conversation task): ``retrieval`` and ``lm``.

Registered lazily ("module:attribute"): `bench plugins` and `import harness` never import torch,
transformers or peft; the `lm` module imports them only when a run builds and fits it.
"""
from __future__ import annotations

from harness.api import hookimpl


@hookimpl
def crs_bench_register_generators(registry) -> None:
    registry.add("retrieval", "plugins.generators.retrieval:RetrievalGenerator",
                 "Response of the most similar training context (dense retriever), naming the recommender's top item.")
    registry.add("lm", "plugins.generators.lm:LMGenerator",
                 "Causal LM (default SmolLM2-135M-Instruct, offline) fine-tuned with LoRA; batched decoding.")
