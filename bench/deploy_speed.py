"""Deploy speed on the lab: fresh converge (split into phases), no-op re-run and dry run; medians.

    python bench/deploy_speed.py [--runs 3] [--gateways 1] [--artifact-cache cold|warm|both]

Goals (issues: the deploy, benchmarks): no-op re-run <= 3 s for three hosts (issue 22: < 1 s for one
gateway, on a settled machine; the no-op right after the converge is reported beside it; pyinfra's own
start, measured beside them, is the floor under both); converge <= 25 s
excluding the one-time wheelhouse download (built before timing starts). With --gateways N the lab
runs N gateway hosts and pyinfra deploys them in parallel; the converge is then bound by CPU (every
LiteLLM boot costs CPU-seconds), so it also reports the CPU-seconds the whole machine used.
--artifact-cache (issue 28): `cold` empties the control node's venv artifact cache before each fresh
converge (the first gateway builds, the others receive); `warm` keeps the artifact a first converge of
fresh gateways cached (a rebuilt host: it receives its venv); `both` alternates the two in one run.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

from common import REPO, report, use_random_secrets

from hx_gateway.venv_artifacts import ARTIFACT_DIR
from lab.lab import Lab, exec_in

PYINFRA = os.path.join(os.path.dirname(sys.executable), "pyinfra")
RESET = ("systemctl disable --now litellm 2>/dev/null; rm -rf /opt/litellm /etc/litellm /var/lib/hx-gateway "
         "/etc/systemd/system/litellm.service; systemctl daemon-reload; sync")
# Phase = from the start of its first operation to the start of the next phase's first.
PHASES = [("plan_and_prepare", None), ("install", "Install LiteLLM"),
          ("configure", "Configure | Directory"), ("start_and_health", "Service | Unit")]


def drop_page_cache() -> bool:
    """A fresh host starts with a cold page cache. On this VM each converge's ~1 GB of writes also
    makes the next one slower while it stays cached (measured: the same install 7 -> 11 -> 16 s in a
    row, 8 s again after dropping the cache), so every fresh converge starts from a dropped cache.
    Needs root; returns whether it happened."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("1\n")
        return True
    except OSError:
        return False


def machine_cpu_seconds() -> float:
    fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6]  # user nice system irq softirq
    return busy / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Run:
    wall_s: float
    machine_cpu_s: float  # the whole machine: control node, lab hosts, dockerd, sshd
    control_cpu_s: float  # pyinfra's own process (what a real fleet's control node would spend)
    op_starts: dict[str, float]  # when each operation started, seconds from launch


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_run(*extra: str, inventory: str = "lab/inventory.py") -> Run:
    confirm = [] if "--dry" in extra else ["-y"]
    cpu, own, started = machine_cpu_seconds(), children_cpu_seconds(), time.monotonic()
    proc = subprocess.Popen([PYINFRA, *confirm, inventory, "deploy.py", *extra], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    op_starts: dict[str, float] = {}
    tail = []
    for line in proc.stdout:  # type: ignore[union-attr]
        tail = (tail + [line])[-60:]
        match = re.search(r"--> Starting operation: (.+?)\s*$", line)
        if match:
            op_starts.setdefault(match.group(1), time.monotonic() - started)
    if proc.wait() != 0:
        raise SystemExit("".join(tail))
    return Run(round(time.monotonic() - started, 2), round(machine_cpu_seconds() - cpu, 1),
               round(children_cpu_seconds() - own, 2), op_starts)


def pyinfra_start_seconds() -> float:
    """The floor under any run: pyinfra starting and exiting (imports, gevent, its plugins), no host."""
    started = time.monotonic()
    subprocess.run([PYINFRA, "--version"], cwd=REPO, check=True, capture_output=True)
    return round(time.monotonic() - started, 2)


def phase_split(wall: float, op_starts: dict[str, float]) -> dict[str, float]:
    """Seconds per phase; a phase that did not run (no upload on a no-op) gets 0."""
    starts = {"plan_and_prepare": 0.0}
    for name, prefix in PHASES[1:]:
        found = [t for op, t in op_starts.items() if prefix in op]
        if found:
            starts[name] = min(found)
    ordered = sorted(starts.items(), key=lambda item: item[1])
    ends = [t for _, t in ordered[1:]] + [wall]
    durations = {name: round(end - begin, 2) for (name, begin), end in zip(ordered, ends, strict=True)}
    return {name: durations.get(name, 0.0) for name, _ in PHASES}


def wait_until_settled(limit_s: float = 120.0) -> float:
    """Seconds until the machine is idle again (under 10 % of one core busy over 2 s): a gateway that
    just started keeps a core busy for a while (LiteLLM's start-up work, a cold page cache), and a
    no-op measured then measures that too. Both are reported."""
    began = time.monotonic()
    while time.monotonic() - began < limit_s:
        before = machine_cpu_seconds()
        time.sleep(2)
        if machine_cpu_seconds() - before < 0.2:
            break
    return round(time.monotonic() - began, 1)


def median(samples: list[float]) -> float:
    return round(statistics.median(samples), 2)


def converged_lab(gateways: int, prime_artifact: bool) -> Lab:
    """The lab with `gateways` gateway hosts, converged with this run's random secrets (this also
    builds the wheelhouse once; it is cached on the control node). `prime_artifact`: first a converge
    of at least two fresh gateways, which builds the venv once, packs it and caches it (a lone
    gateway's venv is not packed), as a fleet's first converge does."""
    lab = Lab(gateways=max(gateways, 2) if prime_artifact else gateways)
    lab.up()
    if prime_artifact:
        use_random_secrets(HX_LAB_GATEWAYS=str(len(gateway_names(lab))))
        reset(gateway_names(lab))
        timed_run()
        if not any(ARTIFACT_DIR.glob("venv-*.tar.zst")):
            raise SystemExit("no venv artifact was cached by the first converge of fresh gateways")
    use_random_secrets(HX_LAB_GATEWAYS=str(gateways))
    timed_run()
    return lab


def gateway_names(lab: Lab) -> list[str]:
    return [h.name for h in lab.hosts() if h.role == "gateway"]


def reset(gateways: list[str]) -> None:
    for name in gateways:
        exec_in(name, "sh", "-c", RESET, check=False)


def fresh_converge(gateways: list[str], warm: bool) -> dict:
    """Fresh gateways, a dropped page cache; `warm`: the artifact cache as primed, else empty (the
    primed one is set aside meanwhile and put back after)."""
    reset(gateways)
    aside = ARTIFACT_DIR.with_name("venvs.bench-aside")
    set_aside = not warm and ARTIFACT_DIR.exists()
    if set_aside:
        shutil.rmtree(aside, ignore_errors=True)
        ARTIFACT_DIR.rename(aside)
    try:
        dropped = drop_page_cache()
        run = timed_run()
    finally:
        if set_aside:
            shutil.rmtree(ARTIFACT_DIR, ignore_errors=True)
            aside.rename(ARTIFACT_DIR)
    return {"wall_s": run.wall_s, "machine_cpu_s": run.machine_cpu_s, "page_cache_dropped": dropped,
            "phases_s": phase_split(run.wall_s, run.op_starts)}


def summary(converges: list[dict]) -> dict:
    middle = sorted(converges, key=lambda c: c["wall_s"])[len(converges) // 2]
    return {"median_s": middle["wall_s"], "phases_s": middle["phases_s"], "machine_cpu_s": middle["machine_cpu_s"],
            "samples_s": [c["wall_s"] for c in converges],
            "page_cache_dropped_before_each": all(c["page_cache_dropped"] for c in converges)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--gateways", type=int, default=1)
    parser.add_argument("--artifact-cache", choices=("cold", "warm", "both"), default="cold",
                        help="both: cold and warm converges alternating, in one run")
    args = parser.parse_args()
    modes = {"cold": [False], "warm": [True], "both": [False, True]}[args.artifact_cache]
    lab = converged_lab(args.gateways, prime_artifact=True in modes)
    gateways = gateway_names(lab)[:args.gateways]
    converges: dict[bool, list[dict]] = {warm: [] for warm in modes}
    for _ in range(args.runs):
        for warm in modes:
            converges[warm].append(fresh_converge(gateways, warm))
    right_after = timed_run().wall_s  # the no-op a person runs at once, to see the converge was complete
    settled_after = wait_until_settled()
    noop, dry, start = [], [], []
    for _ in range(args.runs):  # alternating, so the three see the same machine state
        noop.append(timed_run().wall_s)
        dry.append(timed_run("--dry").wall_s)
        start.append(pyinfra_start_seconds())
    figures = {f"fresh_converge_{'warm' if warm else 'cold'}_artifact_cache": summary(runs)
               for warm, runs in converges.items()}
    if len(modes) == 2:
        figures["warm_over_cold"] = round(figures["fresh_converge_warm_artifact_cache"]["median_s"]
                                          / figures["fresh_converge_cold_artifact_cache"]["median_s"], 2)
    report("deploy_speed", {
        "gateways": len(gateways), "hosts": len(gateways) + sum(h.role != "gateway" for h in lab.hosts()),
        "runs": args.runs, **figures,
        "noop_right_after_converge_s": right_after, "settled_after_s": settled_after,
        "noop_rerun_median_s": median(noop), "noop_samples_s": noop,
        "dry_run_median_s": median(dry), "dry_samples_s": dry,
        "pyinfra_own_start_median_s": median(start),
    })


if __name__ == "__main__":
    main()
