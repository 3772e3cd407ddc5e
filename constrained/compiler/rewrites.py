"""Exact rewrites of keywords llguidance does not implement into ones it does, or a refusal with the path.

Every rewrite accepts exactly the instances the original accepts (the JSON Schema semantics, including
for non-object instances, which `required`/`properties` let through):
- `dependencies` / `dependentRequired` / `dependentSchemas`: "a present => R" becomes
  `anyOf: [{properties: {a: false}}, {required: [a, ...R]}]` (just R when `a` is required anyway);
- `not S` becomes S's complement (negation.py);
- `contains` becomes "the matching items at one of the first positions" (contains.py: narrower), the other
  items failing it (its complement) where `maxContains` bounds their count;
- `minProperties`/`maxProperties` beside optional properties become which of those are present
  (property_counts.py);
- `propertyNames` becomes a patternProperty spelling the allowed names (property_names.py);
- overlapping `patternProperties` become one pattern per set of them a name matches (pattern_properties.py);
- `if`/`then`/`else` becomes `anyOf: [allOf: [if, then], allOf: [not if, else]]`;
- `$ref` beside other keywords: the siblings are dropped before 2019-09 (validators ignore them), else
  `allOf: [{$ref}]` beside them;
- `unevaluatedProperties` / `unevaluatedItems` beside allOf and `$ref` alone become an allOf member over what
  those evaluate, beside one anyOf/oneOf a member of each branch (unevaluated.py; narrower under anyOf);
- a number's bound past 1e18 that lets more in is brought to 1e18 (narrower);
- `oneOf` whose branches provably cannot overlap becomes `anyOf`; one whose branches may overlap becomes an
  anyOf of each branch without the branches it may overlap (their complements).
A complement is exact but for one narrowing (negation.py: the non-integer numbers outside `type: integer`).
Anything else stays refused, with its path.

`oneOf` narrows instead (a subset of the valid instances, never an invalid one) where its complements cannot
be written or grow too large for llguidance: where each branch can be kept apart from each other by a name
the other requires (or a property whose values they never share), it becomes an anyOf of "this branch,
without that name" (or "with that property"): oneOf [{required: [a]}, {required: [b], pattern...}] emits
objects with a or b, never both; else by narrowed complements, unless a branch would be left out whole.
"""

from __future__ import annotations

import json
from typing import Any

from constrained.compiler.contains import with_contains
from constrained.compiler.drafts import since_2019_09, validator_class
from constrained.compiler.negation import intersection, negate, union
from constrained.compiler.pattern_automata import leading_lookaheads, without_lookaheads
from constrained.compiler.pattern_properties import with_disjoint_patterns
from constrained.compiler.property_counts import with_property_counts
from constrained.compiler.property_names import with_property_names
from constrained.compiler.schema_walk import map_with_originals, outside_targets, replaced, resolve_local
from constrained.compiler.shapes import Shape, disjoint, shape_of
from constrained.compiler.unevaluated import Evaluated, evaluated, evaluated_per_branch, items_rule, properties_rule
from constrained.errors import InvalidConstraint


def llguidance_equivalent(schema: Any) -> Any:
    """`schema` with `dependencies`, `not`, `if` and `oneOf` rewritten (see the module docstring); InvalidConstraint
    naming the first one that has no exact equivalent."""
    if not isinstance(schema, dict):
        return schema
    validator = validator_class(schema)
    rewriter = _Rewriter(schema, set(validator.VALIDATORS), since_2019_09(validator))
    rewritten = rewriter.apply(schema, "")
    if rewritten is False:
        raise InvalidConstraint("the schema matches nothing", hint="give a schema some value satisfies")
    return _outside_targets_rewritten(rewriter, rewritten)


def _outside_targets_rewritten(rewriter: _Rewriter, rewritten: dict) -> dict:
    """`rewritten` with the `$ref` targets kept under names of the schema's own (`#/onvif/ptz/...`), which the
    keyword walk never visits, rewritten in place as well."""
    for pointer in outside_targets(rewriter.root):
        rewritten = replaced(rewritten, pointer, rewriter.apply(resolve_local(rewriter.root, "#" + pointer)[1],
                                                                pointer))
    return rewritten


_MAX_NESTED = 8  # complements and inlined $ref targets rewritten inside each other (recursion would never end)
_MAX_WIDTH = 256  # alternatives llguidance would multiply out of a rewritten node (see _width)
_MAX_CHARS = 65_536  # serialized size of a rewritten node (a complement, a oneOf's branches)


class _Rewriter:
    """Rewrites every node of `root`, innermost first. Complements and inlined `$ref` targets are built from the
    original document, so they are rewritten in turn (`apply`)."""

    def __init__(self, root: dict, known: set[str], since_2019: bool):
        self.root, self.known, self.nested = root, known, 0
        self.since_2019 = since_2019  # $ref siblings apply, min/maxContains exist
        # A complement holds the original subschemas it is built of (the same objects), negated again at each level
        # they are nested in: their complements, and their rewrites inside complements, are kept.
        self._complements: dict[str, Any] = {}
        self._nested_rewrites: dict[int, tuple[dict, Any]] = {}

    def apply(self, fragment: Any, pointer: str) -> Any:
        """`fragment` rewritten. Inside a complement no rewrite depends on where it is (unevaluated* is not
        rewritten there), so a subschema met again takes its first rewrite."""
        return map_with_originals(fragment, self._rewrite, pointer, self._nested_rewrites if self.nested else None)

    def _apply_nested(self, fragment: Any, pointer: str) -> Any:
        self.nested += 1
        try:
            return self.apply(fragment, pointer)
        finally:
            self.nested -= 1

    def complement(self, schema: Any, pointer: str, *, narrowing: bool = False, coarse: bool = False) -> Any:
        """negate(schema), rewritten; None when it has no schema (or recursion would rewrite it forever)."""
        key = json.dumps([schema, narrowing, coarse], sort_keys=True)
        if key not in self._complements:
            negated = negate(schema, self.root, narrowing=narrowing, coarse=coarse)
            if negated is None or negated is False or negated == {}:
                return negated
            self._complements[key] = None if self.nested >= _MAX_NESTED else self._apply_nested(negated, pointer)
        return self._complements[key]

    def _rewrite(self, pointer: str, node: dict, written: dict) -> Any:
        """`node` (its children rewritten) rewritten. Complements are taken of the subschemas as `written`: a
        rewritten one may be narrower (contains, oneOf, counts), and the complement of a narrower schema is wider
        than the complement, so it would let invalid instances through."""
        node = _bounds_within_reach(_disjoint_patterns(self._lookaheads(node, pointer), pointer))
        node = self._unevaluated(self._ref_siblings(node), pointer)
        node = with_property_counts(self._property_names(self._contains(node, pointer, written), pointer))
        node = self._conditional(_dependencies(node, self.known), pointer, written)
        if node is not False and "not" in node:
            complement = self.complement(written.get("not", node["not"]), pointer)
            if complement is None or _too_big(complement):
                raise InvalidConstraint("`not` of a schema whose failing instances have no schema (or too large a one) "
                                        "is not enforced", path=pointer, keyword="not",
                                        hint="list what is allowed instead (enum, anyOf)")
            node = _conjoin({k: v for k, v in node.items() if k != "not"}, complement)
        if node is not False and "oneOf" in node:
            branches = self._one_of(node.pop("oneOf"), written.get("oneOf"), pointer)
            if branches is None:
                raise InvalidConstraint("oneOf branches that may overlap, without a complement (or too large a one), "
                                        "are not enforced", path=pointer, keyword="oneOf",
                                        hint="use anyOf when at most one branch can match anyway")
            node = _conjoin(node, {"anyOf": branches}) if "anyOf" in node else {**node, "anyOf": branches}
        return node

    def _lookaheads(self, node: dict, pointer: str) -> Any:
        """Patterns opening with lookaheads (llguidance has none): `^(?=A)(?!B)C` as one regex where the automata
        are exact (pattern_automata.without_lookaheads), else as the patterns "^(?:A)" and "^C" beside the
        complement of the strings matching "^(?:B)". patternProperties names take the first way alone."""
        names = node.get("patternProperties")
        if isinstance(names, dict) and any(map(leading_lookaheads, names)):
            node = {**node, "patternProperties": {without_lookaheads(name) or name: value
                                                  for name, value in names.items()}}
        split = leading_lookaheads(node["pattern"]) if isinstance(node.get("pattern"), str) else None
        if split is None:
            return node
        if (regex := without_lookaheads(node["pattern"])) is not None:
            return {**node, "pattern": regex}
        ahead, not_ahead, rest = split
        node = {k: v for k, v in node.items() if k != "pattern"} | ({"pattern": rest} if rest != "^" else {})
        for prefix in ahead:
            node = _conjoin(node, {"pattern": prefix})
        for prefix in not_ahead:
            complement = self.complement({"type": "string", "pattern": prefix}, pointer)
            if complement is None or _too_big(complement):
                raise InvalidConstraint("a negative lookahead whose strings have no complement (or too large a one) "
                                        "is not enforced", path=pointer, keyword="pattern",
                                        hint="spell the allowed strings without a lookahead")
            node = _conjoin(node, complement)
        return node

    def _ref_siblings(self, node: dict) -> dict:
        """A `$ref` beside other assertions: before 2019-09 validators ignore the siblings, so they are dropped;
        from 2019-09 both apply, as `allOf: [{$ref}]` beside them (llguidance refuses a circular reference
        with siblings)."""
        if not isinstance(node.get("$ref"), str) or set(node) <= {"$ref", *_CONTAINERS}:
            return node
        if not self.since_2019:
            return {k: v for k, v in node.items() if k == "$ref" or k in _CONTAINERS}
        rest = {k: v for k, v in node.items() if k != "$ref"}
        return {**rest, "allOf": [{"$ref": node["$ref"]}, *rest.get("allOf", [])]}

    def _unevaluated(self, node: dict, pointer: str) -> dict:
        """`unevaluatedProperties`/`unevaluatedItems` as one more allOf member, or in each branch of the node's
        anyOf/oneOf (unevaluated.py); dropped before 2019-09, which lacks them. Only at the top of the rewrite: a
        complement or an inlined target has no place in the original document to collect from."""
        present = [key for key in _UNEVALUATED if key in node]
        if not present:
            return node
        rest = {k: v for k, v in node.items() if k not in _UNEVALUATED}
        if not self.since_2019:
            return rest
        tuple_items = "prefixItems" not in self.known
        found = evaluated(self.root, pointer, tuple_items) if self.nested == 0 else None
        if found is not None:
            rules = self._unevaluated_rules(node, present, found, tuple_items)
            return _conjoin(rest, {"allOf": rules}) if rules else rest
        per_branch = evaluated_per_branch(self.root, pointer, tuple_items) if self.nested == 0 else None
        if per_branch is None or not isinstance(node.get(per_branch[0]), list):
            raise InvalidConstraint(f"{present[0]} beside if, not, contains, dependent schemas or nested anyOf/oneOf "
                                    "(what it applies to depends on which of them validate) is not enforced",
                                    path=pointer, keyword=present[0],
                                    hint="name the allowed properties or items in this schema")
        key, found_per_branch = per_branch
        branches = [{"allOf": [branch, *rules]} if (rules := self._unevaluated_rules(node, present, branch_found,
                                                                                     tuple_items))
                    else branch for branch, branch_found in zip(node[key], found_per_branch)]
        if key == "anyOf":
            return {**rest, "anyOf": branches}
        return _conjoin(rest, {"anyOf": branches})  # the oneOf stays: exactly one branch validates

    @staticmethod
    def _unevaluated_rules(node: dict, present: list[str], found: Evaluated, tuple_items: bool) -> list:
        """The allOf members applying the unevaluated* keywords `present` in `node`, given what is `found`."""
        rules = [properties_rule(found, node[key]) if key == "unevaluatedProperties"
                 else items_rule(found, node[key], tuple_items) for key in present if node[key] not in (True, {})]
        return [rule for rule in rules if rule is not None]  # None: everything is evaluated already

    def _contains(self, node: dict, pointer: str, written: dict) -> dict:
        """`contains` as positions (contains.py); `minContains`/`maxContains` only from 2019-09, none before 6."""
        if not {"contains", *_COUNTS} & node.keys():
            return node
        rest = {k: v for k, v in node.items() if k not in ("contains", *_COUNTS)}
        if "contains" not in node or "contains" not in self.known:
            return rest
        counts = {k: node[k] for k in _COUNTS if k in node and self.since_2019}
        failing = written.get("contains", node["contains"])
        rewritten = with_contains({**rest, **counts, "contains": node["contains"]},
                                  "prefixItems" if "prefixItems" in self.known else "items",
                                  lambda: _unless_too_big(self.complement(failing, pointer)))
        if rewritten is None:
            raise InvalidConstraint("maxContains below maxItems, where the items `contains` fails have no schema (or "
                                    "too large a one), is not enforced", path=pointer, keyword="maxContains",
                                    hint="drop it")
        return rewritten

    def _property_names(self, node: dict, pointer: str) -> dict:
        """`propertyNames` as patterns (property_names.py); dropped before draft 6, which lacks it."""
        if "propertyNames" not in node:
            return node
        if "propertyNames" not in self.known:
            return {k: v for k, v in node.items() if k != "propertyNames"}
        rewritten = with_property_names(node, self.root)
        if rewritten is None:
            raise InvalidConstraint("propertyNames other than one pattern, an enum or length bounds (or beside "
                                    "patternProperties) is not enforced", path=pointer, keyword="propertyNames",
                                    hint="list the names in properties with additionalProperties: false")
        return rewritten

    def _conditional(self, node: dict, pointer: str, written: dict) -> Any:
        """`if`/`then`/`else` as the anyOf of their two cases; dropped in drafts without them (before 7), and
        `then`/`else` without `if` assert nothing."""
        rest = {k: v for k, v in node.items() if k not in ("if", "then", "else")}
        if "if" not in node or "if" not in self.known:
            return rest
        complement = self.complement(written.get("if", node["if"]), pointer)
        if complement is None or _too_big(complement):
            raise InvalidConstraint("`if` whose failing instances have no schema (or too large a one) is not enforced",
                                    path=pointer, keyword="if", hint="express the cases with anyOf")
        cases = union([intersection([node["if"], node.get("then", {})]),
                       intersection([complement, node.get("else", {})])])
        return _conjoin(rest, cases)

    def _one_of(self, branches: Any, written: Any, pointer: str) -> list | None:
        """oneOf branches as anyOf branches: as they are where no two can match one instance; else each without
        the branches it may overlap: by their complements, else (or where those grow too big) by guards (which
        narrow), else by complements narrowed (negation.py) as long as no branch is left out whole; None when
        none of these can be written. Overlaps, guards and complements are read from the branches as `written`
        (a rewritten branch may be narrower: see `_rewrite`)."""
        if not isinstance(branches, list):
            return None
        written = written if isinstance(written, list) and len(written) == len(branches) else branches
        shapes = [shape_of(b, self.root, 0) for b in written]
        overlaps = [[j for j, other in enumerate(shapes) if j != i and not disjoint(mine, other)]
                    for i, mine in enumerate(shapes)]
        overlapped = {j for found in overlaps for j in found}
        exact = {j: self.complement(written[j], pointer) for j in overlapped}
        apart = None if None in exact.values() else self._apart(branches, overlaps, exact)
        if apart is not None and not _too_big(apart):
            return apart
        guards = [[_excluding(shapes[i], shapes[j]) for j in found] for i, found in enumerate(overlaps)]
        if not any(None in mine for mine in guards):
            return [self._guarded(branch, mine) for branch, mine in zip(branches, guards)]
        possible = sum(False not in (exact[j] for j in found) for found in overlaps)
        for coarse in (False, True):  # coarse: items, patterns and formats count as having no complement
            narrowed = {j: self.complement(written[j], pointer, narrowing=True, coarse=coarse) for j in overlapped}
            if any(narrowed[j] is False for j in overlapped if exact[j] is not False):
                continue
            apart = self._apart(branches, overlaps, narrowed)
            if apart is not None and len(apart) >= possible and not _too_big(apart):
                return apart
        return None

    def _apart(self, branches: list, overlaps: list[list[int]], complements: dict[int, Any]) -> list | None:
        """Each branch with the complements of those it overlaps; one that can never hold (a complement is False,
        or no type is left) is left out; None when none is left."""
        kept = [self._guarded(branch, [complements[j] for j in found if complements[j] != {}])
                for branch, found in zip(branches, overlaps) if False not in (complements[j] for j in found)]
        kept = [branch for branch in kept if shape_of(branch, self.root, 0).types]
        return kept or None

    def _guarded(self, branch: Any, guards: list) -> Any:
        """`branch` and its guards (the branch alone without any). A bare `$ref` is replaced by its target
        (rewritten), since llguidance refuses a recursive reference beside other keywords."""
        if not guards:
            return branch
        if isinstance(branch, dict) and set(branch) == {"$ref"} and isinstance(branch["$ref"], str) \
                and self.nested < _MAX_NESTED:
            try:
                target = resolve_local(self.root, branch["$ref"])
            except KeyError:
                target = None
            if target is not None and isinstance(target[1], dict) and not {"$ref", "$id", "id"} & set(target[1]):
                return _conjoin(self._apply_nested(target[1], target[0]), {"allOf": guards})
        return {"allOf": [branch, *guards]}


def _too_big(schema: Any) -> bool:
    """Whether llguidance would likely refuse a rewritten node as too large: the alternatives it multiplies out
    of nested allOf/anyOf, or its size."""
    return _width(schema) > _MAX_WIDTH or len(json.dumps(schema)) > _MAX_CHARS


def _bounds_within_reach(node: dict) -> dict:
    """Bounds of numbers past 1e18 that let more in (a maximum above, a minimum below) brought to it: narrower, and
    llguidance writes no number range reaching further (an integer's range it does, to 64 bits)."""
    if not _BOUNDS.keys() & node.keys():  # most nodes: no bound, nothing to look at
        return node
    integers = node.get("type") == "integer"
    far = {key: bound for key, bound in _BOUNDS.items() if isinstance(node.get(key), (int, float))
           and not isinstance(node[key], bool) and not (integers and isinstance(node[key], int))
           and abs(node[key]) > _REACH and (node[key] > 0) == (bound > 0)}
    return {**node, **far} if far else node


def _disjoint_patterns(node: dict, pointer: str) -> dict:
    """Overlapping patternProperties as disjoint ones (pattern_properties.py), or refused."""
    disjoint = with_disjoint_patterns(node)
    if disjoint is None:
        raise InvalidConstraint("patternProperties whose patterns overlap are enforced where at most 4 overlap and "
                                "each is read exactly (no \\d, \\w or \\s)", path=pointer,
                                keyword="patternProperties", hint="make the patterns exclude each other")
    return disjoint


def _unless_too_big(schema: Any) -> Any:
    return None if schema is None or _too_big(schema) else schema


def _width(schema: Any) -> int:
    """Alternatives of `schema` once its allOf of anyOfs is multiplied out (llguidance intersects that way)."""
    if isinstance(schema, list):
        return sum(map(_width, schema))
    if not isinstance(schema, dict):
        return 1
    width = _width(schema["anyOf"]) or 1 if isinstance(schema.get("anyOf"), list) else 1
    for part in schema.get("allOf", []) if isinstance(schema.get("allOf"), list) else []:
        width = min(width * _width(part), _MAX_WIDTH + 1)
    return width


def _conjoin(node: dict, extra: Any) -> Any:
    """`node` and `extra` both (False: nothing matches)."""
    if extra is False:
        return False
    return node if extra == {} else {**node, "allOf": [*node.get("allOf", []), extra]}


_COUNTS = ("minContains", "maxContains")
_REACH = 10**18  # the widest number bound llguidance writes a range for
_BOUNDS = {"maximum": _REACH, "exclusiveMaximum": _REACH, "minimum": -_REACH, "exclusiveMinimum": -_REACH}
_UNEVALUATED = ("unevaluatedProperties", "unevaluatedItems")
_CONTAINERS = ("$defs", "definitions", "$schema", "$id", "id", "$anchor", "$comment", "title", "description")


_DEPENDENCY_KEYWORDS = ("dependencies", "dependentRequired", "dependentSchemas")


def _dependencies(node: dict, known: set[str]) -> dict:
    """The dependency keywords of the schema's draft as conditions; the other drafts' ones assert nothing, but for
    `dependencies`, kept in every draft: 2019-09 validators may still assert it (the official suite's optional
    compatibility tests do), and a stricter grammar never emits an instance jsonschema refuses."""
    pairs = [(name, then) for key in _DEPENDENCY_KEYWORDS
             if (key in known or key == "dependencies") and isinstance(node.get(key), dict)
             for name, then in node[key].items()]
    node = {k: v for k, v in node.items() if k not in _DEPENDENCY_KEYWORDS}
    conditions = []
    for name, then in pairs:
        then_schema = {"required": [name, *then]} if isinstance(then, list) else {"required": [name], "allOf": [then]}
        required = isinstance(node.get("required"), list) and name in node["required"]
        conditions.append(then_schema if required else {"anyOf": [{"properties": {name: False}}, then_schema]})
    return {**node, "allOf": [*node.get("allOf", []), *conditions]} if conditions else node


def _excluding(mine: Shape, other: Shape) -> dict | None:
    """A condition no instance of `other` meets: a type it cannot be, or an object without a name it requires
    (one `mine` does not require), or with a property whose values in `mine` it never allows, or with a name it
    is closed to. None if none."""
    missing = sorted(other.required - mine.required)
    apart = sorted(name for name in mine.declared.keys() & other.declared.keys()
                   if not mine.declared[name] & other.declared[name])
    free = [name for name in missing if mine.excludes(name)]  # `mine` holds no such name anyway: nothing lost
    outside = sorted(name for name in mine.names - (mine.names if other.closed is None else other.closed)
                     if not mine.excludes(name))
    if missing:
        guard = {"type": "object", "properties": {(free or missing)[0]: False}}
    elif apart:
        guard = {"type": "object", "required": [apart[0]]}
    elif outside:  # a name `other`, closed, cannot hold
        guard = {"type": "object", "required": [outside[0]]}
    else:
        return None
    types = mine.types - other.types - ({"number"} if "integer" in other.types else set())
    return {"anyOf": [{"type": sorted(types)}, guard]} if types else guard
