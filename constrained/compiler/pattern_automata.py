"""A JSON Schema `pattern` as an automaton, and the pattern of the strings it never matches.

The automaton (interegular) matches at least what the pattern matches for Python's `re` (jsonschema, which the
guarantee is checked with) and for ECMA-262: interegular's `\\d` and `\\w` are ASCII, Python's Unicode, so they
(or a class holding them) are read as "that, or any non-ASCII character"; `\\s` is read as every character either
reading counts as whitespace; a final `$` also matches before a final newline in Python. Class escapes inside a
negated class, other letter escapes and inline flags are not used. shapes.py intersects two
such automata to tell oneOf branches apart.

`not: {pattern}` and overlapping oneOf branches need the strings a pattern rejects (negation.py), which
llguidance's regex syntax cannot say: `strings_not_matching` complements the automaton and writes it back as a
regex by state elimination (characters spelled by `escape`, also behind `regex_literal`). Since the automaton
may match more than the pattern, never less, its complement may leave out strings the pattern rejects, never
hold one it matches.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from contextvars import ContextVar
from functools import cache, lru_cache
from typing import Any

import interegular
import interegular.fsm

_SAFE_ESCAPE = re.compile(r"\\(?:[dDwWS]|[^A-Za-z0-9])")
_CLASS = re.compile(r"\[(?:\\.|[^\]\\])*\]")
_ANY = r"[\s\S]*"
_NEWLINE = "\n?"  # Python's `$` (not multiline) also matches before a final newline
_MAX_REGEX_CHARS = 8192  # a complement written back longer than this is refused (llguidance compiles it per schema)
_MAX_STATES = 512  # states of any automaton built on the way: a search for `a.{40}b` would need 2**40


def searches(pattern: str, text: str) -> bool:
    """Whether `pattern` matches `text` as jsonschema checks it (Python's `re`); an unreadable pattern: as if it
    did (callers treat a match as what may happen)."""
    try:
        return re.search(pattern, text) is not None
    except re.error:
        return True


@lru_cache(maxsize=1024)
def automaton(pattern: str) -> Any:
    """The strings `pattern` (a search) matches, at least those Python's `re` and ECMA-262 match (module
    docstring); None when it uses a construct this reading cannot take."""
    readable = _class_escapes_spelled(pattern)
    if readable is None:
        return None
    plain = _CLASS.sub("", _SAFE_ESCAPE.sub("", readable))  # escapes and classes out: what anchors are left
    if "\\" in plain or "^" in plain[1:] or "$" in plain[:-1] or re.search(r"\(\?[^:]", plain):
        return None
    start, end = plain.startswith("^"), plain.endswith("$")
    body = readable[1 if start else 0:len(readable) - 1 if end else len(readable)]
    try:
        with _bounded():
            return interegular.parse_pattern(f"{'' if start else _ANY}(?:{body}){_NEWLINE if end else _ANY}").to_fsm()
    except Exception:  # interegular raises several types for what it cannot read (lookarounds, backreferences),
        return None  # and _TooLarge


def may_overlap(first: str, second: str) -> bool:
    """Whether some string may match both patterns (True where either cannot be read)."""
    a, b = automaton(first), automaton(second)
    if a is None or b is None:
        return True
    try:
        with _bounded():
            return not a.intersection(b).empty()  # not `isdisjoint`: interegular's takes its state 0 for no state
    except _TooLarge:
        return True


def strings_matching_only(together: list[str], others: list[str]) -> str | None:
    """An anchored pattern (llguidance's regex syntax) matching exactly the strings Python's `re` finds every
    pattern of `together` in and none of `others`; "" when there is no such string; None when some pattern's
    automaton is not exact (a class escape widened; a final `$` is read as Python reads it) or it grows too big."""
    if any(_CLASS_ESCAPES.search(pattern) for pattern in [*together, *others]):
        return None
    read = [automaton(pattern) for pattern in [*together, *others]]
    if any(fsm is None for fsm in read):
        return None
    try:
        with _bounded():
            strings = read[0]
            for fsm in read[1:len(together)]:
                strings = strings.intersection(fsm)
            for fsm in read[len(together):]:
                strings = strings.difference(fsm)
            strings = strings.reduce()
    except _TooLarge:
        return None
    return "" if strings.empty() else _anchored(_regex_of(strings))


def _anchored(regex: str | None) -> str | None:
    return None if regex is None or len(regex) > _MAX_REGEX_CHARS else f"^(?:{regex})$"


@lru_cache(maxsize=1024)
def strings_not_matching(pattern: str) -> str | None:
    """An anchored pattern (llguidance's regex syntax) matching only strings `pattern` never matches, "" when
    `pattern` may match every string; None when the complement cannot be written (an unreadable pattern, or a
    regex too long)."""
    matching = automaton(pattern)
    if matching is None:
        return None
    try:
        with _bounded():
            rejecting = matching.everythingbut().reduce()
    except _TooLarge:
        return None
    return "" if rejecting.empty() else _anchored(_regex_of(rejecting))


@cache
def _whitespace() -> str:
    """Every character Python's `\\s` or ECMA-262's matches (all below U+3001 but the byte order mark)."""
    return "".join(char for char in map(chr, range(0x3001)) if re.match(r"\s", char)) + "\ufeff"


_WIDE = ("\\d", "\\w")  # ASCII for interegular, Unicode for Python: read as "that, or any non-ASCII character"
_NON_ASCII = "[^\\x00-\\x7f]"
_NARROWER_IN_NEGATED = ("\\d", "\\w", "\\s", "\\D", "\\W", "\\S")


def _class_escapes_spelled(pattern: str) -> str | None:
    """`pattern` read so that interegular matches at least what Python's and ECMA-262's readings match: `\\d`
    and `\\w` (or a class holding them) as "that, or any non-ASCII character", `\\s` as the characters either
    reading counts as whitespace; None when a class escape stands in a negated class (there only the characters
    both readings share would do) or a class opens with "]" (ECMA-262 reads `[^]` as any character)."""
    out, i, opened = [], 0, None  # opened: where the class being read starts in `out`
    negated = wide = False
    while i < len(pattern):
        piece = pattern[i:i + 2] if pattern[i] == "\\" else pattern[i]
        i += len(piece)
        if opened is None and piece == "[":
            opened, negated, wide = len(out), pattern[i:i + 1] == "^", False
            if pattern[i + negated:i + negated + 1] == "]":
                return None
        elif opened is not None and piece == "]":
            if wide:
                out[opened:] = ["(?:", *out[opened:], "]|", _NON_ASCII, ")"]
                opened = None
                continue
            opened = None
        elif negated and opened is not None and piece in _NARROWER_IN_NEGATED:
            return None
        elif piece == "\\s":
            piece = _whitespace() if opened is not None else f"[{_whitespace()}]"
        elif piece in _WIDE:
            if opened is None:
                piece = f"(?:{piece}|{_NON_ASCII})"
            wide = True
        out.append(piece)
    return "".join(out)


class _TooLarge(Exception):
    """An automaton grew past _MAX_STATES."""


_budget: ContextVar[bool] = ContextVar("automaton_budget", default=False)
_crawl = interegular.fsm.crawl


def _bounded_crawl(alphabet, initial, final, follow):
    """interegular's crawl (every automaton it builds goes through it), stopped past _MAX_STATES states inside
    `_bounded` (the subset construction is exponential in the worst case, and cannot be interrupted otherwise)."""
    if not _budget.get():
        return _crawl(alphabet, initial, final, follow)
    seen = 0

    def counted_final(state):
        nonlocal seen
        seen += 1
        if seen > _MAX_STATES:
            raise _TooLarge
        return final(state)

    return _crawl(alphabet, initial, counted_final, follow)


interegular.fsm.crawl = _bounded_crawl


@contextlib.contextmanager
def _bounded() -> Iterator[None]:
    token = _budget.set(True)
    try:
        yield
    finally:
        _budget.reset(token)


def _regex_of(fsm: Any) -> str | None:
    """A regex (llguidance's syntax, unanchored) for the strings `fsm` accepts, by state elimination; "" for none;
    None when it grows past the size limit."""
    live = _live_states(fsm)
    if fsm.initial not in live:
        return ""
    classes = _symbol_classes(fsm.alphabet)
    start, end = object(), object()
    out: dict[Any, dict[Any, str]] = {start: {fsm.initial: ""}, end: {}, **{s: {} for s in live}}  # p -> q: regex
    into: dict[Any, dict[Any, str]] = {start: {}, end: {}, **{s: {} for s in live}}
    into[fsm.initial][start] = ""
    for state in live:
        targets: dict[Any, list[int]] = {}
        for symbol, target in fsm.map.get(state, {}).items():
            if target in live:
                targets.setdefault(target, []).append(symbol)
        for target, symbols in targets.items():
            out[state][target] = into[target][state] = classes(symbols)
        if state in fsm.finals:
            out[state][end] = into[end][state] = ""
    remaining = set(live)
    while remaining:
        state = min(remaining, key=lambda s: len(into[s]) * len(out[s]))
        remaining.discard(state)
        loop = out[state].pop(state, None)
        into[state].pop(state, None)
        star = "" if loop is None else f"(?:{loop})*"
        for p, before in into.pop(state).items():
            del out[p][state]
            for q, after in out[state].items():
                path = f"{_group(before)}{star}{_group(after)}"
                joined = f"{out[p][q]}|{path}" if q in out[p] else path
                if len(joined) > _MAX_REGEX_CHARS:
                    return None
                out[p][q] = into[q][p] = joined
        for q in out.pop(state):
            del into[q][state]
    return out[start].get(end, "")


def _group(regex: str) -> str:
    return f"(?:{regex})" if "|" in regex else regex


def _live_states(fsm: Any) -> set:
    """States reachable from the initial one from which a final state can be reached."""
    reachable, todo = {fsm.initial}, [fsm.initial]
    while todo:
        for target in fsm.map.get(todo.pop(), {}).values():
            if target not in reachable:
                reachable.add(target)
                todo.append(target)
    live = set(fsm.finals) & reachable
    changed = True
    while changed:
        grown = {s for s in reachable if any(t in live for t in fsm.map.get(s, {}).values())}
        changed = not grown <= live
        live |= grown
    return live


def _symbol_classes(alphabet: Any):
    """A function from a set of the automaton's symbols to a character class spelling their characters (the
    symbol interegular keeps for "any other character" spelled as a negated class)."""
    by_symbol = alphabet.by_transition
    other = next((s for s, chars in by_symbol.items() if interegular.fsm.anything_else in chars), None)

    def spelled(symbols: list[int]) -> str:
        chosen = set(symbols)
        if other in chosen:
            rest = [c for s, chars in by_symbol.items() if s not in chosen for c in chars]
            return f"[^{_ranges(rest)}]" if rest else r"[\s\S]"
        chars = [c for s in chosen for c in by_symbol[s]]
        return escape(chars[0]) if len(chars) == 1 else f"[{_ranges(chars)}]"

    return spelled


def _ranges(chars: list[str]) -> str:
    """A class body holding exactly `chars`, consecutive code points as ranges."""
    points, spans = sorted(map(ord, chars)), []
    for point in points:
        if spans and spans[-1][1] == point - 1:
            spans[-1][1] = point
        else:
            spans.append([point, point])
    return "".join(escape(chr(lo)) if lo == hi else f"{escape(chr(lo))}-{escape(chr(hi))}" for lo, hi in spans)


def regex_literal(text: str) -> str:
    """A pattern (llguidance's regex syntax) matching `text` itself."""
    return "".join(map(escape, text))


_META = set("\\.+*?()|[]{}^$#&-~")


def escape(char: str) -> str:
    """`char` as llguidance's regex syntax reads it literally, in a class too."""
    if char in _META:
        return "\\" + char
    if char.isprintable() and not char.isspace():
        return char
    return f"\\x{{{ord(char):x}}}"


_CLASS_ESCAPES = re.compile(r"\\[dDwWsSbBpP]")


@lru_cache(maxsize=1024)
def endless(pattern: str) -> bool:
    """Whether every string on the way to a match of `pattern` can still go on into infinitely many matches (so a
    finite set of them never leaves it no way on). Read for anchored patterns (`^...$`) without class escapes alone,
    where interegular reads the pattern exactly; False for any other."""
    body = pattern[1:-1]
    if not (pattern.startswith("^") and pattern.endswith("$")) or body.endswith("\\") or _CLASS_ESCAPES.search(body):
        return False
    plain = _CLASS.sub("", re.sub(r"\\.", "", body))
    if "^" in plain or "$" in plain or re.search(r"\(\?[^:]", plain):
        return False
    try:
        with _bounded():
            fsm = interegular.parse_pattern(body).to_fsm()
    except Exception:  # what interegular cannot read, or too many states
        return False
    live = _live_states(fsm)
    follow = {state: {t for t in fsm.map.get(state, {}).values() if t in live} for state in live}

    def reach(state: Any) -> set:
        seen, todo = set(), [state]
        while todo:
            for target in follow[todo.pop()]:
                if target not in seen:
                    seen.add(target)
                    todo.append(target)
        return seen

    reached = {state: reach(state) for state in live}
    cycling = {state for state in live if state in reached[state]}
    return all(state in cycling or reached[state] & cycling for state in live)


def leading_lookaheads(pattern: str) -> tuple[list[str], list[str], str] | None:
    """`^(?=A)(?!B)C` as (["^(?:A)"], ["^(?:B)"], "^C"): the prefixes a string must and must not start with, and
    the rest of the pattern; None unless the pattern opens with a lookahead (llguidance has none: the parts are enforced
    apart, the negative ones as complements)."""
    if not pattern.startswith(("^(?=", "^(?!")):
        return None
    ahead: list[str] = []
    not_ahead: list[str] = []
    i = 1
    while pattern.startswith(("(?=", "(?!"), i):
        end = _group_end(pattern, i)
        if end is None:
            return None
        inner = pattern[i + 3:end]
        anchored = inner.endswith("$") and not inner.endswith("\\$")
        (ahead if pattern[i + 2] == "=" else not_ahead).append(f"^(?:{inner[:-1]})$" if anchored else f"^(?:{inner})")
        i = end + 1
    return ahead, not_ahead, "^" + pattern[i:]


def _group_end(pattern: str, start: int) -> int | None:
    """The index of the parenthesis closing the group opened at `start` (escapes and classes skipped)."""
    depth, i = 0, start
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 2
            continue
        if char == "[":
            found = _CLASS.match(pattern, i)
            if found is None:
                return None
            i = found.end()
            continue
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0:
            return i
        i += 1
    return None


def without_lookaheads(pattern: str) -> str | None:
    """A regex (llguidance's syntax, anchored) matching exactly the strings `pattern` matches, for a pattern
    opening with lookaheads (`leading_lookaheads`) and using no class escape (where the automaton is exact);
    None for any other, or where the regex cannot be written."""
    split = leading_lookaheads(pattern)
    if split is None or _CLASS_ESCAPES.search(pattern):
        return None
    ahead, not_ahead, rest = split
    parts = [automaton(part) for part in (rest, *ahead, *not_ahead)]
    if any(part is None for part in parts):
        return None
    try:
        with _bounded():
            matching = parts[0].intersection(*parts[1:len(ahead) + 1])
            if not_ahead:
                matching = matching.difference(*parts[len(ahead) + 1:])
            matching = matching.reduce()
    except _TooLarge:
        return None
    regex = _regex_of(matching)
    if regex is None or len(regex) > _MAX_REGEX_CHARS:
        return None
    return f"^(?:{regex})$" if regex else "[^\\s\\S]"
