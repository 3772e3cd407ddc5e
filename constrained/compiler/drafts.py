"""Which draft of JSON Schema a schema is read by, and the change between drafts that several rewrites read."""

from __future__ import annotations

import warnings
from typing import Any

import jsonschema


def validator_class(schema: Any) -> type:
    """The jsonschema validator of the draft `$schema` names; 2020-12 when absent or unknown (no fetching)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # an unknown $schema: the default draft
        return jsonschema.validators.validator_for(schema if isinstance(schema, dict) else {},
                                                   default=jsonschema.Draft202012Validator)


def since_2019_09(validator: type) -> bool:
    """2019-09 or later: a `$ref`'s siblings (its `$id` too) apply beside it, where earlier validators ignore them;
    dependentRequired, min/maxContains and unevaluated* exist."""
    return "dependentRequired" in validator.VALIDATORS
