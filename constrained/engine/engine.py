"""The engine: continuous batching around a short `step()`.

Each step: drain submissions and aborts -> admit newcomers -> plan the packed forward pass (every row's new
tokens side by side: groups.py, packed_attention.py) -> forward -> sample (the constrained draw: sampler.py)
-> sequences advance, with the tokens their constraint forces (fast-forward) -> finished ones retire.
Thread-safety: `submit` and `abort` may be called from any thread; `step` runs on one thread (the
async wrapper's worker).
"""

from __future__ import annotations

import queue
import random
import threading
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from constrained.engine.detokenizer import IncrementalDetokenizer
from constrained.engine.model_runner import ModelRunner
from constrained.engine.params import SamplingParams
from constrained.engine.prefix_cache import PrefixCache
from constrained.engine.sampler import SampledToken, Sampler
from constrained.engine.groups import plan_groups
from constrained.engine.scheduler import Scheduler
from constrained.engine.sequence import Sequence, SequenceOutput
from constrained.engine.stats import EngineStats
from constrained.engine.token_table import token_byte_table
from constrained.errors import EngineOverloaded
from constrained.models import LoadedModel

if TYPE_CHECKING:
    from constrained.compiler import Grammar


@dataclass(frozen=True)
class Submission:
    """A request ready to run: prompt token ids, sampling parameters, compiled grammar (or None)."""

    prompt_ids: list[int]
    params: SamplingParams
    grammar: Grammar | None = None
    request_id: str = ""


class Engine:
    """`fast_forward`: append the tokens a constraint forces (keys, punctuation, enum tails) without
    sampling, and feed each run to the model in one forward pass. Choices that ask for logprobs
    sample every token (their forced tokens then come with the logprobs they had)."""

    def __init__(self, loaded: LoadedModel, *, max_batch_size: int = 32, max_waiting: int = 256,
                 fast_forward: bool = True, prefix_cache_bytes: int = 0, max_step_tokens: int | None = None,
                 torch_compile: bool = False):
        self.loaded = loaded
        self.fast_forward = fast_forward
        self.runner = ModelRunner(loaded, torch_compile=torch_compile)
        self.scheduler = Scheduler(max_batch_size=max_batch_size, max_waiting=max_waiting)
        self.cache = self.runner.new_cache()
        self.token_bytes = token_byte_table(loaded.tokenizer, loaded.vocab_rows)
        self.eos_token_ids = frozenset(loaded.eos_token_ids)
        self.stats = EngineStats()  # counters for monitoring (api/metrics.py reads them)
        self.sampler = Sampler(max_rows=max_batch_size, vocab_rows=loaded.vocab_rows, device=loaded.device,
                               real_vocab=min(len(loaded.tokenizer), loaded.vocab_rows), stats=self.stats)
        self.prefix_cache = PrefixCache(max_bytes=prefix_cache_bytes) if prefix_cache_bytes > 0 else None
        self.max_step_tokens = max_step_tokens  # chunked prefill: tokens one forward pass takes (None: no bound)
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._submitted = 0  # sequences put in the inbox and not yet drained into the scheduler
        self._submit_lock = threading.Lock()

    def submit(self, submission: Submission) -> str:
        """Queue a request (thread-safe). Returns its id. Raises EngineOverloaded when the queue is full."""
        request_id = submission.request_id or f"req-{uuid.uuid4().hex}"
        params = submission.params
        base_seed = params.seed if params.seed is not None else random.randrange(2**62)
        submitted_at = time.perf_counter()
        sequences = [
            Sequence(
                request_id=request_id,
                index=i,
                prompt_ids=list(submission.prompt_ids),
                params=params,
                matcher=submission.grammar.matcher() if submission.grammar is not None else None,
                generator=torch.Generator().manual_seed(base_seed + i),
                device=self.loaded.device,
                detokenizer=IncrementalDetokenizer(self.token_bytes),
                eos_token_ids=self.eos_token_ids,
                fast_forward=self.fast_forward and submission.grammar is not None and not params.logprobs,
                submitted_at=submitted_at,
            )
            for i in range(params.n)
        ]
        scheduler = self.scheduler
        with self._submit_lock:  # what waits is what the batch's free slots cannot take
            free = scheduler.max_batch_size - len(scheduler.running)
            if len(scheduler.waiting) + self._submitted + params.n - free > scheduler.max_waiting:
                self.stats.rejected += 1
                raise EngineOverloaded(f"the engine queue is full ({scheduler.max_waiting} waiting beyond the batch)")
            self._submitted += params.n
            self._inbox.put(("add", sequences))
        return request_id

    def abort(self, request_id: str) -> None:
        """Stop a request at the next step (thread-safe); its slots are freed then."""
        self._inbox.put(("abort", request_id))

    def occupancy(self) -> tuple[int, int, int]:
        """(sequences waiting, sequences running, KV-cache columns in use: the running rows' tokens), read
        from any thread without locking (a monitoring snapshot, possibly mid-step)."""
        running = list(self.scheduler.running)
        return len(self.scheduler.waiting) + self._submitted, len(running), sum(seq.fed for seq in running)

    def has_work(self) -> bool:
        return self.scheduler.has_work() or not self._inbox.empty()

    def reset(self) -> None:
        """Drop every request and the KV cache (after a failed step left them inconsistent)."""
        self._drain_inbox()
        self.scheduler.waiting.clear()
        self.scheduler.running.clear()
        self.cache = self.runner.new_cache()

    @torch.inference_mode()
    def step(self) -> list[SequenceOutput]:
        """drain -> admit -> plan -> forward -> sample -> advance -> retire: one batched forward pass and one
        token per running sequence; returns every sequence's output of this step."""
        outputs = self._drain_inbox()
        outputs += self._admit()
        batch = self.scheduler.running
        if not batch:
            return outputs
        inputs = self._inputs(batch)
        plan = plan_groups([len(tokens) for tokens in inputs])
        if len(plan.groups) > 1:  # rows that attend together sit together in the cache
            batch = self.scheduler.reorder(plan.order)
            self.cache.keep_rows(plan.order)
            inputs = [inputs[row] for row in plan.order]
        logits = self.runner.forward(self.cache, inputs, plan.groups)
        if self.prefix_cache is not None:
            self._remember_prompt_blocks(batch)
        ready = [row for row, seq in enumerate(batch) if seq.all_fed]  # not those midway through their prompt
        if len(ready) < len(batch):
            logits, batch = logits[ready], [batch[row] for row in ready]
        if batch:
            outputs += self._advance(batch, self.sampler.sample(logits, batch))
        self.cache.keep_rows(self.scheduler.retire_finished())
        return outputs

    def _inputs(self, batch: list[Sequence]) -> list[list[int]]:
        """Each row's tokens for this step. With `max_step_tokens` (chunked prefill), decoding rows take theirs and
        prompts share what is left, first come first served, at least one token each: a long prompt joins in
        chunks while the other rows keep their pace."""
        if self.max_step_tokens is None:
            return [seq.take_input() for seq in batch]
        left = self.max_step_tokens - sum(len(seq.prompt_ids) + len(seq.output_ids) - seq.fed
                                          for seq in batch if not seq.prefilling)
        inputs = []
        for seq in batch:
            if seq.prefilling:
                inputs.append(seq.take_input(max(left, 1)))
                left -= len(inputs[-1])
            else:
                inputs.append(seq.take_input())
        return inputs

    def _admit(self) -> list[SequenceOutput]:
        """Newcomers join the batch, each with the run its constraint forces first (it joins the prompt's
        forward pass); one forced to its end leaves at once. The cache grows rows for the batch."""
        outputs = []
        now = time.perf_counter()
        newcomers = self.scheduler.admit()
        for seq in newcomers:
            self.stats.queue_wait_seconds.observe(now - seq.submitted_at)
            forced = seq.forced_run()
            self.stats.tokens_forced += len(forced.token_ids)
            if forced.token_ids or forced.finish_reason is not None:
                outputs.append(forced)
        self.scheduler.retire_finished()
        running = len(self.scheduler.running)
        if running > self.cache.num_rows:
            self.cache.add_rows(running - self.cache.num_rows)
        if self.prefix_cache is not None and newcomers:
            self._load_cached_prefixes(newcomers)
        return outputs

    def _load_cached_prefixes(self, newcomers: list[Sequence]) -> None:
        """Newcomers whose prompt starts with cached blocks get them in their cache row, and skip them."""
        joined = {id(seq) for seq in newcomers}
        for row, seq in enumerate(self.scheduler.running):
            if id(seq) in joined:
                blocks = self.prefix_cache.lookup(seq.prompt_ids)
                if blocks:
                    self.cache.load_prefix(row, blocks)
                    seq.fed = seq.prompt_blocks_cached = len(blocks) * self.prefix_cache.block_tokens

    def _remember_prompt_blocks(self, batch: list[Sequence]) -> None:
        """Put the prompt blocks this step completed in the prefix cache."""
        size = self.prefix_cache.block_tokens
        for row, seq in enumerate(batch):
            done = min(seq.fed, len(seq.prompt_ids)) // size * size  # prompt tokens in full blocks, computed
            if done > seq.prompt_blocks_cached:
                keys = self.prefix_cache.keys(seq.prompt_ids[:done])
                for block in range(seq.prompt_blocks_cached // size, done // size):
                    if keys[block] not in self.prefix_cache:
                        start = block * size
                        self.prefix_cache.insert(keys[block], self.cache.read_columns(row, start, start + size))
                seq.prompt_blocks_cached = done

    def _advance(self, batch: list[Sequence], sampled: list[SampledToken]) -> list[SequenceOutput]:
        """Each sequence takes its sampled token, then (fast-forward) the tokens its constraint forces after it."""
        outputs = [seq.append(token) for seq, token in zip(batch, sampled)]
        self.stats.tokens_sampled += len(sampled)
        self.stats.tokens_forced += sum(max(len(out.token_ids) - 1, 0) for out in outputs)
        return outputs

    def _drain_inbox(self) -> list[SequenceOutput]:
        outputs = []
        while not self._inbox.empty():
            command, payload = self._inbox.get()
            if command == "add":
                self.scheduler.add(payload)
                with self._submit_lock:
                    self._submitted -= len(payload)
                continue
            removed = self.scheduler.remove(payload)
            self.stats.aborted_requests += bool(removed)
            for seq in removed:
                outputs.append(seq.abort())
            self.cache.keep_rows(self.scheduler.retire_finished())
        return outputs
