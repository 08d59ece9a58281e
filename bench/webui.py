"""Open WebUI in the lab (issue 25): its install and start on a fresh hx-webui, its restart, its memory,
and the latency a chat through Open WebUI adds over the same chat straight to the gateway.

    python bench/webui.py [--runs 3] [--chats 100]

Each fresh converge starts from a host without Open WebUI and a dropped page cache; the wheelhouse is
built before timing starts (the first lab build pays for its download once). Two kinds, alternating:
`built` (the control node's cache lost the venv artifact: built from the wheelhouse, packed, fetched)
and `received` (a rebuilt host: the artifact the run before packed is unpacked). The chats alternate
(one through Open WebUI's API as its admin, one straight to the gateway on Open WebUI's key), c=1,
non-streamed; the lab's Ollama double answers after 50 ms. Open WebUI's key gets a limit of 6000 requests
a minute here (its default, 60, would refuse the chats with 429).
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from common import report, use_random_secrets
from deploy_speed import drop_page_cache, timed_run

from hx_gateway import lock, venv_artifacts
from lab.lab import Lab, address_of, exec_in

FRESH_WEBUI = ("systemctl disable --now open-webui 2>/dev/null; rm -rf /opt/open-webui /etc/open-webui "
               "/var/lib/open-webui /etc/systemd/system/open-webui.service; systemctl daemon-reload; sync")
INSTALL_OP, CONFIGURE_OP, START_OP = "Install Open WebUI", "Open WebUI /etc/systemd/system", "enabled and running"


def phases(run) -> dict[str, float]:
    def start(part: str) -> float:
        return min(t for op, t in run.op_starts.items() if part in op)

    return {"install_s": round(start(CONFIGURE_OP) - start(INSTALL_OP), 2),
            "start_and_health_s": round(run.wall_s - start(START_OP), 2), "wall_s": run.wall_s,
            "machine_cpu_s": run.machine_cpu_s}


def restart_seconds(url: str) -> float:
    started = time.monotonic()
    exec_in("hx-webui", "systemctl", "restart", "open-webui")
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return round(time.monotonic() - started, 2)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 1)


def chat_latency(webui_url: str, gateway: str, chats: int) -> dict:
    with httpx.Client(timeout=60) as http:
        signin = http.post(f"{webui_url}/api/v1/auths/signin",
                           json={"email": "admin@localhost", "password": os.environ["HX_WEBUI_ADMIN_PASSWORD"]})
        signin.raise_for_status()
        through = {"Authorization": f"Bearer {signin.json()['token']}"}
        straight = {"Authorization": f"Bearer {os.environ['HX_CLIENT_KEY_OPEN_WEBUI']}"}
        body = {"model": "phi3-3.8b", "stream": False, "messages": [{"role": "user", "content": "hello"}]}
        samples: dict[str, list[float]] = {"webui": [], "gateway": []}
        for index in range(chats + 5):
            for name, url, headers in (("webui", f"{webui_url}/api/chat/completions", through),
                                       ("gateway", f"{gateway}/v1/chat/completions", straight)):
                started = time.perf_counter()
                response = http.post(url, headers=headers, json=body)
                elapsed = (time.perf_counter() - started) * 1000
                response.raise_for_status()
                if index >= 5:  # the first few warm both up
                    samples[name].append(elapsed)
    figures = {name: {"p50_ms": percentile(s, 0.5), "p95_ms": percentile(s, 0.95),
                      "mean_ms": round(statistics.mean(s), 1)} for name, s in samples.items()}
    figures["added_p50_ms"] = round(figures["webui"]["p50_ms"] - figures["gateway"]["p50_ms"], 1)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--chats", type=int, default=100)
    args = parser.parse_args()
    os.environ["HX_LAB_WEBUI"] = "1"
    use_random_secrets(HX_WEBUI_SECRET_KEY=secrets.token_urlsafe(32), HX_WEBUI_ADMIN_PASSWORD=secrets.token_urlsafe(32))
    Lab.from_env().up()
    (target,) = lock.committed_targets(lock.OPEN_WEBUI)
    lock.build_wheelhouse(target, lock.OPEN_WEBUI.lock_path(target), lock.OPEN_WEBUI)  # not timed
    data = Path(tempfile.mkdtemp(prefix="bench-webui-"))
    (data / "all.py").write_text('client_keys = [{"name": "open-webui", "models": [], "rpm": 6000, '
                                 '"max_concurrent": 50, "expires": None}]\n')
    options = ("--group-data", str(data))
    timed_run(*options)
    venv_id = exec_in("hx-webui", "cat", "/opt/open-webui/current/.hx-venv-id").strip()
    artifact = venv_artifacts.Artifact(venv_id, target.key, f"/opt/open-webui/venvs/{venv_id[:16]}")
    converges: dict[str, list[dict]] = {"built": [], "received": []}
    for _ in range(args.runs):
        for kind in converges:
            if kind == "built":
                venv_artifacts.forget(artifact)
            exec_in("hx-webui", "sh", "-c", FRESH_WEBUI)
            drop_page_cache()
            run = timed_run(*options)
            said = "packed into its cache" if kind == "built" else "received from the control node"
            assert any(said in op for op in run.op_starts), list(run.op_starts)
            converges[kind].append(phases(run))
    webui_url = f"http://{address_of('hx-webui')}:8080"
    restarts = [restart_seconds(webui_url) for _ in range(args.runs)]
    memory = int(exec_in("hx-webui", "systemctl", "show", "-p", "MemoryCurrent", "--value", "open-webui").strip() or 0)
    venv_mb = int(exec_in("hx-webui", "du", "-sm", "/opt/open-webui/venvs").split()[0])
    report("webui", {
        "fresh_converge": {kind: {key: statistics.median(c[key] for c in runs) for key in runs[0]}
                           for kind, runs in converges.items()},
        "fresh_converge_runs": converges, "artifact_mb": round(artifact.path.stat().st_size / 1e6),
        "restart_to_health_s": statistics.median(restarts),
        "restart_runs_s": restarts, "memory_mb_after_restart": round(memory / 2**20), "venv_mb": venv_mb,
        "chat_c1": chat_latency(webui_url, f"http://{address_of('hx-api')}:4000", args.chats)})


if __name__ == "__main__":
    main()
