"""DSPy: a Predict with a typed (nested pydantic) output field, through dspy.LM and the JSON adapter."""

from __future__ import annotations

import dspy
import litellm
from harness import API_KEY, BASE_URL, MAX_TOKENS, MODEL, PROMPT, TIMEOUT_S, Person, check_person, run

# DSPy's JSON adapter sends a json_schema response_format only for a model LiteLLM says supports one; an
# unknown model gets none at all. DSPy's own engine reads a bundled metadata snapshot instead of LiteLLM's
# registry, so the LM goes through LiteLLM (engine="litellm") and the model is registered there.
litellm.register_model({f"openai/{MODEL}": {"litellm_provider": "openai", "mode": "chat",
                                             "supports_response_schema": True}})
lm = dspy.LM(f"openai/{MODEL}", api_base=BASE_URL, api_key=API_KEY, max_tokens=MAX_TOKENS, cache=False,
             num_retries=0, timeout=TIMEOUT_S, engine="litellm")
dspy.configure(lm=lm, adapter=dspy.JSONAdapter())


class Describe(dspy.Signature):
    """Describe the person the request asks for."""

    request: str = dspy.InputField()
    person: Person = dspy.OutputField()


def predict_typed() -> str:
    return check_person(dspy.Predict(Describe)(request=PROMPT).person)


CALLS = (predict_typed,)

if __name__ == "__main__":
    run(CALLS)
