"""Generated text -> reasoning, content and tool calls, for whole responses and streams alike."""

from __future__ import annotations

from dataclasses import dataclass, field

from constrained.reasoning_text import ReasoningSplitter
from constrained.tool_calls import CallDelta, ParsedCall, ToolCallParser


@dataclass
class AnswerPiece:
    """What one piece of generated text adds to each part of the answer."""

    reasoning: str = ""
    content: str = ""
    calls: list[CallDelta] = field(default_factory=list)


class AnswerParser:
    """Splits off the think block (when the model reasons), then the tool calls (when tools are on)
    from the content. Feed the text as it comes; `final=True` on the last piece releases what was held."""

    def __init__(self, *, reasoning: bool, tools: bool):
        self._reasoning = ReasoningSplitter() if reasoning else None
        self._tools = ToolCallParser() if tools else None

    @property
    def calls(self) -> list[ParsedCall]:
        """The calls complete so far."""
        return self._tools.calls if self._tools is not None else []

    @property
    def unfinished_call(self) -> ParsedCall | None:
        """The call the text ended inside (cut by max_tokens), once the last piece was fed."""
        return self._tools.unfinished if self._tools is not None else None

    def feed(self, text: str, *, final: bool = False) -> AnswerPiece:
        piece = AnswerPiece(content=text)
        if self._reasoning is not None:
            piece.reasoning, piece.content = self._reasoning.feed(text)
            if final:
                reasoning, content = self._reasoning.finish()
                piece.reasoning, piece.content = piece.reasoning + reasoning, piece.content + content
        if self._tools is not None:
            piece.content, piece.calls = self._tools.feed(piece.content)
            if final:
                content, calls = self._tools.finish()
                piece.content += content
                piece.calls += calls
        return piece
