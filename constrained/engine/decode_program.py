"""A decode step's layers compiled ahead of time by AOTInductor: one C++ call runs every decoder layer.

torch.compile's blocks (lone_row_step.py) pay Python on every call: dynamo's guards over each weight, then the
generated wrapper's size checks and buffer allocations; an eager batch pays PyTorch's time between its kernels. On a
small model either is a large part of a decode step (benchmarks/SPEED.md). Here the decoder layers of a step that
gives each row one token, a lone row's (lone_row_step.py) or a batch's (batch_decode_step.py), are exported once
(torch.export) and compiled by AOTInductor into a package whose C++ runs them all, cached on disk under the shapes
and dtypes of its inputs, the torch version, the vector instructions and this code. The cache's length and capacity
(and a batch's rows) are dynamic sizes: rows grow, and their storage doubles, without compiling again.

Where the weights go decides what a package serves. As inputs (a lone row, whose matrix-vector products are
reductions over the weights as stored), the package holds no weights: one package serves any weights of the same
shapes. As constants (`frozen`: a batch, whose matrix products read each weight in the CPU matmul library's own
blocked layout), inductor's freezing packs each weight once at compile time, where an input would be reordered into
that layout on every call; the package then holds its model's weights and is cached under their content too."""

from __future__ import annotations

import hashlib
import inspect
import logging
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.utils._pytree as pytree
from torch import nn
from torch._inductor.cpu_vec_isa import pick_vec_isa

from constrained.models.cache import build_once, cache_dir

logger = logging.getLogger(__name__)

_MAX_COLUMNS = 1 << 20  # the dynamic sizes' bound (a row's tokens)
_PACKAGE = "decode.pt2"


def compile_decode_program(layer_step, layers: list[tuple], shape: tuple, hidden: torch.Tensor, store: torch.Tensor,
                           fallback: str, *, frozen: bool = False) -> DecodeProgram | None:
    """DecodeProgram(...), or None where the export or the compile fails (logged, naming the `fallback` that then
    takes the step)."""
    try:
        return DecodeProgram(layer_step, layers, shape, hidden, store, frozen=frozen)
    except Exception as exc:  # export and AOTInductor raise many types; the fallback still runs the step
        logger.warning("no decode step compiled ahead of time for %s (%s: %s); such steps go to %s",
                       _rows(store), type(exc).__name__, exc, fallback)
        return None


class DecodeProgram:
    """Every layer of `layer_step` for one token a row: hidden [rows, hidden_size] in, hidden out, keys and values
    written into the rows' stores. `layers`: each layer's tensors (tuples, None where a model has no such tensor),
    as `layer_step` reads them; `shape`: its constants. `hidden` and `store` are examples of the inputs: one row's
    ([1, hidden_size], store [kv_heads, capacity, head_dim]) or a batch's ([rows, hidden_size], stores [rows,
    kv_heads, capacity, head_dim]; rows a dynamic size from 2). `frozen`: the weights are the package's constants
    (the module docstring says when that pays)."""

    def __init__(self, layer_step, layers: list[tuple], shape: tuple, hidden: torch.Tensor, store: torch.Tensor,
                 *, frozen: bool = False):
        self.frozen = frozen
        self._module = _Layers(layer_step, shape, layers if frozen else None)
        weights = [leaf for leaf in pytree.tree_leaves(layers) if leaf is not None]
        self._weights = [] if frozen else weights  # inputs of every call
        self._span = torch.empty(_MAX_COLUMNS, dtype=torch.bool)  # sliced to the columns attended: a dynamic size
        key = _package_key(layer_step, layers, shape, hidden, store, weights if frozen else [])
        self.directory = directory = cache_dir() / "decode-programs" / key  # where its package is cached
        start = time.perf_counter()
        if build_once(directory, lambda tmp: self._compile(tmp / _PACKAGE, layers, hidden, store)):
            logger.info("compiled the decode step for %s ahead of time in %.1f s (cached in %s)", _rows(store),
                        time.perf_counter() - start, directory)
        with warnings.catch_warnings():  # torch's own loader uses a pytree class it deprecates
            warnings.simplefilter("ignore", FutureWarning)
            self._run = torch._inductor.aoti_load_package(str(directory / _PACKAGE)).loader.boxed_run

    def __call__(self, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, positions: torch.Tensor,
                 columns: int, stores: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """hidden [rows, hidden_size] after every layer; cos, sin [rows, head_dim] of the tokens at `positions`
        [rows]; each layer's (keys, values) stores, of which the first `columns` columns are read."""
        flat = [hidden, cos, sin, positions, self._span[:columns]]
        for keys, values in stores:
            flat += (keys, values)
        return self._run(flat + self._weights)[0]

    def _compile(self, path: Path, layers: list[tuple], hidden: torch.Tensor, store: torch.Tensor) -> None:
        """Export the layers for one token against example inputs shaped like a step's, and compile the package."""
        logger.info("compiling the decode step for %s ahead of time (once for these shapes)", _rows(store))
        rows, head_dim = hidden.shape[0], store.shape[-1]
        capacity = torch.export.Dim("capacity", min=2, max=_MAX_COLUMNS)
        if store.dim() == 4:  # a batch: rows are a dynamic size too
            per_row = {0: torch.export.Dim("rows", min=2, max=_MAX_COLUMNS)}
            store_sizes = {**per_row, 2: capacity}
        else:
            per_row, store_sizes = None, {1: capacity}
        stores = [(store.clone(), store.clone()) for _ in layers]
        # tokens at position 2 of 3 columns: sizes of 0 or 1 would be specialised, not dynamic
        example = (hidden, torch.zeros(rows, head_dim), torch.zeros(rows, head_dim), torch.full((rows,), 2),
                   self._span[:3], stores)
        dynamic = ((per_row,) * 4 + ({0: torch.export.Dim("columns", min=1, max=_MAX_COLUMNS)},
                                     [(store_sizes, store_sizes) for _ in layers]))
        if not self.frozen:
            example += (layers,)
            dynamic += (pytree.tree_map(lambda leaf: None, layers),)  # weights: static
        with torch.inference_mode():
            program = torch.export.export(self._module, example, dynamic_shapes=dynamic, strict=False)
            torch._inductor.aoti_compile_and_package(program, package_path=str(path),
                                                     inductor_configs={"freezing": self.frozen})


class _Layers(nn.Module):
    """The layers' forward pass; with `frozen_layers`, their weights are its parameters, not inputs."""

    def __init__(self, layer_step, shape: tuple, frozen_layers: list[tuple] | None):
        super().__init__()
        self.layer_step, self.shape = layer_step, shape
        if frozen_layers is not None:
            leaves, self._tree = pytree.tree_flatten(frozen_layers)
            self._present = [leaf is not None for leaf in leaves]
            self.weights = nn.ParameterList(nn.Parameter(leaf, requires_grad=False) for leaf in leaves
                                            if leaf is not None)

    def forward(self, hidden, cos, sin, positions, span, stores, layers=None):
        if layers is None:
            weights = iter(self.weights)
            layers = pytree.tree_unflatten([next(weights) if present else None for present in self._present],
                                           self._tree)
        for weights, (keys, values) in zip(layers, stores):
            hidden = self.layer_step(hidden, weights, cos, sin, keys, values, positions, span.shape[0], self.shape)
        return hidden


def _rows(store: torch.Tensor) -> str:
    return "a batch" if store.dim() == 4 else "a lone row"


def _package_key(layer_step, layers: list[tuple], shape: tuple, hidden: torch.Tensor, store: torch.Tensor,
                 constants: list[torch.Tensor]) -> str:
    """What the compiled package depends on: the code that defines the step, the torch version, the vector
    instructions its C++ was built for (a cache shared with another CPU), the shapes and dtypes of every input, and
    the values of the `constants` it holds."""
    def described(leaf):
        return (tuple(leaf.shape), str(leaf.dtype)) if isinstance(leaf, torch.Tensor) else leaf
    layout = pytree.tree_map(described, (layers, hidden, store))
    code = inspect.getsource(sys.modules[layer_step.__module__]) + inspect.getsource(sys.modules[__name__])
    digest = hashlib.sha256(repr((torch.__version__, str(pick_vec_isa()), code, shape, layout)).encode())
    for constant in constants:
        digest.update(constant.detach().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()[:32]
