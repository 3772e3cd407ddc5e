"""What every `*_calls.py` shares: the server's address, the nested models, and the one-JSON-line-per-call driver.

Runs inside each client's own venv (stdlib, pydantic and jsonschema only), so it imports nothing from the repo.
By hand, against a running server (CONSTRAINED_CLIENT_TRACEBACK=1 adds each failure's traceback on stderr):

    CONSTRAINED_BASE_URL=http://127.0.0.1:8000/v1 .client-venvs/openai/bin/python tests/clients/openai_calls.py [CALL]
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence

import jsonschema
from pydantic import BaseModel, ConfigDict, Field

BASE_URL = os.environ.get("CONSTRAINED_BASE_URL", "http://127.0.0.1:8000/v1")
MODEL = os.environ.get("CONSTRAINED_MODEL", "tiny-qwen3-json")
API_KEY = "unused"
TIMEOUT_S = 60.0  # what each client is told; CALL_LIMIT_S is the backstop for a client that ignores it
CALL_LIMIT_S = 120
MAX_TOKENS = 160
PROMPT = "Describe a person with an address and up to two pets, as JSON."


class Address(BaseModel):
    model_config = ConfigDict(extra="forbid")  # additionalProperties false: a random model adds keys until max_tokens
    city: str = Field(max_length=16)
    zip_code: str = Field(max_length=8)


class Pet(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=12)
    age: int = Field(ge=0, le=30)


class Person(BaseModel):
    """A sub-model field and a list of sub-models: pydantic writes both as `$defs` + `$ref`."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=16)
    address: Address
    pets: list[Pet] = Field(max_length=2)


PERSON_SCHEMA = Person.model_json_schema()


def check_person(value) -> str:
    """A Person (instance, dict or JSON text) validated by jsonschema and pydantic; returns it as JSON text."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    elif isinstance(value, (str, bytes)):
        value = json.loads(value)
    jsonschema.validate(value, PERSON_SCHEMA)
    Person.model_validate(value)
    return json.dumps(value)


def check_json(value: str | dict, schema: dict) -> str:
    """JSON text (or a parsed value) valid against `schema`; returns it as JSON text."""
    if isinstance(value, (str, bytes)):
        value = json.loads(value)
    jsonschema.validate(value, schema)
    return json.dumps(value)


def require(condition: bool, what: str) -> None:
    """An AssertionError that names what came back wrong (the line's detail)."""
    if not condition:
        raise AssertionError(what)


def _alarm(signum, frame):
    raise TimeoutError(f"the call ran past {CALL_LIMIT_S} s")


def run(calls: Sequence[Callable[[], str]]) -> None:
    """Run the calls named in argv (all by default), one JSON line each: {"call", "ok", "detail"}.

    A call returns a short detail on success; any exception makes the line ok false with its type and message.
    """
    by_name = {call.__name__: call for call in calls}
    signal.signal(signal.SIGALRM, _alarm)
    for name in sys.argv[1:] or by_name:
        signal.alarm(CALL_LIMIT_S)
        try:
            line = {"call": name, "ok": True, "detail": str(by_name[name]())[:500]}
        except Exception as error:  # noqa: BLE001 - every failure is a result line
            line = {"call": name, "ok": False, "detail": f"{type(error).__name__}: {error}"[:500]}
            if os.environ.get("CONSTRAINED_CLIENT_TRACEBACK"):
                traceback.print_exc(file=sys.stderr)
        finally:
            signal.alarm(0)
        print(json.dumps(line), flush=True)
