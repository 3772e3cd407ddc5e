"""Generated text -> (reasoning, answer): the Qwen3-style `<think>...</think>` block split off the answer.

The grammar that makes the model write the block is constrained/compiler/reasoning_grammar.py; the tags
are spelled here, for both.
"""

from __future__ import annotations

from constrained.text_tail import partial_suffix

OPEN, CLOSE = "<think>", "</think>"


class ReasoningSplitter:
    """Generated text -> (reasoning, answer) deltas, fed piece by piece (a stream) or at once.

    Drops the tags and the newlines around the thoughts and before the answer, exactly as the template
    writes them back (`<think>\\nthoughts\\n</think>\\n\\nanswer`); holds back what may still turn out to be
    a tag or such a newline, so the concatenated deltas are the same however the text was cut.
    """

    def __init__(self) -> None:
        self._pending = ""
        self._state = "open"  # "open": before `<think>`; "think"; "answer"
        self._thinking_started = False
        self._answer_started = False

    def feed(self, text: str) -> tuple[str, str]:
        """(reasoning delta, answer delta) for the next piece of generated text."""
        self._pending += text
        reasoning = answer = ""
        if self._state == "open":
            if OPEN.startswith(self._pending):
                return "", ""  # not decided yet
            if self._pending.startswith(OPEN):
                self._pending, self._state = self._pending[len(OPEN):], "think"
            else:
                self._state = "answer"
        if self._state == "think":
            end = self._pending.find(CLOSE)
            if end >= 0:
                reasoning = self._pending[:end].rstrip("\n")
                self._pending, self._state = self._pending[end + len(CLOSE):], "answer"
            else:
                body = self._pending[:len(self._pending) - partial_suffix(self._pending, CLOSE)].rstrip("\n")
                reasoning, self._pending = body, self._pending[len(body):]
            reasoning = self._start(reasoning, "_thinking_started")
        if self._state == "answer":
            answer, self._pending = self._start(self._pending, "_answer_started"), ""
        return reasoning, answer

    def finish(self) -> tuple[str, str]:
        """What is still held back, once the text is complete (cut short inside the think block, say)."""
        rest, self._pending = self._pending, ""
        if self._state != "think":
            return "", rest
        return self._start(rest.rstrip("\n"), "_thinking_started"), ""

    def _start(self, text: str, flag: str) -> str:
        """Leading newlines are dropped until the part (thoughts or answer) has begun."""
        if not getattr(self, flag):
            text = text.lstrip("\n") if flag == "_thinking_started" else text.lstrip()
            setattr(self, flag, bool(text))
        return text
