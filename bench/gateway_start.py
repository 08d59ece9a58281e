"""A gateway's start on the lab: seconds from `systemctl start` until /health/liveliness answers, the
CPU the service used to get there, its memory (PSS) and the seconds its `systemctl stop` takes,
started through templates/gateway/hx_start.py (the proxy imported with the
garbage collector paused, then frozen) against LiteLLM's own `litellm` command with the same arguments.

    python bench/gateway_start.py [--rounds 5]

The lab is deployed first (one gateway, gunicorn with its default workers); then the two starts
alternate `--rounds` times, the `litellm` one through a systemd drop-in that only swaps the command,
removed at the end. Medians of the rounds, each round listed. What it decides: hx_start.py stays only
while it buys at least 10 % of the restart a deploy waits for (the clarity budget).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import urllib.request

from common import lab_deploy, report, round_median, seconds, use_random_secrets  # first: puts the repo on sys.path

from lab.lab import Lab, address_of, exec_in, write_file

UNIT = "/etc/systemd/system/litellm.service"
DROP_IN = "/etc/systemd/system/litellm.service.d/bench-start.conf"


FIGURES = ("live_s", "cpu_s", "memory_mb", "stop_s")


def plain_litellm_exec_start(unit_text: str) -> str:
    """The unit's ExecStart with LiteLLM's console script in place of hx_start.py (same arguments)."""
    found = re.search(r"^ExecStart=(\S+)/bin/python -P \S+/hx_start\.py (.*)$", unit_text, re.MULTILINE)
    if not found:
        raise SystemExit(f"{UNIT} does not start LiteLLM through hx_start.py: deploy this code first")
    return f"{found[1]}/bin/litellm {found[2]}"


def start_until_live(url: str, timeout: float = 120) -> float:
    started = time.monotonic()
    exec_in("hx-api", "systemctl", "start", "litellm")
    while time.monotonic() - started < timeout:
        try:
            with urllib.request.urlopen(url + "/health/liveliness", timeout=2) as answer:
                if answer.status == 200:
                    return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"the gateway did not answer within {timeout} s")


# The service's processes (gunicorn's master and its workers): CPU ticks since each started (user and
# system, the master's reaped children too), and PSS in kB (pages shared with the master count once).
PROCESS_FIGURES = r"""main=$(systemctl show -p MainPID --value litellm)
for p in $main $(pgrep -P $main); do
  echo "$(cut -d' ' -f14-17 /proc/$p/stat) $(awk '/^Pss:/ {print $2}' /proc/$p/smaps_rollup)"
done"""


def service_figures() -> dict[str, float]:
    """CPU the service's processes used since the restart and their memory (PSS) now."""
    ticks = pss_kb = 0
    for line in exec_in("hx-api", "sh", "-c", PROCESS_FIGURES).splitlines():
        *cpu, pss = (int(field) for field in line.split())
        ticks, pss_kb = ticks + sum(cpu), pss_kb + pss
    return {"cpu_s": ticks / os.sysconf("SC_CLK_TCK"), "memory_mb": pss_kb / 1024}


def stop_service() -> None:
    exec_in("hx-api", "systemctl", "stop", "litellm")


def use_start(kind: str, plain: str) -> None:
    if kind == "litellm":
        write_file("hx-api", DROP_IN, f"[Service]\nExecStart=\nExecStart={plain}\n")
    else:
        exec_in("hx-api", "rm", "-f", DROP_IN)
    exec_in("hx-api", "systemctl", "daemon-reload")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    use_random_secrets()
    Lab().up()
    lab_deploy()
    print("deployed", file=sys.stderr, flush=True)
    url = f"http://{address_of('hx-api')}:4000"
    plain = plain_litellm_exec_start(exec_in("hx-api", "cat", UNIT))
    exec_in("hx-api", "mkdir", "-p", DROP_IN.rsplit("/", 1)[0])
    rounds: dict[str, list[dict]] = {"litellm": [], "hx_start": []}
    running = None  # the start the service runs now: its stop is timed when the other one takes over
    try:
        for _ in range(args.rounds):
            for kind in rounds:
                use_start(kind, plain)
                stop_s = seconds(stop_service)
                if running:
                    rounds[running][-1]["stop_s"] = stop_s
                live_s = start_until_live(url)
                time.sleep(2)  # the workers' own start finishes after the first answer
                rounds[kind].append({"live_s": round(live_s, 2),
                                     **{k: round(v, 2) for k, v in service_figures().items()}})
                running = kind
                print(kind, rounds[kind][-1], file=sys.stderr, flush=True)
        rounds[running][-1]["stop_s"] = seconds(stop_service)
    finally:
        use_start("hx_start", plain)
        exec_in("hx-api", "systemctl", "restart", "litellm")

    medians = {kind: {figure: round_median(runs, figure) for figure in FIGURES} for kind, runs in rounds.items()}
    ratios = {f"{figure}_ratio": round(medians["hx_start"][figure] / medians["litellm"][figure], 3)
              for figure in FIGURES}
    report("gateway_start", {"medians": medians, **ratios, "rounds": rounds})


if __name__ == "__main__":
    main()
