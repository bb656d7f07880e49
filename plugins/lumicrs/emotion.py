"""Lexicon-based emotion vectors of dialogues (VADER), the e_x of LumiCRS's Sim_emo (SYSTEMS.md §10.3).

Why VADER: the paper's LLM emotion annotations are not available offline; VADER (vaderSentiment 3.3.2, MIT)
gives (neg, neu, pos, compound) per utterance with no data download (OFFLINE.md §5.4). A dialogue's vector
is the mean over its turns; a dialogue without turns gets zeros.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from harness.data import Dialogue

VADER_KEYS = ("neg", "neu", "pos", "compound")


def _analyzer():
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError as error:
        raise RuntimeError("LumiCRS emotion vectors need VADER: pip install vadersentiment==3.3.2") from error
    return SentimentIntensityAnalyzer()


def turn_emotions(texts: Sequence[str]) -> np.ndarray:
    """[n, 4] VADER (neg, neu, pos, compound) of each text."""
    analyzer = _analyzer()
    rows = [analyzer.polarity_scores(text) for text in texts]
    return np.asarray([[row[key] for key in VADER_KEYS] for row in rows], dtype=np.float64).reshape(-1, 4)


def dialogue_emotions(dialogues: Sequence[Dialogue]) -> np.ndarray:
    """[n_dialogues, 4]: mean VADER vector over each dialogue's turns (zeros when it has none)."""
    texts = [turn.text for dialogue in dialogues for turn in dialogue.turns]
    owners = np.fromiter((d for d, dialogue in enumerate(dialogues) for _ in dialogue.turns), dtype=np.int64,
                         count=len(texts))
    per_turn = turn_emotions(texts) if texts else np.zeros((0, 4))
    sums = np.zeros((len(dialogues), 4))
    np.add.at(sums, owners, per_turn)
    counts = np.bincount(owners, minlength=len(dialogues)).astype(np.float64)
    return sums / np.maximum(counts, 1.0)[:, None]
