"""The engine: continuous batching around a short `step()`.

Each step: admit newcomers -> one packed forward pass for the batch (every row's new tokens side by
side: packed_attention.py) -> logit_bias and penalties -> sample; a constrained row whose token its
matcher forbids draws again (a few unmasked tries, then under its mask: masks.py) -> sequences advance,
with the tokens their constraint forces (fast-forward) -> finished ones leave.
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
from constrained.engine.sampler import (
    SampledToken, Sampler, Truncation, apply_logit_bias_, apply_penalties_, apply_repetition_penalty_, logprobs_of,
    split_uniforms,
)
from constrained.engine.masks import BatchMasks, apply_mask_bias_
from constrained.engine.groups import plan_groups
from constrained.engine.scheduler import Scheduler
from constrained.engine.sequence import Sequence, SequenceOutput
from constrained.engine.stats import EngineStats
from constrained.engine.token_table import token_byte_table
from constrained.errors import EngineOverloaded
from constrained.models import LoadedModel

if TYPE_CHECKING:
    from constrained.compiler import Grammar

# Draws a forbidden row tries from its unmasked distribution before building its mask. Measured on
# tiny-qwen3 with the finishing bias: an open string's allowed mass at a redraw is about 0.72, so 4
# settle 92% of its redraws; a key or number position's is often below 0.05, where they cost 4 tests
# of 2 us before the mask.
CANDIDATES = 4


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
                 fast_forward: bool = True):
        self.loaded = loaded
        self.fast_forward = fast_forward
        self.runner = ModelRunner(loaded)
        self.scheduler = Scheduler(max_batch_size=max_batch_size, max_waiting=max_waiting)
        self.cache = self.runner.new_cache()
        self.token_bytes = token_byte_table(loaded.tokenizer, loaded.vocab_rows)
        self.eos_token_ids = frozenset(loaded.eos_token_ids)
        self.masks = BatchMasks(max_rows=max_batch_size, vocab_rows=loaded.vocab_rows, device=loaded.device)
        self.sampler = Sampler(max_rows=max_batch_size, vocab_rows=loaded.vocab_rows, device=loaded.device)
        self.real_vocab = min(len(loaded.tokenizer), loaded.vocab_rows)
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._submitted = 0  # sequences put in the inbox and not yet drained into the scheduler
        self._submit_lock = threading.Lock()
        self.stats = EngineStats()  # counters for monitoring (api/metrics.py reads them)

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
        """Run one batched forward pass and sampling step; return every sequence's output of this step."""
        outputs = self._drain_inbox()
        stats = self.stats
        now = time.perf_counter()
        for seq in self.scheduler.admit():  # a forced opening joins the prompt's forward pass
            stats.queue_wait_seconds.observe(now - seq.submitted_at)
            forced = seq.forced_run()
            stats.tokens_forced += len(forced.token_ids)
            if forced.token_ids or forced.finish_reason is not None:
                outputs.append(forced)
        self.scheduler.retire_finished()  # a newcomer forced to its end needs no forward pass
        batch = self.scheduler.running
        if len(batch) > self.cache.num_rows:
            self.cache.add_rows(len(batch) - self.cache.num_rows)
        if not batch:
            return outputs
        inputs = [seq.take_input() for seq in batch]
        plan = plan_groups([len(tokens) for tokens in inputs])
        if len(plan.groups) > 1:  # rows that attend together sit together in the cache
            batch = self.scheduler.reorder(plan.order)
            self.cache.keep_rows(plan.order)
            inputs = [inputs[row] for row in plan.order]
        logits = self.runner.forward(self.cache, inputs, plan.groups)
        logits[:, self.real_vocab:] = float("-inf")  # embedding rows past the tokenizer are no tokens
        self._penalize_(logits, batch)
        tokens = self._sample(logits, batch)
        stats.tokens_sampled += len(tokens)
        forced_tokens = 0
        for row, (seq, token) in enumerate(zip(batch, tokens)):
            params = seq.params
            sampled = logprobs_of(logits[row], token, params.top_logprobs) if params.logprobs else SampledToken(token, None)
            output = seq.append(sampled)
            if output.token_ids:  # the sampled token, then those the constraint forced after it
                forced_tokens += len(output.token_ids) - 1
            outputs.append(output)
        stats.tokens_forced += forced_tokens
        self.cache.keep_rows(self.scheduler.retire_finished())
        return outputs

    def _sample(self, logits: torch.Tensor, batch: list[Sequence]) -> list[int]:
        """One token per row from its masked distribution (masks.py). Rows that must draw under their
        mask get it first; the other constrained rows draw unmasked, and those whose matcher forbids
        the token draw again under their mask, with their second uniform."""
        first, second = split_uniforms(torch.cat([seq.draw_uniforms() for seq in batch]))
        constrained = [row for row, seq in enumerate(batch) if seq.matcher is not None]
        temperatures = torch.tensor([seq.params.temperature for seq in batch], device=logits.device)
        cuts = [Truncation(seq.params.top_k, seq.params.top_p, seq.params.min_p) for seq in batch]
        upfront = [row for row in constrained if batch[row].draws_under_mask()]
        if upfront:  # most steps have none: no mask work at all
            self._mask_rows_(logits, batch, upfront)
        tokens = self.sampler.sample(logits, temperatures, cuts, first).tolist()
        redraw = [row for row in constrained
                  if row not in upfront and batch[row].matcher.validate_tokens([tokens[row]]) == 0]
        self.stats.redraws += len(redraw)
        for row, token in self._redraw(logits, batch, redraw, temperatures, second).items():
            tokens[row] = token
        return tokens

    def _redraw(self, logits: torch.Tensor, batch: list[Sequence], rows: list[int], temperatures: torch.Tensor,
                uniforms: torch.Tensor) -> dict[int, int]:
        """Tokens drawn again under the mask for `rows` (no truncation: others drew under it up front). A
        sampling row first tries CANDIDATES more draws from its first distribution and keeps the first
        its matcher allows (rejection sampling: no mask at all); failing that, it draws from the first
        draw's probabilities restricted to its mask (no second softmax: _draw_under_masks). Greedy
        rows, and rows whose allowed mass underflowed, draw from their masked logits."""
        tokens: dict[int, int] = {}
        sampling = [row for row in rows if batch[row].params.temperature > 0]
        if sampling:
            extra = torch.stack([batch[row].draw_uniforms(CANDIDATES) for row in sampling])
            drawn, positive = self.sampler.candidates(torch.tensor(sampling, device=logits.device), extra)
            for row, candidates, possible in zip(sampling, drawn.tolist(), positive.tolist()):
                matcher = batch[row].matcher
                allowed = (token for token, ok in zip(candidates, possible) if ok and matcher.validate_tokens([token]))
                token = next(allowed, None)
                if token is not None:
                    tokens[row] = token
        kept = [row for row in sampling if row not in tokens]
        if kept:
            tokens.update(self._draw_under_masks(batch, kept, uniforms[kept]))
        exact = [row for row in rows if row not in tokens]
        if exact:
            self._mask_rows_(logits, batch, exact)
            index = torch.tensor(exact, device=logits.device)
            drawn = self.sampler.sample(logits, temperatures[index], [Truncation()] * len(exact), uniforms[exact],
                                        rows=index)
            tokens.update(zip(exact, drawn.tolist()))
        return tokens

    def _draw_under_masks(self, batch: list[Sequence], rows: list[int], uniforms: torch.Tensor) -> dict[int, int]:
        """Tokens for `rows` from their first draw's probabilities restricted to their masks: among the
        allowed tokens alone where a mask allows few, else over the vocabulary times the 0/1 mask. Rows
        whose allowed mass underflowed are left out (they draw from their masked logits)."""
        packed = self.masks.fill([batch[row].matcher for row in rows])
        few = self.masks.few_allowed(packed).tolist()
        sparse = [i for i, is_few in enumerate(few) if is_few]
        dense = [i for i, is_few in enumerate(few) if not is_few]
        index = torch.tensor(rows, device=packed.device)
        drawn = torch.zeros(len(rows), dtype=torch.long, device=packed.device)
        trusted = torch.zeros(len(rows), dtype=torch.bool, device=packed.device)
        if sparse:
            owners, allowed = self.masks.allowed_tokens(packed[sparse])
            drawn[sparse], trusted[sparse] = self.sampler.redraw_among(index[sparse], owners, allowed, uniforms[sparse])
        if dense:
            kept = self.masks.kept(packed[dense])
            drawn[dense], trusted[dense] = self.sampler.redraw(index[dense], kept, uniforms[dense])
        return {row: token for row, token, ok in zip(rows, drawn.tolist(), trusted.tolist()) if ok}

    def _mask_rows_(self, logits: torch.Tensor, batch: list[Sequence], rows: list[int]) -> None:
        """Add the masks of `rows` to their logits, in place: -inf on every token their matcher forbids."""
        apply_mask_bias_(logits, self.masks.bias([batch[row].matcher for row in rows]), rows)

    def _penalize_(self, logits: torch.Tensor, batch: list[Sequence]) -> None:
        """logit_bias, then the penalties, in place: with the mask, the distribution each row samples
        from. vLLM's order: the bias, then repetition_penalty (which scales it), then presence and
        frequency."""
        for row, seq in enumerate(batch):
            params = seq.params
            apply_logit_bias_(logits[row], seq.logit_bias)
            if params.repetition_penalty != 1.0:
                apply_repetition_penalty_(logits[row], seq.seen_ids(), params.repetition_penalty)
            if params.has_penalties:
                apply_penalties_(logits[row], seq.output_ids, params.presence_penalty, params.frequency_penalty)

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
