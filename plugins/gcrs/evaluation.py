"""GCRS's predict stage: the harness's ranking of each context (`harness.evaluation.rank_split` over the
model's oracle-mode scores), plus, on the test split, what GCRS evaluates beyond it (SYSTEMS.md §11.3):

* **free mode**: the model's own <MODE> decision per context (REC vs CHAT, the two mode tokens compared); a
  CHAT decision on a recommendation sample is a miss, so free-mode R/NDCG/MRR@k = oracle terms x [mode = REC];
* **mode accuracy and F1** (REC the positive class) over the test conversation samples (gold REC iff the
  reference turn mentions an item), teacher-forced;
* **perplexity** of the reference responses: exp of the token-weighted mean NLL of the response text after
  <RESP> (SID span tokens excluded, eos included), corpus-level.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from harness.api import choose_subset, context_representatives
from harness.data import Split
from plugins.generators.lm import length_batches, target_logits

from .training import Instance

KS = (1, 5, 10, 20, 50)


def ranking_terms(ranks: np.ndarray, keep: np.ndarray | None = None) -> dict[str, float]:
    """Recall / NDCG / MRR @k from 1-based ranks (0: not in the list); `keep` False counts as a miss."""
    ranks = np.where(keep, ranks, 0) if keep is not None else ranks
    out: dict[str, float] = {}
    for k in KS:
        hit = (ranks > 0) & (ranks <= k)
        out[f"recall@{k}"] = float(hit.mean()) if ranks.size else 0.0
        if k > 1:
            out[f"ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(np.maximum(ranks, 1) + 1.0), 0.0).mean()) if ranks.size else 0.0
            out[f"mrr@{k}"] = float(np.where(hit, 1.0 / np.maximum(ranks, 1), 0.0).mean()) if ranks.size else 0.0
    return out


def predict(run: Any, split: Split, settings: tuple[str, ...]) -> dict[str, Any]:
    from harness.api import rank_split

    model = run.model
    model.modes = []
    context_only = all(sample.label < 0 for sample in split.rec_samples)  # the conversation task's contexts
    narrow = model.settings["aux_beam_width"] if split.name == "valid" or context_only else None
    model.beam_width = narrow or model.settings["beam_width"]
    try:
        lists = rank_split(model, split, run.config["train"]["eval_batch_size"], settings=settings)
    finally:
        model.beam_width = model.settings["beam_width"]
    if split.name == "test" and split.conv_samples:
        model.evaluation = evaluate_test(run, split, lists, torch.cat(model.modes) if model.modes else None)
    return lists


def evaluate_test(run: Any, split: Split, lists: dict[str, Any], modes: torch.Tensor | None) -> dict[str, Any]:
    """Oracle- and free-mode ranking figures per setting, mode accuracy/F1 and perplexity."""
    representatives, sample_context = context_representatives(split.rec_samples)
    rec_mode = {} if modes is None else {
        sample.uid: bool(modes[row, 0] >= modes[row, 1])
        for sample, row in zip(split.rec_samples, sample_context.tolist())}
    ranking: dict[str, Any] = {}
    for setting, ranked in lists.items():
        keep = np.array([rec_mode.get(uid, True) for uid in ranked.sample_ids], dtype=bool)
        ranks = ranked.ranks()
        ranking[setting] = {"oracle": ranking_terms(ranks), "free": ranking_terms(ranks, keep),
                            "samples": int(ranks.size)}
    contexts_rec = float(np.mean([bool(modes[r, 0] >= modes[r, 1]) for r in range(len(representatives))])) \
        if modes is not None and len(representatives) else None
    limit = run.model.settings["eval_conv_samples"] or run.config.get("conv_limit")
    conv = choose_subset(split.conv_samples, limit)
    return {"ranking": ranking, "rec_contexts_predicted_rec": contexts_rec,
            **teacher_forced(run.model, split, conv),
            "conversation_samples": len(conv), "conversation_subset": "all" if limit is None else
            f"harness.conversation.choose_subset(test, {limit}) (the conversation task's subset)"}


def teacher_forced(model: Any, split: Split, samples: Sequence[Any]) -> dict[str, Any]:
    """Mode accuracy / precision / recall / F1 and response perplexity from one teacher-forced pass over the
    gold targets (the first mentioned item's span when the turn recommends)."""
    units = []
    for sample in samples:
        turn = split.dialogues[sample.dialogue_index].turns[sample.turn]
        item = turn.items[0] if turn.items else None
        units.append(Instance(sample.uid, model.serializer.prompt(split.context(sample)),
                              model.serializer.target(turn, item), item is not None))
    vocab = model.vocab
    gold, predicted, nll, tokens = [], [], 0.0, 0
    with model.merged():
        for batch in length_batches([len(u.prompt) + len(u.target) for u in units], model.settings["score_batch_size"]):
            chosen = [units[i] for i in batch]
            logits, labels = target_logits(model.lm, [u.prompt for u in chosen], [u.target for u in chosen],
                                           model.pad_id, model.device)
            width = labels.shape[1]
            first = torch.tensor([width - len(u.target) for u in chosen], device=labels.device)
            rows = torch.arange(len(chosen), device=labels.device)
            mode = logits[rows, first][:, [vocab.rec, vocab.chat]]
            predicted += (mode[:, 0] >= mode[:, 1]).tolist()
            gold += [u.mode_rec for u in chosen]
            after = torch.arange(width, device=labels.device)[None] > \
                (labels == vocab.resp).float().argmax(1, keepdim=True)  # strictly after <RESP>
            text = after & (labels != -100) & ~((labels >= vocab.first) & (labels < vocab.first + vocab.count))
            losses = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels.clamp(min=0), reduction="none")
            nll += float(losses[text].sum())
            tokens += int(text.sum())
    g, p = np.array(gold, dtype=bool), np.array(predicted, dtype=bool)
    tp, fp, fn = int((g & p).sum()), int((~g & p).sum()), int((g & ~p).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {"mode": {"accuracy": float((g == p).mean()) if g.size else None, "precision_rec": precision,
                     "recall_rec": recall,
                     "f1_rec": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
                     "gold_rec_share": float(g.mean()) if g.size else None,
                     "predicted_rec_share": float(p.mean()) if p.size else None, "samples": int(g.size)},
            "perplexity": float(np.exp(nll / tokens)) if tokens else None, "perplexity_tokens": tokens,
            "perplexity_scope": "response text after <RESP> (SID span tokens excluded, eos included)"}
