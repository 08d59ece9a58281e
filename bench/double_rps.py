"""Requests/s of the Ollama double on one core, measured with wrk over loopback.

    python bench/double_rps.py [--seconds 10]
Goal: >= 5,000 rps on one core, so the gateway is always what a gateway benchmark measures.
"""

from __future__ import annotations

import argparse
import re
import shutil
import socket
import subprocess
import sys
import time

from common import REPO, report


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, stdout=subprocess.DEVNULL)
    port = free_port()
    double = subprocess.Popen(["taskset", "-c", "0", sys.executable, str(REPO / "lab/ollama_double.py"),
                               "--bind", "127.0.0.1", "--port", str(port), "--host-name", "bench"])
    try:
        time.sleep(1)
        figures = {}
        for path in ("/api/version", "/api/tags"):
            out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c32", f"-d{args.seconds}s",
                                  f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True).stdout
            rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
            errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
            figures[path] = {"rps": rps, "non_2xx": int(errors.group(1)) if errors else 0}
        figures["double_cores"] = 1
        report("double_rps", figures)
    finally:
        double.terminate()


if __name__ == "__main__":
    main()
