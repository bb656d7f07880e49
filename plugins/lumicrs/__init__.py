"""LumiCRS (SYSTEMS.md §10): the `lumicrs` model and the augmenter family (`random`, `template`, `swap`, `pda`;
`pda` generates with any registered LLM backend, see `plugins.llm`).

Registered lazily ("module:attribute"): importing this module imports neither torch nor transformers.
"""
from __future__ import annotations

from harness.api import hookimpl


@hookimpl
def crs_bench_register_models(registry) -> None:
    registry.add("lumicrs", "plugins.lumicrs.model:build_lumicrs",
                 "LumiCRS: a backbone (hybrid, or prompt-lm = UniCRS) + K learned class prototypes with an "
                 "asymmetric body/tail contrastive term (use with loss acfl).", version="1")


@hookimpl
def crs_bench_register_augmenters(registry) -> None:
    registry.add("random", "plugins.lumicrs.augmenters:RandomAugmenter",
                 "Copies of uniformly re-sampled training dialogues (ratio x training dialogues).", version="1")
    registry.add("template", "plugins.lumicrs.augmenters:TemplateAugmenter",
                 "Hand-written template dialogues recommending each body/tail movie.", version="1")
    registry.add("swap", "plugins.lumicrs.augmenters:SwapAugmenter",
                 "Exemplar-guided substitution: support dialogues with a KG-close movie replaced by the target.",
                 version="1")
    registry.add("pda", "plugins.lumicrs.augmenters:PDAAugmenter",
                 "Prototype-driven LLM augmentation from exemplar dialogues (similarity filter, judge voting) "
                 "or a JSONL of accepted dialogues.", version="1")
