"""Generated text -> content and tool calls, piece by piece: text before the first `<tool_call>` is content
(less the whitespace leading up to the tag), each
`<tool_call>\\n{"name": "NAME", "arguments": ARGUMENTS}\\n</tool_call>` block one call.

The tool-call grammar (constrained/compiler/backends/tool_grammar.py) fixes that layout ("name" first,
", " and ": " separators), so the name is known as soon as its closing quote arrives and the arguments
can leave as they are generated. `ToolCallParser` serves streams and whole texts alike, so a streamed
call's concatenated fragments are exactly the arguments of the same call in a whole response. A call
cut short (by max_tokens) keeps what was generated of it: `unfinished`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from constrained.text_tail import partial_suffix

# The layout, spelled here only: OPEN TAG_PAD {"name": "NAME", "arguments": ARGUMENTS} TAG_PAD CLOSE, blocks
# joined by CALL_SEPARATOR. The grammar (tool_grammar.py) and the prompts (`call_block`) write it from these.
OPEN, CLOSE = "<tool_call>", "</tool_call>"
TAG_PAD = "\n"  # between each tag and the call object
CALL_SEPARATOR = "\n"  # between one call's block and the next
CALL_END = "}"  # closes the call object after its arguments
_NAME_KEY = '{"name": '
_ARGUMENTS = ', "arguments": '
_NAME = re.compile(r"\s*" + re.escape(_NAME_KEY) + r'("[^"\\]*")')
_END = CALL_END + TAG_PAD + CLOSE  # closes the call object, then the block


@dataclass(frozen=True)
class ParsedCall:
    name: str
    arguments: str  # the arguments object as a JSON string, as generated


@dataclass(frozen=True)
class CallDelta:
    """A piece of call number `index`: the first names the function, the others carry argument text."""

    index: int
    name: str | None = None
    arguments: str = ""


class ToolCallParser:
    """Feed generated text; get content and call deltas. `calls` holds the calls whose block is closed
    (an unclosed one is a call cut short by max_tokens)."""

    def __init__(self) -> None:
        self.calls: list[ParsedCall] = []
        self.unfinished: ParsedCall | None = None  # set by `finish` when the text ends inside a named call
        self._pending = ""
        self._state = "text"  # "text" -> "name" -> "keys" -> "arguments" -> "text" ...
        self._name = ""
        self._arguments: list[str] = []

    def feed(self, text: str) -> tuple[str, list[CallDelta]]:
        """(content, deltas) for the next piece of text; what may still be a tag is held back."""
        self._pending += text
        content, deltas = "", []
        while True:
            before = (self._state, len(self._pending))
            if self._state == "text":
                content += self._text()
            elif self._state == "name":
                deltas += self._call_name()
            elif self._state == "keys":
                self._keys()
            else:
                deltas += self._argument_text()
            if (self._state, len(self._pending)) == before:
                return content, [d for d in deltas if d.name is not None or d.arguments]

    def finish(self) -> tuple[str, list[CallDelta]]:
        """(content, deltas) still held back once the text is complete. A call whose name was complete
        but whose block never closed becomes `unfinished`, its last argument text a delta."""
        rest, self._pending = self._pending, ""
        if self._state == "text":
            return rest, []
        if self._state in ("keys", "arguments"):
            arguments = "".join(self._arguments) + rest if self._state == "arguments" else ""
            self.unfinished = ParsedCall(self._name, arguments)
            if self._state == "arguments" and rest:
                return "", [CallDelta(len(self.calls), arguments=rest)]
        return "", []

    def _text(self) -> str:
        if self.calls:  # only the "\n" between calls follows the first one
            self._pending = self._pending.lstrip(CALL_SEPARATOR)
        start = self._pending.find(OPEN)
        if start >= 0:
            content, self._pending, self._state = self._pending[:start], self._pending[start + len(OPEN):], "name"
            return content.rstrip()
        # held back: what may begin the tag, and the whitespace before it (dropped if a call follows)
        keep = len(self._pending[:len(self._pending) - partial_suffix(self._pending, OPEN)].rstrip())
        content, self._pending = self._pending[:keep], self._pending[keep:]
        return content

    def _call_name(self) -> list[CallDelta]:
        match = _NAME.match(self._pending)
        if match is None:
            return []
        self._name, self._pending, self._state = json.loads(match[1]), self._pending[match.end():], "keys"
        return [CallDelta(len(self.calls), name=self._name)]

    def _keys(self) -> None:
        if self._pending.startswith(_ARGUMENTS):
            self._pending, self._state, self._arguments = self._pending[len(_ARGUMENTS):], "arguments", []

    def _argument_text(self) -> list[CallDelta]:
        """Arguments as far as they are sure not to be the call's end; the call once its block closes."""
        end = self._pending.find(_END)
        if end >= 0:
            fragment, self._pending, self._state = self._pending[:end], self._pending[end + len(_END):], "text"
            self._arguments.append(fragment)
            self.calls.append(ParsedCall(self._name, "".join(self._arguments)))
            return [CallDelta(len(self.calls) - 1, arguments=fragment)]
        keep = len(self._pending) - partial_suffix(self._pending, _END)
        fragment, self._pending = self._pending[:keep], self._pending[keep:]
        self._arguments.append(fragment)
        return [CallDelta(len(self.calls), arguments=fragment)]


def call_prefix(name: str) -> str:
    """The call object up to its arguments, as the grammar writes it: `{"name": "NAME", "arguments": `."""
    return f"{_NAME_KEY}{json.dumps(name)}{_ARGUMENTS}"


def call_block(name: str, arguments: str) -> str:
    """One call as the grammar writes it (what `ToolCallParser` reads back); `arguments` a JSON string."""
    return f"{OPEN}{TAG_PAD}{call_prefix(name)}{arguments}{_END}"


def parse_tool_calls(text: str) -> tuple[str, list[ParsedCall]]:
    """(content, calls) of a whole text; a block that is not closed is left out (cut by max_tokens)."""
    parser = ToolCallParser()
    content, _ = parser.feed(text)
    return content + parser.finish()[0], parser.calls
