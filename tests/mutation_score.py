"""Score of the last `make mutation` run, per module and in total, from mutmut's result files.

`python tests/mutation_score.py PATTERN... [--survivors]`: PATTERN as given to `mutmut run` (the
Makefile's MUTATION_SCOPE). A mutant is caught when a test failed on it, or it timed out or crashed
(as mutmut counts them); the score is caught / mutants checked. `mutmut show NAME` prints a diff.
"""
from __future__ import annotations

import collections
import fnmatch
import json
import sys
from pathlib import Path

from mutmut.stats import status_by_exit_code


def scores(patterns: list[str], root: Path = Path("mutants")) -> tuple[dict[str, collections.Counter], list[str]]:
    per_module: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    survivors = []
    for meta in sorted(root.rglob("*.meta")):
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            if not any(fnmatch.fnmatch(name, p) for p in patterns):
                continue
            status = "not checked" if code is None else status_by_exit_code[code]
            per_module[name.split(".x")[0]][status] += 1
            if status in ("survived", "no tests"):
                survivors.append(name)
    return per_module, survivors


def main(argv: list[str]) -> int:
    patterns = [a for a in argv if not a.startswith("--")]
    per_module, survivors = scores(patterns)
    if not per_module:
        print("no mutmut results for these patterns: run `make mutation` first", file=sys.stderr)
        return 2
    total: collections.Counter = collections.Counter()
    print("| module | mutants | killed | timeout | crashed | survived | no tests | score |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for module, c in sorted(per_module.items()) + [("total", total)]:
        if module != "total":
            total.update(c)
        checked = sum(c.values()) - c["not checked"]
        killed = c["killed"] + c["timeout"] + c["segfault"]
        print(f"| {module} | {checked} | {c['killed']} | {c['timeout']} | {c['segfault']} | {c['survived']} | {c['no tests']} | "
              f"{killed / max(1, checked):.0%} |")
    if "--survivors" in argv:
        print("\n".join(survivors))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
