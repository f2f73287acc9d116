"""Benchmarks (`python -m v4s_agent.bench sim|vector|generate|train|habitat|data|serve|context [key=value ...]`).

Each prints progress on stderr and ends with ONE JSON line on stdout (the command contract of every measurement).
Speed targets live here, never in timed tests: ratios are measured side by side in one run.
"""
from __future__ import annotations

import importlib
import sys

from envs.config import json_command

BENCHES = {
    "sim": "envs.embedded.bench:bench_sim",
    "vector": "envs.embedded.bench:bench_vector",
    "generate": "models.bench:bench_generate",
    "train": "models.bench:bench_train",
    "context": "models.bench:bench_context",
    "habitat": "envs.habitat.bench:bench_habitat",
    "data": "models.data_bench:bench_data",
    "serve": "v4s_agent.serve:bench_serve",
}


def main(argv: list[str] | None = None) -> int:
    from v4s_agent.console import pop_verbose, setup_logging, stdout_to_stderr

    argv, verbose = pop_verbose(list(sys.argv[1:] if argv is None else argv))
    if not argv or argv[0] not in BENCHES:
        print(f"usage: python -m v4s_agent.bench [-v] {{{'|'.join(BENCHES)}}} [key=value ...]", file=sys.stderr)
        return 2
    setup_logging(verbose)
    module, _, fn = BENCHES[argv[0]].partition(":")

    def run() -> dict:
        with stdout_to_stderr():  # library output never reaches the JSON line's stream
            return getattr(importlib.import_module(module), fn)(argv[1:])

    return json_command(run)  # a bad key=value (envs.config.parse_overrides) or option: one line, exit 2


if __name__ == "__main__":
    raise SystemExit(main())
