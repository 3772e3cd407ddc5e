"""Coverage and correctness of JSON Schema backends on real-world schemas, side by side in one run.

    python -m benchmarks.coverage [--data FILE.jsonl ...] [--test-suite] [--backend NAME ...]
                                  [--limit N] [--seed S] [--jobs J] [--deadline S]

Modules: `cases` (the data), `adapter` (what a backend provides and the token walk they share), one
module per backend (`ours`, `llguidance_peer`, `xgrammar_peer`, `outlines_core_peer`), `evaluate` (one
schema on one backend), `pool` (worker processes with a deadline), `report` (tables and the JSON line).
"""
