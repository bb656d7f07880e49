"""Conversation metrics (PROTOCOL.md §5): hand-computed values and the reference libraries."""
from __future__ import annotations

import math
import random
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from harness.registry import Registry
from plugins.metrics import conversation
from plugins.metrics.conversation import Distinct, LegacyBleu, Rouge, SacreBleu, legacy, sentence_bleu_legacy

REPO = Path(__file__).resolve().parents[1]


def nltk_bleu(prediction: str, reference: str, n: int) -> float:
    from nltk.translate.bleu_score import sentence_bleu

    weights = tuple(1.0 if order == n else 0.0 for order in range(1, 5))
    with warnings.catch_warnings():  # NLTK warns on zero-count orders; expected (§5.2)
        warnings.simplefilter("ignore")
        return sentence_bleu([legacy(reference).split()], legacy(prediction).split(), weights=weights)


def test_legacy_distinct_on_two_known_sentences():
    predictions = ["i like it", "i like <movie> a lot"]
    values = Distinct().compute_text(predictions, ["x", "y"])
    # legacy: "System:" prefixed; distinct n-grams over both responses / 2 responses
    assert values["dist1_legacy"] == 7 / 2  # System: i like it <movie> a lot
    assert values["dist2_legacy"] == 6 / 2  # S-i, i-like, like-it, like-<movie>, <movie>-a, a-lot
    assert values["dist3_legacy"] == 5 / 2
    assert values["dist4_legacy"] == 4 / 2
    # ratio: clean strings; distinct / total n-grams with multiplicity
    assert values["dist1_ratio"] == 6 / 8
    assert values["dist2_ratio"] == 5 / 6
    assert values["dist3_ratio"] == 4 / 4
    assert values["dist4_ratio"] == 2 / 2


def test_distinct_ratio_is_null_without_ngrams():
    values = Distinct(orders=(2,)).compute_text(["", "hi"], ["a", "b"])
    assert values["dist2_ratio"] is None
    assert values["dist2_legacy"] == 1 / 2  # "System: hi" is the only legacy bigram; "System:" alone has none
    assert Distinct().compute_text([], [])["dist2_legacy"] is None


def test_legacy_bleu_hand_computed_and_equal_to_nltk():
    prediction, reference = "i like it", "i like <movie>"
    values = LegacyBleu().compute_text([prediction], [reference])
    # h = g length 4 -> BP = 1; p1 = 3/4, p2 = 2/3, p3 = 1/2, p4 = 0 (-> smallest float)
    assert values["bleu1_legacy"] == pytest.approx(3 / 4)
    assert values["bleu2_legacy"] == pytest.approx(2 / 3)
    assert values["bleu3_legacy"] == pytest.approx(1 / 2)
    assert 0 < values["bleu4_legacy"] <= 1e-300
    for n in range(1, 5):
        assert values[f"bleu{n}_legacy"] == nltk_bleu(prediction, reference, n)


def test_legacy_bleu_brevity_penalty_and_zero_match():
    values = LegacyBleu(orders=(1,)).compute_text(["good"], ["i think you will like <movie>"])
    assert values["bleu1_legacy"] == pytest.approx(0.5 * math.exp(1 - 7 / 2))  # only "System:" matches
    assert sentence_bleu_legacy(["a"], ["b"]) == [0.0, 0.0, 0.0, 0.0]


def test_legacy_bleu_matches_nltk_on_random_pairs():
    rng = random.Random(7)
    words = "a b c the movie <movie> is good you like".split()
    pairs = [(" ".join(rng.choice(words) for _ in range(rng.randint(0, 9))),
              " ".join(rng.choice(words) for _ in range(rng.randint(1, 9)))) for _ in range(150)]
    scores = LegacyBleu().per_response([p for p, _ in pairs], [r for _, r in pairs])
    for row, (prediction, reference) in enumerate(pairs):
        for column, n in enumerate(range(1, 5)):
            assert scores[row, column] == nltk_bleu(prediction, reference, n)
    mean = LegacyBleu().compute_text([p for p, _ in pairs], [r for _, r in pairs])["bleu2_legacy"]
    assert mean == pytest.approx(sum(nltk_bleu(p, r, 2) for p, r in pairs) / len(pairs))


def test_sacrebleu_value_and_signature():
    import sacrebleu

    predictions = ["the cat sat on the mat", "i like <movie> a lot", "hello"]
    references = ["the cat sat on the mat", "i really like <movie>", "hi there"]
    values = SacreBleu().compute_text(predictions, references)
    assert values["sacrebleu"] == pytest.approx(sacrebleu.corpus_bleu(predictions, [references]).score)
    assert values["sacrebleu_signature"] == f"nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:{sacrebleu.__version__}"
    assert SacreBleu().compute_text(["a b c d"], ["a b c d"])["sacrebleu"] == pytest.approx(100.0)
    assert SacreBleu().compute_text([], [])["sacrebleu"] is None


def test_sacrebleu_terms_reproduce_corpus_score():
    from harness.significance import evaluate_terms
    import numpy as np

    rng = random.Random(3)
    words = "A b c the movie <movie> is good . , you".split()
    predictions = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 12))) for _ in range(80)]
    references = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 12))) for _ in range(80)]
    terms = SacreBleu().bootstrap_terms_text(predictions, references)
    observed = evaluate_terms(terms, {"responses": np.ones((1, 80))})["sacrebleu"][0]
    assert observed == pytest.approx(SacreBleu().compute_text(predictions, references)["sacrebleu"], abs=1e-12)


def test_rouge_hand_computed():
    values = Rouge().compute_text(["the movie is good", ""], ["the movie is great", "anything at all"])
    # pair 1: bigrams 2 of 3 on both sides -> F = 2/3; LCS 3 of 4 -> F = 3/4; empty prediction -> 0
    assert values["rouge2"] == pytest.approx((2 / 3 + 0) / 2)
    assert values["rougeL"] == pytest.approx((3 / 4 + 0) / 2)
    # rouge-score maps "<movie>" to the token "movie"
    assert Rouge().compute_text(["<movie> is great"], ["movie is great"]) == {"rouge2": 1.0, "rougeL": 1.0}


def test_rouge_target_is_the_reference():
    from rouge_score.rouge_scorer import RougeScorer

    prediction, reference = "a b c d e", "a b"
    expected = RougeScorer(["rouge2"], use_stemmer=False).score(reference, prediction)["rouge2"].fmeasure
    assert Rouge().compute_text([prediction], [reference])["rouge2"] == pytest.approx(expected)


def test_length_mismatch_and_type_errors():
    for family in (LegacyBleu(), SacreBleu(), Rouge(), Distinct()):
        with pytest.raises(ValueError, match="2 predictions for 1 references"):
            family.compute_text(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="prediction #1 is NoneType"):
        Distinct().compute_text(["a", None], ["a", "b"])


def test_registration():
    registry = Registry("metrics")
    conversation.crs_bench_register_metrics(registry)
    assert registry.names() == ["bleu_legacy", "distinct", "rouge", "sacrebleu"]
    assert all(component.version == "1" for component in registry)


def test_tokenization_needs_no_downloaded_data(tmp_path):
    """Every family runs with an empty NLTK data path and no network-dependent tokenizer."""
    code = ("from plugins.metrics.conversation import *\n"
            "p, r = ['i like <movie> .'], ['you will love <movie> !']\n"
            "for f in (LegacyBleu(), SacreBleu(), Rouge(), Distinct()): f.compute_text(p, r)\n"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         env={"PYTHONPATH": str(REPO), "NLTK_DATA": str(tmp_path), "HF_HUB_OFFLINE": "1",
                              "HOME": str(tmp_path), "PATH": ""})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
