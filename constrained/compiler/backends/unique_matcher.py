"""`uniqueItems` beside the grammar: a matcher that forbids the token completing an item equal to an earlier one.

The grammar's own matcher decides everything else; this one follows the JSON as it is written (where it is, in
the `Track` graph of unique_items.py) and keeps the items of each unique array written so far. A response_format
document starts with the output; a tool call's arguments start after its opening `<tool_call>\\n{"name": "NAME",
"arguments": ` (the layout of constrained/tool_calls.py), each call on its own. Strings are compared by their
spelling: the llguidance options give every string one spelling (no \\u escapes), so equal spellings are equal
strings and the reverse. Items of other kinds are kept as text while open and compared as JSON values once closed.

- A token is refused when, read after the text so far, it closes an item equal to an earlier one (or the key of
  an object item equal to an earlier one's, where objects are compared by a key), or starts a
  `true`/`false`/`null` item used already; in an array of enum strings also when it leaves an item on the way to
  no unused value, or starts an item once every value is used.
- The mask is the grammar's, less the tokens refused. In an array of plain strings: inside an item, those that
  begin with what would complete an earlier one and then its closing quote (found in the vocabulary sorted by
  bytes), and anywhere those holding a whole item (two quotes or more: a few hundred tokens, read one by one where
  the grammar allows them). Inside an item compared as a JSON value, the tokens that may end it are read one by
  one: those closing as many containers as are open in it, or at its own level those holding a quote, `,`, `]` or
  `}` (or starting a literal). In an array of enum strings the grammar allows few tokens: each is read.
Some token always remains (unique_items.py says why), so a mask never ends up empty.
"""

from __future__ import annotations

import bisect
import functools
import json
import re
from typing import NamedTuple, Sequence

import numpy as np
import torch

from constrained.compiler.backends.base import mask_row
from constrained.compiler.unique_items import Track, UniqueRoots
from constrained.matcher import Matcher
from constrained.tool_calls import OPEN, TAG_PAD, call_prefix


class VocabularyBytes:
    """The vocabulary's tokens as bytes, sorted (every token beginning with given bytes, at once), the tokens
    with two quotes or more (those that can hold a whole string), and for items compared as JSON values: how
    many `}` and `]` each token holds, and the tokens that can end or begin a string or literal item."""

    def __init__(self, token_bytes: Sequence[bytes]):
        self.token_bytes = token_bytes
        order = sorted(range(len(token_bytes)), key=token_bytes.__getitem__)
        self._sorted = [token_bytes[i] for i in order]
        self._ids = np.asarray(order, dtype=np.int64)
        self.quoted_twice = np.asarray([i for i, data in enumerate(token_bytes) if data.count(b'"') >= 2],
                                       dtype=np.int64)
        self.closers = np.asarray([data.count(b"}") + data.count(b"]") for data in token_bytes], dtype=np.int32)
        self.item_edges = np.asarray([i for i, data in enumerate(token_bytes)
                                      if _ITEM_EDGE.search(data) or data.lstrip()[:1] in (b"t", b"f", b"n")],
                                     dtype=np.int64)

    def starting_with(self, prefix: bytes) -> np.ndarray:
        """Ids of the tokens whose bytes begin with `prefix` (not empty, its last byte below 0xff)."""
        upper = prefix[:-1] + bytes([prefix[-1] + 1])  # the first bytes past every extension of `prefix`
        return self._ids[bisect.bisect_left(self._sorted, prefix):bisect.bisect_left(self._sorted, upper)]


class _Frame(NamedTuple):
    """An open array or object: where it is, and (an array under uniqueItems) its items so far."""

    is_array: bool
    track: Track | None  # None: nothing below leads to a unique array
    key: bytes | None  # an object's current property name, as spelled (kept only where tracked)
    items: tuple[bytes, ...] | None  # a unique array's items: strings as spelled, other kinds as `_canonical`
    current: bytes | None = None  # items compared as JSON values: the open item's text so far


class _Position(NamedTuple):
    frames: tuple[_Frame, ...]
    mode: int
    text: bytes | None  # the open string so far, where it matters (a tracked name, a unique array's item)


# modes: what the next byte may be
_VALUE, _KEY, _COLON, _AFTER, _STRING, _NAME, _STRING_ESCAPE, _NAME_ESCAPE, _LITERAL, _DONE = range(10)
_QUOTE_OR_BACKSLASH = re.compile(rb'["\\]')
_ITEM_EDGE = re.compile(rb'["\],}]')
_SPACE = frozenset(b" \t\n\r")
_LITERAL_END = frozenset(b",]} \t\n\r")
_CLOSING = {(_VALUE, 0x5D), (_KEY, 0x7D), (_AFTER, 0x5D), (_AFTER, 0x7D)}  # "[]", "{}", and after an item


_START = _Position((), _VALUE, None)


def advance(position: _Position, data: bytes, root: Track) -> tuple[_Position, int] | None:
    """The position after `data`, and how many bytes it read (fewer where the document ends); None when `data`
    ends an item equal to an earlier one of its array, starts a `true`/`false`/`null` item used already, or
    dead-ends an enum item. Bytes that are not JSON leave some position (the grammar refuses such a token)."""
    frames, mode, text = position
    i, n = 0, len(data)
    while i < n and mode != _DONE:
        begin = i
        if mode in (_STRING, _NAME):
            found = _QUOTE_OR_BACKSLASH.search(data, i)
            end = n if found is None else found.start()
            if text is not None:
                text += data[i:end]
            if found is None:
                frames = _fed(frames, data[begin:n])
                i = n
                break
            i = end + 1
            if data[end] == 0x5C:  # a backslash: the next byte belongs to the string whatever it is
                if text is not None:
                    text += b"\\"
                mode = _STRING_ESCAPE if mode == _STRING else _NAME_ESCAPE
            elif mode == _NAME:
                frames = _with_top(frames, key=text)
                mode, text = _COLON, None
            else:
                if text is not None:  # an item of an array of strings, or the key of an object item
                    at = -1 if frames[-1].is_array else -2
                    value = text if at == -1 else b'{"' + text + b'"'  # a key: never equal to an item's text
                    if value in frames[at].items:
                        return None
                    frames = _with_frame(frames, at, items=frames[at].items + (value,))
                mode, text = _after(frames), None
        else:
            byte = data[i]
            i += 1
            if mode in (_STRING_ESCAPE, _NAME_ESCAPE):
                if text is not None:
                    text += bytes((byte,))
                mode = _STRING if mode == _STRING_ESCAPE else _NAME
            elif byte in _SPACE and mode != _LITERAL:
                continue
            elif mode == _LITERAL:
                if byte in _LITERAL_END:
                    mode = _after(frames)
                    i -= 1  # the delimiter is read again after the value
            elif (mode, byte) in _CLOSING:
                frames = frames[:-1]
                mode = _after(frames)
            elif mode == _VALUE:
                top = frames[-1] if frames else None
                if top is not None and top.track is not None and top.track.general and top.items is not None:
                    if _LITERALS.get(byte) in top.items:
                        return None
                    frames = _with_top(frames, current=b"")
                frames, mode, text = _start_value(frames, byte, root)
            elif mode == _KEY and byte == 0x22:
                mode, text = _NAME, (b"" if frames and (frames[-1].track is not None or _keyed(frames)) else None)
            elif mode == _COLON and byte == 0x3A:
                mode = _VALUE
            elif mode == _AFTER and byte == 0x2C and frames:
                mode = _VALUE if frames[-1].is_array else _KEY
        frames = _fed(frames, data[begin:i])
        if mode == _AFTER and frames[-1].current is not None:  # an item compared as a JSON value ends
            top = frames[-1]
            if top.track.key is not None and top.current[:1] == b"{":  # an object: compared by its key already
                frames = _with_top(frames, current=None)
                continue
            value = _canonical(top.current)
            if value in top.items:
                return None
            frames = _with_top(frames, items=top.items + (value,), current=None)
    return (_Position(frames, mode, text), i) if _viable(frames, mode, text) else None


def _fed(frames: tuple[_Frame, ...], data: bytes) -> tuple[_Frame, ...]:
    """`frames` with `data` added to each open item compared as a JSON value."""
    if not data or all(frame.current is None for frame in frames):
        return frames
    return tuple(frame if frame.current is None else frame._replace(current=frame.current + data) for frame in frames)


def _canonical(text: bytes) -> bytes:
    """One text for each JSON value: keys sorted, integral numbers as integers (1.0 == 1, as jsonschema has it)."""
    try:
        value = json.loads(text)
    except ValueError:  # not JSON: the grammar refuses it anyway
        return text
    return json.dumps(_integral(value), sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def _integral(value: object) -> object:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_integral(item) for item in value]
    if isinstance(value, dict):
        return {key: _integral(item) for key, item in value.items()}
    return value


_LITERALS = {ord(text[:1]): _canonical(text) for text in (b"true", b"false", b"null")}  # by first byte


def _viable(frames: tuple[_Frame, ...], mode: int, text: bytes | None) -> bool:
    """In an array of enum strings: an open item is on the way to an unused value; no item is expected once
    every value is used."""
    if not frames or frames[-1].items is None or frames[-1].track.spellings is None:
        return True
    unused = frames[-1].track.spellings.difference(frames[-1].items)
    if mode in (_STRING, _STRING_ESCAPE):
        return any(value.startswith(text) for value in unused)
    return mode != _VALUE or bool(unused)


def _start_value(frames: tuple[_Frame, ...], byte: int, root: Track) -> tuple[tuple[_Frame, ...], int, bytes | None]:
    if not frames:
        track = root
    elif frames[-1].is_array:
        track = frames[-1].track.items if frames[-1].track is not None else None
    else:
        top = frames[-1]
        track = _property(top.track, top.key) if top.track is not None and top.key is not None else None
    if byte == 0x7B:
        return frames + (_Frame(False, track, None, None),), _KEY, None
    if byte == 0x5B:
        unique = track is not None and track.unique
        return frames + (_Frame(True, track, None, () if unique else None),), _VALUE, None
    if byte == 0x22:
        strings = frames and frames[-1].items is not None and not frames[-1].track.general
        key = _keyed(frames) and frames[-1].key == frames[-2].track.key_spelling
        return frames, _STRING, (b"" if strings or key else None)
    return frames, _LITERAL, None


def _property(track: Track, spelling: bytes) -> Track | None:
    """Where the value of the property spelled `spelling` is, below `track`."""
    try:
        name = json.loads(b'"' + spelling + b'"')
    except ValueError:
        return None
    found = track.properties.get(name)
    return track.other if found is None and name not in track.declared else found


def _keyed(frames: tuple[_Frame, ...]) -> bool:
    """Whether the innermost container is an object item of an array comparing its objects by a key."""
    return len(frames) >= 2 and not frames[-1].is_array and frames[-2].items is not None \
        and frames[-2].track.key is not None


def _with_top(frames: tuple[_Frame, ...], **changes) -> tuple[_Frame, ...]:
    return _with_frame(frames, -1, **changes)


def _with_frame(frames: tuple[_Frame, ...], at: int, **changes) -> tuple[_Frame, ...]:
    at %= len(frames)
    return frames[:at] + (frames[at]._replace(**changes),) + frames[at + 1:]


def _after(frames: tuple[_Frame, ...]) -> int:
    return _AFTER if frames else _DONE


def _allowed(words: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """Those of `tokens` the mask `words` allows."""
    return tokens[((words[tokens >> 5] >> (tokens & 31).astype(np.uint32)) & 1).astype(bool)]


class _Scan(NamedTuple):
    """Where the output is: inside a document (`position`, below `root`), or in the text between them (`tail`,
    its last bytes, to see a tool call's arguments begin)."""

    tail: bytes
    position: _Position | None
    root: Track | None


class _Starts:
    """The bytes that open each tool call's arguments (`<tool_call>\\n{"name": "NAME", "arguments": `), with the
    Track of the tool's parameters."""

    def __init__(self, roots: UniqueRoots):
        self.by_opening = {(OPEN + TAG_PAD + call_prefix(name)).encode(): track for name, track in roots.calls.items()}
        self.longest = max(map(len, self.by_opening), default=0)
        self.initial = _Scan(b"", _START, roots.start) if roots.start is not None else _Scan(b"", None, None)

    def scan(self, state: _Scan, data: bytes) -> _Scan | None:
        """The state after `data`; None where it repeats an item (see `advance`)."""
        tail, position, root = state
        i = 0
        while i < len(data):
            if position is not None:
                after = advance(position, data[i:], root)
                if after is None:
                    return None
                position, used = after
                i += used
                if position.mode == _DONE:
                    position, root = None, None
            elif not self.by_opening:
                break
            else:
                tail = (tail + data[i:i + 1])[-self.longest:]
                i += 1
                if tail[-1:] == b" ":  # every opening ends with ": "
                    root = next((track for opening, track in self.by_opening.items() if tail.endswith(opening)), None)
                    if root is not None:
                        tail, position = b"", _START
        return _Scan(tail, position, root)


class UniqueItemsMatcher(Matcher):
    """The grammar's matcher, with the string items of the unique arrays kept distinct."""

    def __init__(self, inner: Matcher, roots: UniqueRoots, vocabulary: VocabularyBytes):
        self._inner = inner
        self._starts = _Starts(roots)
        self._vocabulary = vocabulary
        self._state = self._starts.initial
        self._history: list[_Scan] = []  # the state before each accepted token

    def _after_token(self, state: _Scan, token_id: int) -> _Scan | None:
        token_bytes = self._vocabulary.token_bytes
        return self._starts.scan(state, token_bytes[token_id] if token_id < len(token_bytes) else b"")

    def accept_token(self, token_id: int) -> bool:
        after = self._after_token(self._state, token_id)
        if after is None or not self._inner.accept_token(token_id):
            return False
        self._history.append(self._state)
        self._state = after
        return True

    def validate_tokens(self, token_ids: Sequence[int]) -> int:
        valid, state = self._inner.validate_tokens(token_ids), self._state
        for count, token_id in enumerate(token_ids[:valid]):
            state = self._after_token(state, token_id)
            if state is None:
                return count
        return valid

    def rollback(self, num_tokens: int) -> None:
        if num_tokens:
            self._inner.rollback(num_tokens)
            self._state = self._history[-num_tokens]
            del self._history[-num_tokens:]

    def fill_bitmask(self, bitmask: torch.Tensor, row: int) -> None:
        self._inner.fill_bitmask(bitmask, row)
        words = mask_row(bitmask, row).numpy().view(np.uint32)
        frames, mode, text = self._state.position or _START
        allowed = functools.partial(_allowed, words)
        if frames and frames[-1].items is not None and frames[-1].track.spellings is not None:
            candidates = [np.flatnonzero(np.unpackbits(words.view(np.uint8), bitorder="little"))]  # the grammar's few
        else:
            candidates = [allowed(self._vocabulary.quoted_twice)]
        refused = []
        for depth, frame in enumerate(reversed(frames)):  # arrays comparing items as JSON values, holding some
            if not (frame.items and frame.track.general):
                continue
            if depth:  # an item ends with a token closing the containers open in it
                candidates.append(allowed(np.flatnonzero(self._vocabulary.closers >= depth)))
            elif mode in (_STRING, _STRING_ESCAPE):  # a string item: the tokens spelling the rest of an earlier one
                refused += [self._vocabulary.starting_with(item[len(frame.current):]) for item in frame.items
                            if item.startswith(frame.current) and len(item) > len(frame.current)]
            else:  # a literal item may end, or a `true`/`false`/`null` one begin, with the next token
                candidates.append(allowed(self._vocabulary.item_edges))
        tokens = np.unique(np.concatenate(candidates)).tolist()
        refused.append(np.asarray([t for t in tokens if self._after_token(self._state, t) is None], dtype=np.int64))
        if text is not None and mode in (_STRING, _STRING_ESCAPE) and frames[-1].is_array \
                and frames[-1].track.spellings is None:
            refused += [self._vocabulary.starting_with(item[len(text):] + b'"') for item in frames[-1].items
                        if item.startswith(text)]
        elif text is not None and mode in (_STRING, _STRING_ESCAPE) and not frames[-1].is_array:  # an item's key
            spelled = b'{"' + text
            refused += [self._vocabulary.starting_with(item[len(spelled):]) for item in frames[-2].items
                        if item.startswith(spelled) and len(item) > len(spelled)]
        ids = np.concatenate(refused)
        if len(ids):
            np.bitwise_and.at(words, ids >> 5, ~(np.uint32(1) << (ids & 31).astype(np.uint32)))

    def is_accepting(self) -> bool:
        return self._inner.is_accepting()

    def is_terminated(self) -> bool:
        return self._inner.is_terminated()

    def forced_tokens(self) -> list[int]:
        forced, state = self._inner.forced_tokens(), self._state
        for count, token_id in enumerate(forced):
            state = self._after_token(state, token_id)
            if state is None:
                return forced[:count]
        return forced
