"""`rec_in_response`: does the generated text name what the recommender ranked, or what the reference names?

Text overlap (BLEU, ROUGE, Distinct) cannot tell a response that recommends the ranked item from one that
talks around it. This family reads the raw responses (titles in place, `ConvOutputs.responses`):

* ``names_recommended``: share of responses that name the recommender's top item for their context, over
  the responses whose context has a recommendation (``n_with_recommendation`` of them; responses of a run
  without a recommender are left out, and the value is null when none has one);
* ``names_gold``: share of responses that name at least one item the reference turn mentions, over the
  responses whose reference mentions an item (``n_with_gold``).

Names are matched as words, case-insensitively (`harness.conversation.MentionMasker.names_in`), on the
item's name (its title without a trailing "(1996 film)"). As in cleaning, a name shorter than
`MIN_NAME_CHARS` characters ("It", "Up") counts only when it is the context's recommended item, so a common
word is never taken for a gold title. Both keys are ratios of sums over responses, so `bench compare`
bootstraps them (`bootstrap_terms_outputs`); the leaderboard, which reads no dataset, does not mark them.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from harness.api import COUNT, HIGHER, ConvOutputs, MetricSpec, hookimpl
from harness.conversation import MIN_NAME_CHARS, MentionMasker
from harness.significance import Term, evaluate_terms, ratio_term

UNIT = "responses"


class RecInResponse:
    """Whether each response names the recommended item and any gold item (see the module docstring)."""

    def __init__(self) -> None:
        self._matcher = MentionMasker(())

    def indicators(self, outputs: ConvOutputs) -> dict[str, np.ndarray]:
        """Per response: has_rec, names_rec, has_gold, names_gold (0/1 floats)."""
        size = len(outputs.responses)
        for field in ("recommended", "gold"):
            if len(getattr(outputs, field)) != size:
                raise ValueError(f"rec_in_response: {len(getattr(outputs, field))} '{field}' entries for "
                                 f"{size} responses")
        values = {key: np.zeros(size) for key in ("has_rec", "names_rec", "has_gold", "names_gold")}
        for i, (response, recommended, gold) in enumerate(zip(outputs.responses, outputs.recommended, outputs.gold)):
            if recommended is not None:
                values["has_rec"][i] = 1.0
                values["names_rec"][i] = float(self._matcher.names_in(response, [recommended])[0])
            if gold:
                values["has_gold"][i] = 1.0
                names = [name for name in gold if len(name) >= MIN_NAME_CHARS or name == recommended]
                values["names_gold"][i] = float(any(self._matcher.names_in(response, names)))
        return values

    @staticmethod
    def _terms(values: dict[str, np.ndarray]) -> list[Term]:
        return [ratio_term("names_recommended", UNIT, values["names_rec"], values["has_rec"]),
                ratio_term("names_gold", UNIT, values["names_gold"], values["has_gold"])]

    def bootstrap_terms_outputs(self, outputs: ConvOutputs) -> list[Term]:
        return self._terms(self.indicators(outputs))

    def compute_outputs(self, outputs: ConvOutputs) -> dict[str, Any]:
        values = self.indicators(outputs)
        observed = evaluate_terms(self._terms(values), {UNIT: np.ones((1, len(outputs.responses)))})
        result: dict[str, Any] = {key: float(value[0]) if np.isfinite(value[0]) else None
                                  for key, value in observed.items()}
        result["n_with_recommendation"] = int(values["has_rec"].sum())
        result["n_with_gold"] = int(values["has_gold"].sum())
        return result


@hookimpl
def crs_bench_register_metrics(registry) -> None:
    registry.add("rec_in_response", RecInResponse,
                 "Share of responses naming the recommender's top item / a gold item of the reference.", version="1",
                 spec=MetricSpec("conv", {"names_recommended": HIGHER, "names_gold": HIGHER,
                                          "n_with_recommendation": COUNT, "n_with_gold": COUNT},
                                 columns=("names_recommended", "names_gold")))
