"""Tool calling on SmolLM2, whose chat template knows nothing of tools and whose vocabulary has no
`<tool_call>` token: the tools are written into the system message, the tags are generated as text,
and every call is still constrained (real weights but slow on a CPU: one generation)."""

from __future__ import annotations

import httpx2
import openai
import pytest

from api.prompt import render_prompt
from api.protocol.chat import ChatCompletionRequest
from constrained.constraints import Constraint
from constrained.testing import validation_errors

MODEL = "smollm2-135m-instruct"
ADD = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
       "required": ["a", "b"], "additionalProperties": False}
TOOLS = [{"type": "function", "function": {"name": "add", "description": "Add two integers", "parameters": ADD}}]
USER = [{"role": "user", "content": "What is 2 plus 3? Use the add tool."}]

pytestmark = pytest.mark.slow  # real weights (SmolLM2 135M); test_api_tools.py covers tools in the fast tier


@pytest.fixture(scope="module")
def smollm2():
    from constrained.models import load_model

    return load_model(MODEL, device="cpu")


@pytest.fixture(scope="module")
def client(smollm2):
    from api.app import create_app
    from constrained.engine.async_engine import AsyncEngine

    engine = AsyncEngine(smollm2, max_batch_size=8)
    engine.start()
    app = create_app(engine, model_name=MODEL)
    app.state.ready = True  # no warm-up needed to answer
    yield openai.AsyncOpenAI(api_key="unused", base_url="http://testserver/v1", max_retries=0,
                             http_client=httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app)))
    engine.shutdown()


def test_tools_and_history_are_written_into_the_turns(smollm2):
    call = {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'}}
    messages = [*USER, {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call_1", "content": "5"}]
    request = ChatCompletionRequest.model_validate({"model": MODEL, "messages": messages, "tools": TOOLS})
    prompt = smollm2.tokenizer.decode(render_prompt(smollm2.tokenizer, request.messages, TOOLS))
    assert '<tools>\n{"type": "function", "function": {"name": "add"' in prompt
    assert '<|im_start|>assistant\n<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>' in prompt
    assert "<|im_start|>user\n<tool_response>\n5\n</tool_response><|im_end|>" in prompt
    plain = ChatCompletionRequest.model_validate({"model": MODEL, "messages": USER})
    assert "<tools>" not in smollm2.tokenizer.decode(render_prompt(smollm2.tokenizer, plain.messages))


def test_auto_text_never_spells_an_unconstrained_call(smollm2):
    """The tags are text here: free text may not contain `<tool_call>`, and once it does, the call is JSON."""
    from constrained.compiler import Compiler

    compiler = Compiler(smollm2.tokenizer, vocab_rows=smollm2.vocab_rows, eos_token_ids=smollm2.eos_token_ids)
    grammar = compiler.compile(Constraint.tool_calls([("add", ADD)], mode="auto"))
    encode = smollm2.tokenizer.encode
    call = 'Sure. <tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>'
    for text, valid in [(call, True), ("Just text, a < b.", True), ("Sure. <tool_call>\nnot json", False)]:
        matcher, ids = grammar.matcher(), encode(text, add_special_tokens=False) + [smollm2.eos_token_ids[0]]
        assert (matcher.validate_tokens(ids) == len(ids)) is valid, text


async def test_stream_helper_accumulates_calls(client):
    """One real request (SmolLM2 is slow on a CPU): the tags come as text, the call is streamed and valid."""
    async with client.chat.completions.stream(model=MODEL, messages=USER, tools=TOOLS, tool_choice="required",
                                              parallel_tool_calls=False, max_tokens=40, seed=1) as stream:
        final = (await stream.get_final_completion()).choices[0]
    assert final.finish_reason == "tool_calls" and len(final.message.tool_calls) == 1 and not final.message.content
    assert validation_errors(ADD, final.message.tool_calls[0].function.arguments) == []
