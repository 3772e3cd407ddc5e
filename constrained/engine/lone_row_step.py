"""A compiled step for a row running alone: its tokens in, the last one's logits out (`--torch-compile`, CPU).

One row decoding alone (a laptop's single client) reads every weight once per token, and eager PyTorch spends
about as long again in Python and small kernels between the matmuls (each layer's norms, rotary embedding,
attention, residuals). Here a block of BLOCK_LAYERS decoder layers is one function of their weights, compiled
once by torch.compile (inductor) and called for every block: the cache length is a dynamic size, so it is not
compiled again as the row grows. Blocks rather than single layers: one call per block, and inductor fuses each
layer's last residual with the next one's norm; the compile time grows with the block. Inside a block a
matrix-vector product is written as a reduction, which inductor's generated loops run faster on one row than
the matmul kernel does. The vocabulary head, one large matrix, takes whichever of PyTorch's matrix-vector kernel
and a compiled reduction is faster on this CPU, timed once at construction: which one wins depends on the CPU
(benchmarks/SPEED.md). A step of one token runs the same layers compiled ahead of time
into one C++ call (decode_program.py), which spares the blocks' Python per call; the blocks take it where that
compile fails. A step of more tokens (a prompt, a chunk of one, a token and the run its constraint forces) takes
the blocks with matmuls and sdpa: its token count is a dynamic size too, and the compiled code spares it eager
PyTorch's time between kernels, most of a short prompt's. The logits equal the eager step's up to
float rounding, not bit for bit.

Llama, Qwen2 and Qwen3 decoder layers are read from their modules (`unsupported` says why another model is not);
batches whose every row takes one token run batch_decode_step.py; the eager step runs other batches, and a cache's
first step (which makes its storage).
"""

from __future__ import annotations

import logging
from typing import Callable

import torch
from torch import nn

from constrained.engine.decode_program import compile_decode_program
from constrained.engine.kv_cache import BatchKVCache
from constrained.kernel_timing import median_seconds
from constrained.models.quantize import SMALL_STEP

logger = logging.getLogger(__name__)

_MODEL_TYPES = ("llama", "qwen2", "qwen3")
BLOCK_LAYERS = 6  # decoder layers a compiled call runs (the last block may be shorter: compiled once more)


def unsupported(model: nn.Module) -> str | None:
    """Why `model`'s layers cannot take the compiled step (None: they can)."""
    config = model.config
    if config.model_type not in _MODEL_TYPES:
        return f"model type {config.model_type!r} (supported: {', '.join(_MODEL_TYPES)})"
    if getattr(config, "hidden_act", "silu") != "silu":
        return f"activation {config.hidden_act!r}"
    if getattr(config, "use_sliding_window", False) or getattr(config, "mlp_bias", False):
        return "sliding-window attention or MLP biases"
    if next(model.parameters()).device.type != "cpu":
        return "a device other than the CPU"
    return None


class LoneRowStep:
    """`model`'s forward pass for one row, against its keys and values in a BatchKVCache: a prompt, a chunk of
    one, a token, or a token and the run its constraint forces after it."""

    def __init__(self, model: nn.Module):
        reason = unsupported(model)
        if reason is not None:
            raise ValueError(f"no compiled step for {reason}")
        decoder = model.get_decoder()
        attention = decoder.layers[0].self_attn
        self.embed, self.rotary = decoder.embed_tokens, decoder.rotary_emb
        self.final_norm = (decoder.norm.weight, decoder.norm.variance_epsilon)
        self.head = _linear_weights(model.get_output_embeddings())
        self.head_kernel = None if self.head[2] is not None else fastest_head_kernel(self.head[0])  # int8: its own
        self.shape = (model.config.num_attention_heads, model.config.num_key_value_heads, attention.head_dim,
                      decoder.layers[0].input_layernorm.variance_epsilon, attention.scaling)
        self.layers = layers = [_weights(layer) for layer in decoder.layers]  # each in layer_step's order
        self.blocks = [layers[start:start + BLOCK_LAYERS] for start in range(0, len(layers), BLOCK_LAYERS)]
        self._block = torch.compile(_block_step, dynamic=True)
        weight, (kv_heads, head_dim) = self.embed.weight, self.shape[1:3]
        self.decode = compile_decode_program(  # one token: every layer in one call
            layer_step, layers, self.shape, weight.new_zeros(1, weight.shape[1]),
            weight.new_zeros(kv_heads, 8, head_dim), fallback="the compiled blocks")
        self.calls = 0  # steps taken (for tests and benchmarks)

    def __call__(self, cache: BatchKVCache, tokens: list[int]) -> torch.Tensor:
        """Float32 logits [1, vocab_rows] of the last of `tokens` appended to the cache's only row."""
        length, count = int(cache.lengths[0]), len(tokens)
        hidden = self.embed.weight[torch.tensor(tokens)]
        positions = torch.arange(length, length + count)
        cos, sin = self.rotary(hidden.float()[None], positions[None])
        stores = cache.row_stores(0, length + count)
        if count == 1 and self.decode is not None:
            hidden = self.decode(hidden, cos[0], sin[0], positions, length + 1, stores)
        else:
            hidden = self._blocks(hidden, cos[0], sin[0], stores, positions, length + count)
        cache.commit(torch.tensor([count]))
        self.calls += 1
        return self._logits(hidden[-1])[None]

    def _blocks(self, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, stores: list[tuple],
                positions: torch.Tensor, columns: int) -> torch.Tensor:
        """hidden after every layer, through the compiled blocks."""
        for keys, values in stores:
            # capacity dynamic from the first compile: otherwise the storage's first doubling compiles again
            torch._dynamo.maybe_mark_dynamic(keys, 1)
            torch._dynamo.maybe_mark_dynamic(values, 1)
        start = 0
        for block in self.blocks:
            hidden = self._block(hidden, block, cos, sin, stores[start:start + len(block)], positions, columns,
                                 self.shape)
            start += len(block)
        return hidden

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Float32 logits [vocab_rows] of the last layer's output, through the final norm and the head."""
        x = rms_norm(hidden, *self.final_norm)
        weight, bias, int8, scales = self.head
        out = torch._weight_int8pack_mm(x[None], int8, scales)[0] if int8 is not None else self.head_kernel(weight, x)
        return (out if bias is None else out + bias).float()


def fastest_head_kernel(weight: torch.Tensor) -> Callable:
    """torch.mv or a compiled reduction (float32 out), whichever multiplies `weight` by a vector faster here."""
    with torch.inference_mode():  # as the steps' vectors are: a vector made outside compiled the reduction twice
        vector = torch.zeros(weight.shape[1], dtype=weight.dtype)
    kernels = (torch.mv, torch.compile(_matrix_vector, dynamic=False))
    return min(kernels, key=lambda kernel: median_seconds(lambda: kernel(weight, vector)))


def _matrix_vector(weight: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    """weight [out, in] times vector [in] as a reduction in float32 (float32 [out]), for inductor to compile."""
    return (weight.float() * vector.float()).sum(-1)


def _weights(layer: nn.Module) -> tuple:
    """A decoder layer's tensors, in layer_step's order (None where the model has no such tensor)."""
    attention, mlp = layer.self_attn, layer.mlp
    q_norm, k_norm = getattr(attention, "q_norm", None), getattr(attention, "k_norm", None)
    return (layer.input_layernorm.weight, _linear_weights(attention.q_proj), _linear_weights(attention.k_proj),
            _linear_weights(attention.v_proj), _linear_weights(attention.o_proj),
            None if q_norm is None else q_norm.weight, None if k_norm is None else k_norm.weight,
            layer.post_attention_layernorm.weight, _linear_weights(mlp.gate_proj), _linear_weights(mlp.up_proj),
            _linear_weights(mlp.down_proj))


def _linear_weights(linear: nn.Module) -> tuple:
    """(weight, bias, int8 weight, scales) of an nn.Linear, or of an Int8Linear (`--quantize int8`), whose int8
    weights are then the ones read."""
    return linear.weight, linear.bias, getattr(linear, "weight_int8", None), getattr(linear, "scales", None)


def _linear(x: torch.Tensor, weights: tuple) -> torch.Tensor:
    """x [tokens, in] times the weight [out, in] (+ bias), in float32, rounded to the weight's dtype as nn.Linear's
    is. One token: a reduction (the module docstring says why); more: the matmul kernel. int8 weights through
    PyTorch's own kernel for the few tokens Int8Linear uses them for."""
    weight, bias, int8, scales = weights
    if int8 is not None and x.shape[0] <= SMALL_STEP:
        out = torch._weight_int8pack_mm(x.to(weight.dtype), int8, scales).float()
    elif x.shape[0] == 1:
        out = _matrix_vector(weight, x[0])[None]
    else:
        out = nn.functional.linear(x.to(weight.dtype), weight).float()
    return (out if bias is None else out + bias.float()).to(weight.dtype)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Over the last dimension, as the models' RMSNorm (float32 inside, the input's dtype out, times weight)."""
    x32 = x.float()
    return weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return (x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin).to(x.dtype)


def _attention(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, positions: torch.Tensor,
               scaling: float) -> torch.Tensor:
    """query [tokens, heads, dim] against the row's keys and values [kv_heads, columns, dim]; a token at column p
    sees columns up to p. Returns [tokens, heads * dim] in float32. One token: a reduction inductor fuses; more:
    sdpa's fused kernel, which never holds a [tokens, columns] matrix of scores per head."""
    tokens, heads, head_dim = query.shape
    kv_heads = keys.shape[0]
    if tokens == 1:
        grouped = query.float().view(kv_heads, heads // kv_heads, head_dim)
        scores = torch.einsum("kgd,kcd->kgc", grouped, keys.float()) * scaling
        attended = torch.einsum("kgc,kcd->kgd", torch.softmax(scores, dim=-1), values.float())
        return attended.reshape(1, heads * head_dim)
    visible = torch.arange(keys.shape[1]) <= positions[:, None]  # [tokens, columns]
    attended = nn.functional.scaled_dot_product_attention(
        query.transpose(0, 1)[None], keys[None].to(query.dtype), values[None].to(query.dtype), attn_mask=visible,
        scale=scaling, enable_gqa=True)
    return attended[0].transpose(0, 1).reshape(tokens, heads * head_dim).float()


def _batch_attention(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, positions: torch.Tensor,
                     scaling: float) -> torch.Tensor:
    """Row r's query [heads, dim] against its keys and values [kv_heads, columns, dim] up to column positions[r]
    (query [rows, heads, dim], keys and values [rows, kv_heads, columns, dim]). Returns [rows, heads * dim] in
    float32."""
    rows, heads, head_dim = query.shape
    kv_heads = keys.shape[1]
    grouped = query.float().view(rows, kv_heads, heads // kv_heads, head_dim)
    scores = torch.einsum("rkgd,rkcd->rkgc", grouped, keys.float()) * scaling
    unseen = torch.arange(keys.shape[2]) > positions[:, None]  # [rows, columns]: past a row's token
    scores = scores.masked_fill(unseen[:, None, None], float("-inf"))
    attended = torch.einsum("rkgc,rkcd->rkgd", torch.softmax(scores, dim=-1), values.float())
    return attended.reshape(rows, heads * head_dim)


def _block_step(hidden: torch.Tensor, block: list[tuple], cos: torch.Tensor, sin: torch.Tensor,
                stores: list[tuple[torch.Tensor, torch.Tensor]], positions: torch.Tensor, columns: int,
                shape: tuple) -> torch.Tensor:
    """layer_step through each layer of `block`, with its (keys, values) of `stores`."""
    for weights, (keys, values) in zip(block, stores):
        hidden = layer_step(hidden, weights, cos, sin, keys, values, positions, columns, shape)
    return hidden


def layer_step(hidden: torch.Tensor, weights: tuple, cos: torch.Tensor, sin: torch.Tensor, keys: torch.Tensor,
               values: torch.Tensor, positions: torch.Tensor, columns: int, shape: tuple) -> torch.Tensor:
    """One decoder layer for hidden [tokens, hidden_size]: their keys and values written at `positions` of the
    row's stores ([kv_heads, capacity, head_dim]), attention over the stores' first `columns` columns. Stores of
    a batch ([rows, kv_heads, capacity, head_dim]): token r is row r's one token, at column positions[r]."""
    heads, kv_heads, head_dim, eps, scaling = shape
    norm_in, q_proj, k_proj, v_proj, o_proj, q_norm, k_norm, norm_post, gate_proj, up_proj, down_proj = weights
    tokens = hidden.shape[0]
    x = rms_norm(hidden, norm_in, eps)
    query = _linear(x, q_proj).view(tokens, heads, head_dim)
    key = _linear(x, k_proj).view(tokens, kv_heads, head_dim)
    if q_norm is not None:
        query, key = rms_norm(query, q_norm, eps), rms_norm(key, k_norm, eps)
    query, key = _rotate(query, cos[:, None], sin[:, None]), _rotate(key, cos[:, None], sin[:, None])
    value = _linear(x, v_proj).view(tokens, kv_heads, head_dim)
    if keys.dim() == 4:  # a batch
        rows = torch.arange(tokens)
        keys[rows, :, positions] = key.to(keys.dtype)
        values[rows, :, positions] = value.to(values.dtype)
        attended = _batch_attention(query, keys[:, :, :columns], values[:, :, :columns], positions, scaling)
    else:
        keys.index_copy_(1, positions, key.transpose(0, 1).to(keys.dtype))
        values.index_copy_(1, positions, value.transpose(0, 1).to(values.dtype))
        attended = _attention(query, keys[:, :columns], values[:, :columns], positions, scaling)
    hidden = hidden + _linear(attended.to(hidden.dtype), o_proj)
    x = rms_norm(hidden, norm_post, eps)
    gated = nn.functional.silu(_linear(x, gate_proj)) * _linear(x, up_proj)
    return hidden + _linear(gated, down_proj)
