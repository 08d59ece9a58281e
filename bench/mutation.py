"""Mutation testing of the pure-logic modules with the unit tests (`./hx mutate`): how many of the
mutants mutmut makes of the settings, secrets, version-policy, verdict and redaction code the unit
tests kill, and which survive. The modules and the test options are in pyproject.toml [tool.mutmut].

    .venv/bin/python bench/mutation.py [--max-children 2]

Goal: at least 85 % killed; bench/README.md lists the survivors and why each is harmless or left.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from common import REPO, report

MUTMUT = str(Path(sys.executable).parent / "mutmut")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    shutil.rmtree(REPO / "mutants", ignore_errors=True)  # a fresh run: no result from older code
    subprocess.run([MUTMUT, "run", "--max-children", str(args.max_children)], cwd=REPO, check=False)
    subprocess.run([MUTMUT, "export-cicd-stats"], cwd=REPO, check=True, capture_output=True)
    stats = json.loads((REPO / "mutants" / "mutmut-cicd-stats.json").read_text())
    survivors = [line.strip() for line in subprocess.run([MUTMUT, "results"], cwd=REPO, capture_output=True,
                                                         text=True).stdout.splitlines() if line.strip()]
    judged = stats["killed"] + stats["survived"]
    score = round(100 * stats["killed"] / judged, 1) if judged else 0.0
    print("surviving mutants:")
    for line in survivors:
        print(f"  {line}")
    report("mutation", {"killed": stats["killed"], "survived": stats["survived"], "total": stats["total"],
                        "score_percent": score, "goal_percent": 85,
                        "other": {k: v for k, v in stats.items() if k not in ("killed", "survived", "total")}})
    return 0 if score >= 85 else 1


if __name__ == "__main__":
    sys.exit(main())
