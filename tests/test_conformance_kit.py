"""Issue 18, the conformance kit (`harness.testing`): the built-in components pass it, and it catches
components that break their contract, with one line naming the component and the rule."""
from __future__ import annotations

import subprocess
import sys

import pytest

from harness import testing
from harness.plugin_manager import load_plugins
from harness.testing import (ContractError, check_augmenter, check_dataset, check_generator, check_loss, check_metric,
                             check_model, check_retriever)
from tests.conftest import REPO_ROOT

SMALL_KBRD = {"dim": 16, "num_bases": 2}


@pytest.mark.parametrize("name, params", [
    ("popularity", {}), ("repeat-context", {}), ("repeat-context-pop", {}),
    ("linear-context", {"dim": 16, "vocab_buckets": 256}), ("kbrd", SMALL_KBRD),
])
def test_built_in_models_conform(plugins, name, params):
    result = check_model(name, params, plugins=plugins)
    assert "completes a real run on synthetic" in result.rules and result.record["run_id"]


LOSS_MODELS = {"ala": ("kbrd-cos", SMALL_KBRD), "ldam": ("kbrd-cos", SMALL_KBRD)}  # they need a cosine head


@pytest.mark.parametrize("name", testing.each("losses", load_plugins(autoload=False)))
def test_built_in_losses_conform(plugins, name):
    model, model_params = LOSS_MODELS.get(name, (None, None))
    check_loss(name, plugins=plugins, model=model, model_params=model_params)


@pytest.mark.parametrize("name", ["ranking", "longtail", "bleu_legacy", "sacrebleu", "rouge", "distinct"])
def test_built_in_metric_families_conform(plugins, name):
    check_metric(name, plugins=plugins)


@pytest.mark.parametrize("name", ["none", "random", "template"])
def test_built_in_augmenters_conform(plugins, name):
    check_augmenter(name, plugins=plugins)


def test_the_synthetic_dataset_conforms(plugins):
    result = check_dataset("synthetic", testing.TINY_SYNTHETIC, plugins=plugins)
    assert "the same fingerprint when built again and from the cache" in result.rules


# --- retrievers and generators (none is built in): small ones written for the test ------------------

KIT_PLUGIN = '''
import collections

import numpy as np
import torch

from harness.api import HIGHER, MetricSpec, hookimpl


class Overlap:
    """Word-overlap retrieval."""

    def __init__(self, ctx, leak=False):
        self.leak = leak

    def index(self, corpus):
        self.docs = [set(text.lower().split()) for text in corpus]

    def search(self, queries, k, exclude=None):
        scores = np.array([[len(set(q.lower().split()) & d) for d in self.docs] for q in queries], dtype=float)
        if exclude is not None and not self.leak:
            for row, ids in enumerate(exclude):
                scores[row, list(ids)] = -np.inf
        ids = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return ids, np.take_along_axis(scores, ids, axis=1)


class MostCommonReply:
    def __init__(self, ctx):
        self.reply = ""

    def fit(self, train, valid):
        counts = collections.Counter(s.reference for s in train.conv_samples)
        self.reply = counts.most_common(1)[0][0]
        return {"reply": self.reply}

    def generate(self, split, samples, recommendations):
        return [self.reply for _ in samples]


class NaNScores:
    trainable = False

    def __init__(self, ctx):
        self.n = ctx.dataset.num_items

    def make_batch(self, split, samples):
        return len(samples)

    def scores(self, batch):
        scores = torch.zeros(batch, self.n)
        scores[:, 0] = float("nan")
        return scores


class Drifting(NaNScores):
    calls = 0

    def scores(self, batch):
        Drifting.calls += 1
        return torch.full((batch, self.n), float(Drifting.calls))


class Undeclared:
    def compute(self, lists, ctx):
        return {"hits@5": 0.5, "extra_key": 1.0}


class Mutating:
    def __init__(self, ctx):
        pass

    def augment(self, train, rng):
        train[0].turns.append(train[0].turns[-1])
        return []

    def statistics(self):
        return {}


class NotSynthetic(Mutating):
    def augment(self, train, rng):
        return [train[0]]


def vector_loss(ctx):
    return lambda logits, labels: torch.nn.functional.cross_entropy(logits, labels, reduction="none")


@hookimpl
def crs_bench_register_retrievers(registry):
    registry.add("overlap", Overlap, "Word-overlap retrieval (test only).")


@hookimpl
def crs_bench_register_generators(registry):
    registry.add("most-common-reply", MostCommonReply, "Always the most common training reply (test only).")


@hookimpl
def crs_bench_register_models(registry):
    registry.add("nan-scores", NaNScores, "Scores with a NaN (test only).")
    registry.add("drifting", Drifting, "Scores differently on every call (test only).")


@hookimpl
def crs_bench_register_losses(registry):
    registry.add("vector-loss", vector_loss, "Returns one loss per sample (test only).")


@hookimpl
def crs_bench_register_metrics(registry):
    registry.add("undeclared", Undeclared, "Produces a key it does not declare (test only).",
                 spec=MetricSpec("rec", {"hits@*": HIGHER}))


@hookimpl
def crs_bench_register_augmenters(registry):
    registry.add("mutating", Mutating, "Changes its input (test only).")
    registry.add("not-synthetic", NotSynthetic, "Returns a real dialogue (test only).")
'''


@pytest.fixture(scope="module")
def kit_plugins(tmp_path_factory):
    path = tmp_path_factory.mktemp("kit") / "kit_plugin.py"
    path.write_text(KIT_PLUGIN)
    return load_plugins(extra=[str(path)], autoload=False)


def test_a_retriever_conforms_and_one_that_leaks_excluded_ids_does_not(kit_plugins):
    assert "never returns an excluded id" in check_retriever("overlap", plugins=kit_plugins).rules
    with pytest.raises(ContractError, match=r"retriever 'overlap' \(path:.*\) breaks 'never returns an excluded id'"):
        check_retriever("overlap", {"leak": True}, plugins=kit_plugins)


def test_a_generator_conforms(kit_plugins):
    result = check_generator("most-common-reply", plugins=kit_plugins, conv_limit=6)
    assert result.record["conversation"]["samples"] == 6 and "conv" in result.record["metrics"]


@pytest.mark.parametrize("check, name, rule", [
    (check_model, "nan-scores", "scores are finite or -inf (never NaN or +inf)"),
    (check_model, "drifting", "a rebuild with the same seed scores the same"),
    (check_loss, "vector-loss", "a finite scalar on a batch of 4"),
    (check_metric, "undeclared", "scores a real run"),
    (check_augmenter, "mutating", "leaves the input dialogues unchanged"),
    (check_augmenter, "not-synthetic", "every new dialogue is marked synthetic"),
])
def test_the_kit_names_the_component_and_the_broken_rule(kit_plugins, check, name, rule):
    with pytest.raises(ContractError) as caught:
        check(name, plugins=kit_plugins)
    message = str(caught.value)
    assert f"'{name}' (path:" in message and f"breaks '{rule}'" in message and "\n" not in message


def test_the_kit_imports_without_pytest():
    probe = "import sys; sys.modules['pytest'] = None; import harness.testing; print('OK')"
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr
