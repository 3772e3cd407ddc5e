"""Coverage and correctness of JSON Schema backends on real-world schemas, side by side in one run.

    python -m benchmarks.coverage [--data FILE.jsonl ...] [--test-suite [--no-jsonschemabench]]
                                  [--backend NAME ...] [--limit N] [--seed S] [--jobs J] [--deadline S]

Default: every JSONSchemaBench file in ../shared/data, backends constrained, llguidance and xgrammar (when
installed: extra `bench`); outlines_core only on request (seconds per schema). Results: benchmarks/RESULTS.md.

Modules: `cases` (the data), `adapter` (what a backend provides and the token walk they share), one
module per backend (`ours`, `llguidance_peer`, `xgrammar_peer`, `outlines_core_peer`), `evaluate` (one
schema on one backend), `pool` (worker processes with a deadline), `report` (tables and the JSON line).
"""
