"""int8 weights (`--quantize int8`) against the model's own dtype, side by side in one run: speed and quality.

    python -m benchmarks.quantize [--model smollm2-135m-instruct] [--dtype bfloat16] [--batch-sizes 1 16]

- Speed: the engine decoding B unconstrained requests (max_tokens tokens each), and B extraction requests under
  the extraction example's schema, both models alternating round after round; output tokens/s, best of rounds.
- Quality, next token: over `--text-tokens` tokens of real text (package descriptions, benchmarks/documents.py)
  fed one at a time, how often both models' most likely next token agree, and the mean KL divergence of int8's
  from the original.
- Quality, answers: the README examples' requests (extraction, classification, nested document) answered greedily
  by both; how many answers are the same text.
The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import torch

from benchmarks.documents import corpus_ids
from constrained.compiler import Compiler
from constrained.constraints import Constraint
from constrained.engine.engine import Engine, Submission
from constrained.engine.params import SamplingParams
from constrained.models import load_model
from constrained.testing import run_until_idle

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def example(name: str):
    """examples/<name>/run.py as a module (its inputs: TEXT, TICKETS)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / name / "run.py")
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # pydantic resolves names there
    spec.loader.exec_module(module)
    return module


def example_requests() -> list[tuple[str, list[dict], dict, int]]:
    """(name, messages, schema, max_tokens) of the README examples' requests, as their run.py send them."""
    def schema(name: str) -> dict:
        return json.loads((EXAMPLES / name / "schema.json").read_text())

    requests = [("extraction", [{"role": "system", "content": "Extract the contact details from the user's message."},
                                {"role": "user", "content": example("extraction").TEXT}], schema("extraction"), 200)]
    label = "Label the support ticket: bug, feature_request, question or praise, with your confidence."
    requests += [(f"classification {i}", [{"role": "system", "content": label}, {"role": "user", "content": ticket}],
                  schema("classification"), 30) for i, ticket in enumerate(example("classification").TICKETS)]
    requests.append(("nested_document", [{"role": "user", "content": "Write a short technical note on caching HTTP "
                                          "responses, as sections with paragraphs."}], schema("nested_document"), 400))
    return requests


def decode_speed(loaded, prompt: list[int], grammar, batch: int, max_tokens: int) -> float:
    """Output tokens/s of `batch` requests decoded together (seeded sampling, so both models do the same work)."""
    engine = Engine(loaded, max_batch_size=batch)
    submissions = [Submission(prompt, SamplingParams(max_tokens=max_tokens, seed=i, temperature=1.0), grammar)
                   for i in range(batch)]
    start = time.perf_counter()
    results = run_until_idle(engine, submissions)
    return sum(len(slot["tokens"]) for slot in results.values()) / (time.perf_counter() - start)


def next_token_agreement(plain, quantized, ids: list[int]) -> dict:
    """Top-1 agreement and mean KL(original || int8) of the next-token distributions over `ids`, fed one token a
    step as decoding does (a longer step would use the original weights)."""
    agree, kl = 0, 0.0
    caches = {"plain": None, "int8": None}
    with torch.inference_mode():
        for token in ids:
            logprobs = {}
            for name, loaded in (("plain", plain), ("int8", quantized)):
                out = loaded.model(torch.tensor([[token]]), past_key_values=caches[name], use_cache=True)
                caches[name] = out.past_key_values
                logprobs[name] = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
            p, q = logprobs["plain"], logprobs["int8"]
            agree += int(p.argmax() == q.argmax())
            kl += float((p.exp() * (p - q)).sum())
    return {"tokens": len(ids), "top1_agreement": round(agree / len(ids), 4), "mean_kl": round(kl / len(ids), 5)}


def answers(loaded, compiler: Compiler) -> dict[str, str]:
    """Each example request's greedy answer."""
    out = {}
    for name, messages, schema, max_tokens in example_requests():
        prompt = loaded.tokenizer.encode(loaded.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False))
        grammar = compiler.compile(Constraint.json_schema(schema))
        result = run_until_idle(Engine(loaded, max_batch_size=1), [
            Submission(prompt, SamplingParams(max_tokens=max_tokens, temperature=0.0), grammar, name)])
        out[name] = result[(name, 0)]["text"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--text-tokens", type=int, default=512)
    args = parser.parse_args()

    dtype = getattr(torch, args.dtype)
    models = {name: load_model(args.model, device="cpu", dtype=dtype, quantize=name) for name in ("none", "int8")}
    tokenizer = models["none"].tokenizer
    compiler = Compiler(tokenizer, vocab_rows=models["none"].vocab_rows, eos_token_ids=models["none"].eos_token_ids)
    extraction = compiler.compile(Constraint.json_schema(example_requests()[0][2]))
    prompt = tokenizer.encode(tokenizer.apply_chat_template(example_requests()[0][1], add_generation_prompt=True,
                                                            tokenize=False))
    speed: dict = {}
    for batch in args.batch_sizes:
        for workload, grammar in (("unconstrained", None), ("extraction", extraction)):
            decode_speed(models["none"], prompt, grammar, batch, 4)  # warm-up: first shapes run slow
            decode_speed(models["int8"], prompt, grammar, batch, 4)
            runs: dict[str, list[float]] = {"none": [], "int8": []}
            for _ in range(args.rounds):
                for name, loaded in models.items():
                    runs[name].append(decode_speed(loaded, prompt, grammar, batch, args.max_tokens))
            cell = {f"{name}_tokens_per_s": round(max(values), 1) for name, values in runs.items()}
            cell["int8_over_none"] = round(cell["int8_tokens_per_s"] / cell["none_tokens_per_s"], 3)
            speed[f"{workload}_b{batch}"] = cell
            print(f"batch {batch:>3} {workload:>13}: {json.dumps(cell)}")
    agreement = next_token_agreement(models["none"], models["int8"],
                                     corpus_ids(tokenizer)[:args.text_tokens])
    print(f"next token over {agreement['tokens']} tokens of text: top-1 agreement {agreement['top1_agreement']}, "
          f"mean KL {agreement['mean_kl']}")
    texts = {name: answers(loaded, compiler) for name, loaded in models.items()}
    same = [name for name in texts["none"] if texts["none"][name] == texts["int8"][name]]
    for name in texts["none"]:
        print(f"{name}: {'same' if name in same else 'differs'}\n  none: {texts['none'][name]}\n  int8: "
              f"{texts['int8'][name]}")
    print(json.dumps({"model": args.model, "dtype": args.dtype, "max_tokens": args.max_tokens, "rounds": args.rounds,
                      "speed": speed, "next_token": agreement,
                      "answers_same": f"{len(same)} of {len(texts['none'])}", "answers": texts}))


if __name__ == "__main__":
    main()
