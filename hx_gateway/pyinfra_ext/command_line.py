"""pyinfra's own command line, where it decides whether this deploy can run as asked.

pyinfra passes no parsed options to a deploy file, so the two that matter are read from `sys.argv`.
"""

from __future__ import annotations

import os

NO_WAIT = ("pyinfra --no-wait runs each host's operations on their own, so the gateways behind the balancers "
           "would restart at the same moment; run without --no-wait (the rolling restart takes one gateway at a "
           "time)")


def group_data_directories(argv: list[str]) -> list[str]:
    """The directories given as `--group-data DIR` or `--group-data=DIR`."""
    found = []
    for index, arg in enumerate(argv):
        if arg == "--group-data" and index + 1 < len(argv):
            found.append(argv[index + 1])
        elif arg.startswith("--group-data="):
            found.append(arg.partition("=")[2])
    return found


def command_line_problems(argv: list[str], behind_balancers: bool) -> list[str]:
    """What in pyinfra's command line this deploy refuses: a --group-data that is no directory
    (pyinfra skips it without a word, and the defaults would be deployed instead of the operator's
    settings), and --no-wait with gateways behind balancers."""
    problems = [f"--group-data {path}: no such directory; pyinfra would skip it and deploy without its settings"
                for path in group_data_directories(argv) if not os.path.isdir(path)]
    if behind_balancers and "--no-wait" in argv:
        problems.append(NO_WAIT)
    return problems
