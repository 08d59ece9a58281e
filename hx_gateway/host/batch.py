"""Runs on a host: several fact programs in one python3, one round trip (hx_gateway/pyinfra_ext/facts.py, `Batch`).

    python3 -I -S host_batch.py PROGRAMS_JSON      PROGRAMS_JSON: [[source, argv], ...]

Each program is the text of a host module (host_facts.py, host_generations.py, ...) run as
`__main__` with its own argv; what it prints is one JSON document. Prints their results as one JSON
list, in order.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys


def run_all(programs: list[list]) -> list:
    results = []
    for source, argv in programs:
        sys.argv = ["-c", *argv]
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(source, "<hx-fact>", "exec"), {"__name__": "__main__"})
        results.append(json.loads(printed.getvalue()))
    return results


if __name__ == "__main__":
    print(json.dumps(run_all(json.loads(sys.argv[1]))))
