"""The one path from any endpoint to the engine and back.

Chat completions, the Responses API and completions differ in the shape of what they accept and return,
not in how they reach the engine: each turns its request into an `EngineRequest` (prompt ids, sampling
params, one constraint and the request field it came from), prepared off the event loop (`prepare`), and
`Pipeline` checks the model name and the context budget, runs it, maps every library error to the field
that caused it, and hands back the engine's outputs, whole (`collect`) or as they come (`start`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import TypeVar

from api.errors import APIError, to_api_error
from api.logprobs import LogprobFormatter
from api.metrics import note_constraint, note_output, note_output_check
from api.prompt import render_prompt
from api.protocol.base import ModelCard
from api.protocol.chat import ChatMessage
from api.request_ids import claim_request_id
from constrained.answer import AnswerParser
from constrained.compiler.reasoning_grammar import THINKING_BUDGETS, think_token_ids, thinking_budget
from constrained.constraints import Constraint
from constrained.engine.async_engine import AsyncEngine
from constrained.engine.params import SamplingParams
from constrained.engine.sampler import SampledToken
from constrained.engine.sequence import FinishReason, SequenceOutput
from constrained.errors import ConstrainedError, InvalidConstraint
from constrained.output_check import OutputCheck

log = logging.getLogger(__name__)
Body = TypeVar("Body")
Prepared = TypeVar("Prepared")

DEFAULT_MAX_TOKENS = 4096  # when the request sets no limit: the rest of the context, at most this


@dataclass(frozen=True)
class EngineRequest:
    """What the engine needs for one request, and what its errors and answers need to know.

    `constraint_param` is the request field the constraint came from ("response_format",
    "structured_outputs", "text.format", ...): errors name it. `tools_param` names the tools field
    when calls may be made. `reasoning`: a think block comes first.
    """

    request_id: str
    prompt_ids: list[int]
    params: SamplingParams
    constraint: Constraint | None
    constraint_param: str | None = None
    schema_name: str | None = None
    tools_param: str | None = None
    reasoning: bool = False

    def parser(self) -> AnswerParser:
        """Splits one choice's text into reasoning, content and calls."""
        return AnswerParser(reasoning=self.reasoning, tools=self.tools_param is not None)

    def error(self, exc: ConstrainedError) -> APIError:
        """The client's error for `exc`, naming the field whose constraint failed: a tool's parameters, a
        schema (in OpenAI's wording), or another constraint."""
        if isinstance(exc, InvalidConstraint):
            if self.tools_param is not None and (exc.tool is not None or self.constraint_param is None):
                return APIError(400, f"Invalid tools: {str(exc).splitlines()[0]}", param=self.tools_param)
            answer = self.constraint.answer if self.constraint is not None else None
            if answer is not None and answer.kind not in ("json_schema", "tool_calls"):
                return APIError(400, f"Invalid '{self.constraint_param}': {exc}", param=self.constraint_param)
        return to_api_error(exc, constraint_param=self.constraint_param or "response_format",
                            schema_name=self.schema_name)


@dataclass
class CollectedChoice:
    """One choice of a request, gathered from the engine's outputs."""

    index: int
    text: str = ""
    sampled: list[SampledToken] = field(default_factory=list)  # with logprobs, one per sampled token
    finish_reason: str | None = None
    completion_tokens: int = 0


class Pipeline:
    """Serves one loaded model under `model_name` (and aliases: the engine's model name, path basenames).

    `reasoning_effort` applies to requests that do not set one ("none": answer at once, no think block).
    """

    def __init__(self, engine: AsyncEngine, *, model_name: str, reasoning_effort: str = "none"):
        self.engine = engine
        self.model_name = model_name
        loaded = engine.loaded
        self.tokenizer = loaded.tokenizer
        self.can_reason = think_token_ids(loaded.tokenizer) is not None
        if reasoning_effort not in THINKING_BUDGETS:
            raise ValueError(f"reasoning_effort {reasoning_effort!r} is not one of {', '.join(THINKING_BUDGETS)}")
        if thinking_budget(reasoning_effort) and not self.can_reason:
            raise ValueError(f"model '{model_name}' has no <think> tokens: it cannot reason "
                             f"(reasoning_effort {reasoning_effort!r})")
        self.reasoning_effort = reasoning_effort
        names = {model_name, loaded.name}
        self.accepted_names = names | {Path(name).name for name in names}
        self.context_length: int | None = getattr(loaded.model.config, "max_position_embeddings", None)
        config = f"{model_name}|{version('constrained')}|{loaded.dtype}|{loaded.device}"
        self.fingerprint = "fp_" + hashlib.sha256(config.encode()).hexdigest()[:10]
        self.logprobs = LogprobFormatter(loaded.tokenizer, engine.engine.token_bytes)
        self.output_check = OutputCheck()

    async def prepare(self, build: Callable[["Pipeline", Body], Prepared], body: Body) -> Prepared:
        """`build(self, body)` in a worker thread: templating and tokenising a huge prompt (and a big schema's
        canonical key) must not stall the event loop, which serves every other request and /health."""
        return await asyncio.to_thread(build, self, body)

    def model_card(self, name: str) -> ModelCard:
        """The card of a served model name; 404 model_not_found otherwise."""
        if name not in self.accepted_names:
            raise APIError(404, f"The model `{name}` does not exist. This server serves `{self.model_name}`.",
                           param="model", code="model_not_found")
        return ModelCard(id=self.model_name)

    def thinking_budget(self, effort: str | None, *, param: str) -> int:
        """Think-block tokens for a requested effort (None: the server's default); 400 if the model cannot."""
        budget = thinking_budget(effort or self.reasoning_effort)
        if budget and not self.can_reason:
            raise APIError(400, f"The model `{self.model_name}` does not reason: its vocabulary has no <think> "
                                f"tokens. Send '{param}': 'none' or leave it out.", param=param)
        return budget

    def render(self, messages: list[ChatMessage], tools: list[dict] | None, *, budget: int) -> list[int]:
        """Prompt ids of a conversation through the model's chat template (thinking on iff `budget`)."""
        return render_prompt(self.tokenizer, messages, tools, thinking=bool(budget) if self.can_reason else None)

    def max_tokens(self, prompt_ids: list[int], asked: int | None, *, default: int = DEFAULT_MAX_TOKENS,
                   prompt_param: str = "messages") -> int:
        """The completion budget: `asked`, or the rest of the context up to `default`; 400 past the context
        (naming the prompt's field, as OpenAI does)."""
        if self.context_length is None:
            return default if asked is None else asked
        room = self.context_length - len(prompt_ids)
        if room < 1 or (asked is not None and asked > room):
            total = len(prompt_ids) + (asked or 0)
            raise APIError(400, f"This model's maximum context length is {self.context_length} tokens. However, "
                                f"you requested {total} tokens ({len(prompt_ids)} in the {prompt_param}, {asked or 0} "
                                f"in the completion). Please reduce the length of the {prompt_param} or completion.",
                           param=prompt_param, code="context_length_exceeded")
        return min(default, room) if asked is None else asked

    def request(self, prompt_ids: list[int], params: SamplingParams, constraint: Constraint | None, *,
                request_id: str, budget: int = 0, constraint_param: str | None = None, schema_name: str | None = None,
                tools_param: str | None = None) -> EngineRequest:
        """An EngineRequest, the constraint wrapped in a think block of `budget` tokens when there is one."""
        note_constraint(constraint)
        if budget:
            constraint = Constraint.reasoning(constraint, budget=budget)
        request = EngineRequest(request_id, prompt_ids, params, constraint, constraint_param, schema_name,
                                tools_param, reasoning=bool(budget))
        claim_request_id(request_id)
        kind = constraint.kind if constraint else "free text"
        log.info("%s: %d prompt tokens, n=%d, max_tokens=%d, %s", request_id, len(prompt_ids), params.n,
                 params.max_tokens, kind)
        return request

    async def outputs(self, request: EngineRequest) -> AsyncGenerator[SequenceOutput, None]:
        """The engine's outputs; closing this aborts the request. Errors name the field that caused them."""
        outputs = self.engine.generate(request.prompt_ids, request.params, request.constraint,
                                       request_id=request.request_id)
        checked = OutputCheck.applies(request.constraint)
        texts: dict[int, str] = {}
        try:
            async with aclosing(outputs):
                async for out in outputs:
                    note_output(out)
                    if checked:
                        texts[out.index] = texts.get(out.index, "") + out.text
                        if out.finish_reason is FinishReason.STOP:
                            self._check(request, texts.pop(out.index))
                    yield out
        except ConstrainedError as exc:
            raise request.error(exc) from exc

    def _check(self, request: EngineRequest, text: str) -> None:
        """The last line of defence (constrained/output_check.py): a finished choice that does not match its
        constraint is never returned; 500 constraint_failed instead, logged with the constraint's hash."""
        start = time.perf_counter()
        errors = self.output_check.errors(request.constraint, text, reasoning=request.reasoning,
                                          tools=request.tools_param is not None)
        note_output_check(bool(errors), time.perf_counter() - start)
        if errors:
            log.error("%s: an output failed its own constraint %s and was withheld: %s", request.request_id,
                      request.constraint.key[:16], "; ".join(errors[:3]))
            raise APIError(500, "The generated output failed validation against its constraint, so it was withheld. "
                                "This is a bug in the server: please report it.", type="server_error",
                           code="constraint_failed")

    async def collect(self, request: EngineRequest) -> list[CollectedChoice]:
        """Every choice, finished."""
        start = time.perf_counter()
        choices = [CollectedChoice(i) for i in range(request.params.n)]
        async with aclosing(self.outputs(request)) as outputs:
            async for out in outputs:
                choice = choices[out.index]
                choice.text += out.text
                choice.sampled += out.logprobs
                choice.completion_tokens = out.completion_tokens
                if out.finish_reason is not None:
                    choice.finish_reason = out.finish_reason.value
        log.info("%s: done in %.2f s, %d completion tokens, finish %s", request.request_id,
                 time.perf_counter() - start, sum(c.completion_tokens for c in choices),
                 [c.finish_reason for c in choices])
        return choices

    async def start(self, request: EngineRequest) -> tuple[SequenceOutput, AsyncGenerator[SequenceOutput, None]]:
        """The first output and the rest, for a stream: errors before the first output are still HTTP errors."""
        outputs = self.outputs(request)
        try:
            return await anext(outputs), outputs
        except BaseException:
            await outputs.aclose()
            raise

    async def warm_up(self) -> None:
        """Every grammar backend built, then one short constrained generation and one of two tokens, so the
        first clients do not pay for lazy initialisation (the backends' vocabularies, the model's first forward
        pass, which makes the KV storage; with --torch-compile, the compiled steps of a prompt and of a token)."""
        await asyncio.to_thread(self.engine.compiler.build_backends)
        prompt_ids = render_prompt(self.tokenizer, [ChatMessage(role="user", content="hi")])
        await self.collect(EngineRequest("warm-up", prompt_ids, SamplingParams(max_tokens=1), Constraint.json_object()))
        await self.collect(EngineRequest("warm-up-steps", prompt_ids, SamplingParams(max_tokens=2), None))
