"""What every endpoint's request and response models share: strict requests, refusals, ids, model cards."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict
from pydantic_core import PydanticCustomError

LaxInt = Annotated[int, Strict(False)]  # JSON object keys are strings: logit_bias {"1234": 5}


def _whole(value: Any) -> Any:
    return int(value) if type(value) is float and value.is_integer() else value


WholeInt = Annotated[int, BeforeValidator(_whole)]  # 8.0 is 8, as OpenAI reads it; 8.5 and "8" are not integers


class StrictRequest(BaseModel):
    """Requests are strict: an unknown field or a wrong JSON type is a 400 naming it (see api.errors)."""

    model_config = ConfigDict(extra="forbid", strict=True)


def refuse(message: str) -> PydanticCustomError:
    """A well-formed value we cannot honour: a 400 whose message says why (see api.errors)."""
    return PydanticCustomError("unsupported", "{message}", {"message": message})


def or_default(value: Any, default: Any) -> Any:
    return default if value is None else value


def omit_none() -> Any:
    """A response field left out of the JSON while it is None."""
    return Field(None, exclude_if=lambda v: v is None)


def new_id(prefix: str) -> str:
    """`prefix` + 32 hex digits: chatcmpl-..., cmpl-..., resp_..., msg_..."""
    return f"{prefix}{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


class JSONSchemaFormat(StrictRequest):
    """A named JSON Schema: response_format's `json_schema`, and (flat) the Responses API's `text.format`."""

    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    schema_: dict[str, Any] = Field(alias="schema")
    strict: bool | None = None  # the schema is enforced either way


class ModelCard(BaseModel):
    id: str
    created: int = Field(default_factory=now)
    object: Literal["model"] = "model"
    owned_by: str = "constrained"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
