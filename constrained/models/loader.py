"""`load_model`: a built-in model, a local Hugging Face directory, or a hub id, ready to serve."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerFast

from constrained.errors import ModelLoadError
from constrained.models.builtin import BUILTIN_MODELS, load_builtin
from constrained.models.loaded import LoadedModel
from constrained.models.prepack import can_prepack, prepack_linears
from constrained.models.quantize import QUANTIZATIONS, quantize_int8

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m-instruct"
_TURN_END_TOKENS = ("<|im_end|>", "<|endoftext|>")


def load_model(
    name_or_path: str = DEFAULT_MODEL, *, device: str = "auto", dtype: torch.dtype | None = None,
    quantize: str = "none", prepack: bool = True,
) -> LoadedModel:
    """Return the model and tokenizer for a built-in name, a local directory, or a hub id, in eval mode.

    `device="auto"` picks CUDA in bfloat16 when available, else the CPU in float32; `dtype` overrides
    the dtype. `quantize="int8"`: weight-only int8 linears (quantize.py), on the CPU only. `prepack`: on the CPU,
    the other linears multiply by weights packed once for oneDNN (prepack.py). Raises ModelLoadError naming the
    model and the cause when anything fails.
    """
    target = _resolve_device(device)
    if quantize not in QUANTIZATIONS:
        raise ModelLoadError(f"unknown quantization '{quantize}': one of {', '.join(QUANTIZATIONS)}")
    if quantize != "none" and target.type != "cpu":
        raise ModelLoadError(f"quantization '{quantize}' runs on the CPU only: use --device cpu or leave it out")
    dtype = dtype or (torch.bfloat16 if target.type == "cuda" else torch.float32)
    start = time.perf_counter()
    logger.info("loading model %s on %s in %s", name_or_path, target, dtype)
    try:
        if name_or_path in BUILTIN_MODELS:
            model, tokenizer = load_builtin(name_or_path, dtype=dtype)
        else:
            model, tokenizer = _load_pretrained(name_or_path, dtype=dtype)
        model = model.to(target).eval().requires_grad_(False)  # inference only: no autograd bookkeeping
    except ModelLoadError:
        raise
    except Exception as exc:  # transformers/hub raise many types; callers need one, with the cause
        raise ModelLoadError(f"could not load model '{name_or_path}': {type(exc).__name__}: {exc}") from exc
    vocab_rows = model.get_output_embeddings().weight.shape[0]
    if quantize == "int8":
        logger.info("int8 weights for %d linears", quantize_int8(model))
    if prepack and can_prepack(target, dtype):
        logger.info("weights packed for oneDNN in %d linears", prepack_linears(model))
    loaded = LoadedModel(
        name=name_or_path,
        model=model,
        tokenizer=tokenizer,
        device=target,
        dtype=dtype,
        vocab_rows=vocab_rows,
        eos_token_ids=_eos_token_ids(model, tokenizer),
    )
    elapsed = time.perf_counter() - start
    logger.info("loaded model %s in %.2f s (eos ids %s)", name_or_path, elapsed, loaded.eos_token_ids)
    return loaded


def _resolve_device(device: str) -> torch.device:
    """Map "auto" / "cpu" / "cuda[:n]" to a torch.device, refusing CUDA where there is none."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        target = torch.device(device)
    except RuntimeError as exc:
        raise ModelLoadError(f"unknown device '{device}': use 'auto', 'cpu' or 'cuda'") from exc
    if target.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("device 'cuda' was requested but CUDA is not available: use 'auto' or 'cpu'")
    return target


def _load_pretrained(name_or_path: str, *, dtype: torch.dtype) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """Load from a local directory, the local hub cache, or the hub, failing fast when the hub is unreachable."""
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        source, offline = str(local), True
    elif name_or_path.startswith((".", "/", "~")):
        raise ModelLoadError(f"model directory '{name_or_path}' does not exist")
    else:
        source = name_or_path
        # A repo already in the hub cache is served from it without touching the network.
        offline = _in_hub_cache(source)
        if not offline:
            _check_on_hub(source)
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=offline)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, local_files_only=offline)
    return model, tokenizer


def _in_hub_cache(repo_id: str) -> bool:
    """Whether the Hugging Face cache already holds this repo's config (then no network is needed)."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def _check_on_hub(repo_id: str) -> None:
    """Raise ModelLoadError at once if the hub is unreachable, offline mode is on, or the repo is missing.

    One plain request: transformers' own download path retries for ~25 s before failing offline.
    """
    from huggingface_hub import model_info

    try:
        model_info(repo_id, timeout=10)
    except Exception as exc:
        raise ModelLoadError(
            f"model '{repo_id}' is neither built in, a local directory, nor reachable on the Hugging Face hub "
            f"({type(exc).__name__}: {exc}); built-in models: {', '.join(BUILTIN_MODELS)}"
        ) from exc


def _eos_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast) -> tuple[int, ...]:
    """Union of the generation config's EOS ids, the tokenizer's EOS, and ChatML turn-end tokens present."""
    ids: set[int] = set()
    configured = model.generation_config.eos_token_id if model.generation_config is not None else None
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(configured)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    vocab = tokenizer.get_vocab()
    ids.update(vocab[token] for token in _TURN_END_TOKENS if token in vocab)
    return tuple(sorted(ids))
