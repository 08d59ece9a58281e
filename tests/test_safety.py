"""Safe changes: a failed start rolls back, manual rollback, a dead backend stays invisible, and a
deploy killed mid-install converges on the next run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
from conftest import LAB_INVENTORY, REPO, gateway_url, main_pid, pyinfra

from hx_gateway.load import chat_body, run_load
from lab.lab import exec_in, write_file

pytestmark = pytest.mark.lab


def deploy_traceback(output: str) -> bool:
    """A traceback of the deploy's own code (the journal lines it quotes may hold LiteLLM's)."""
    return "Unexpected error in Python callback" in output or "hx_gateway/pyinfra_ext/health.py" in output


class Poller:
    """A client asking /v1/models every 100 ms while a deploy runs: when did it see failures.

    It proves its own sampling: on exit it fails if its thread died of anything but a failed request,
    or if its answers leave a hole in the run longer than one timed-out request (MAX_GAP)."""

    TIMEOUT = 5.0
    MAX_GAP = TIMEOUT + 1.0

    def __init__(self, key: str) -> None:
        self.key, self.seen, self._stop = key, [], threading.Event()
        self.crashed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            with httpx.Client(base_url=gateway_url(), timeout=self.TIMEOUT) as client:
                while not self._stop.is_set():
                    try:
                        answer = client.get("/v1/models", headers={"Authorization": f"Bearer {self.key}"})
                        ok = answer.status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    self.seen.append((time.monotonic(), ok))
                    time.sleep(0.1)
        except BaseException as error:  # a broken sampler must fail the test, not pass it with no samples
            self.crashed = error

    def __enter__(self) -> Poller:
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        ended = time.monotonic()
        time.sleep(1.0)  # a few answers after the run, too
        self._stop.set()
        self._thread.join()
        assert self.crashed is None, f"the poller died: {self.crashed!r}"
        times = [self.started, *(at for at, _ in self.seen), ended]
        assert self.seen and self.seen[-1][0] >= ended, "the poller stopped before the run did"
        gaps = [b - a for a, b in zip(times, times[1:], strict=False) if b <= ended]
        assert max(gaps) <= self.MAX_GAP, f"the poller left a {max(gaps):.1f} s hole in the run"
        assert len(self.seen) >= (ended - self.started) / self.MAX_GAP, "too few answers to prove anything"

    def outage_windows(self) -> list[float]:
        """Lengths (s) of the runs of consecutive failures."""
        windows, start = [], None
        for at, ok in self.seen:
            if not ok and start is None:
                start = at
            elif ok and start is not None:
                windows.append(round(at - start, 1))
                start = None
        if start is not None:
            windows.append(float("inf"))
        return windows


def test_a_config_litellm_refuses_never_reaches_clients(converged, lab_secrets, tmp_path):
    # Measured: LiteLLM 1.106.2 refuses to start with router_settings.health_check_interval.
    (tmp_path / "litellm.py").write_text("extra_router_settings = {'health_check_interval': 30}\n")
    pid = main_pid()
    with Poller(lab_secrets["HX_MASTER_KEY"]) as poller:
        run = pyinfra(secrets_env=lab_secrets, group_data=tmp_path)
    assert run.returncode != 0
    assert "failed its canary start" in run.output and "was not restarted" in run.output
    assert not deploy_traceback(run.output)
    assert "health_check_interval" in run.output  # the journal line that says why
    assert "health_check_interval" not in exec_in("hx-api", "cat", "/etc/litellm/config.yaml")
    assert main_pid() == pid and poller.outage_windows() == []  # clients never noticed
    again = pyinfra(secrets_env=lab_secrets)  # the restored files are exactly the declared ones
    assert again.returncode == 0 and again.changed_ops() == [], again.changed_ops()


# A host in a state the loopback canary cannot see: the next start of the real unit fails once (as a
# unit that cannot bind, or a full disk, would), and the one after succeeds.
FAIL_NEXT_START = """[Service]
ExecStartPre=+/bin/sh -c 'if [ -e /run/hx-fail-next-start ]; then rm -f /run/hx-fail-next-start; exit 1; fi'
"""


def test_a_unit_that_fails_after_the_restart_is_rolled_back(converged, lab_secrets, tmp_path):
    (tmp_path / "litellm.py").write_text("request_timeout = 44\n")
    exec_in("hx-api", "mkdir", "-p", "/etc/systemd/system/litellm.service.d")
    write_file("hx-api", "/etc/systemd/system/litellm.service.d/hx-test-fail.conf", FAIL_NEXT_START)
    exec_in("hx-api", "sh", "-c", "touch /run/hx-fail-next-start && systemctl daemon-reload")
    try:
        with Poller(lab_secrets["HX_MASTER_KEY"]) as poller:
            run = pyinfra(secrets_env=lab_secrets, group_data=tmp_path)
        assert run.returncode != 0
        assert "exited at start" in run.output and not deploy_traceback(run.output)
        assert "Rolled back to generation" in run.output and "the previous generation is serving again" in run.output
        assert "timeout: 44" not in exec_in("hx-api", "cat", "/etc/litellm/config.yaml")
        windows = poller.outage_windows()
        print(f"client-visible outage windows during the failed deploy: {windows} s")
        assert len(windows) <= 1 and all(w != float("inf") for w in windows)  # one gap, then served again
    finally:
        exec_in("hx-api", "sh", "-c", "rm -rf /etc/systemd/system/litellm.service.d /run/hx-fail-next-start && "
                                      "systemctl daemon-reload")
    again = pyinfra(secrets_env=lab_secrets)
    assert again.returncode == 0 and again.changed_ops() == [], again.changed_ops()


def test_manual_rollback_restores_the_previous_generation_with_evidence(converged, lab_secrets, tmp_path):
    (tmp_path / "litellm.py").write_text("request_timeout = 41\n")
    assert pyinfra(secrets_env=lab_secrets, group_data=tmp_path).returncode == 0
    assert "timeout: 41" in exec_in("hx-api", "cat", "/etc/litellm/config.yaml")
    env = {**os.environ, **lab_secrets, "HX_SECRETS_FILE": "/nonexistent"}
    evidence = tmp_path / "evidence"
    result = subprocess.run([sys.executable, "-m", "hx_gateway.rollback", LAB_INVENTORY, "--evidence-dir",
                             str(evidence)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "timeout: 30" in exec_in("hx-api", "cat", "/etc/litellm/config.yaml")
    (summary,) = evidence.glob("*/summary.md")
    text = summary.read_text()
    assert "hx-gateway rollback" in text and "rollback_restored_a_generation" in text
    assert all(v not in text for v in lab_secrets.values())
    again = pyinfra(secrets_env=lab_secrets)  # the rolled-back state is the newest generation
    assert again.returncode == 0 and again.changed_ops() == [], again.changed_ops()


def test_a_dead_backend_is_invisible_to_clients(converged, lab_secrets, tmp_path):
    # simple-shuffle sends about half of all first attempts to the backend that dies: the hard case.
    (tmp_path / "litellm.py").write_text("routing_strategy = 'simple-shuffle'\n")
    assert pyinfra(secrets_env=lab_secrets, group_data=tmp_path).returncode == 0
    stopped: list[float] = []

    def stop_llm02_at_request_20(number: int) -> None:
        if number == 20 and not stopped:
            stopped.append(time.monotonic())
            exec_in("hx-llm02", "systemctl", "stop", "ollama")

    try:
        result = run_load(gateway_url(), lab_secrets["HX_MASTER_KEY"], chat_body("phi3-3.8b"), 200, 8,
                          on_progress=stop_llm02_at_request_20)
    finally:
        exec_in("hx-llm02", "systemctl", "start", "ollama")
    summary = result.summary()
    print(f"200 requests, llm02 stopped at request 20: {summary}")
    assert stopped and summary["requests"] == 200
    assert summary["backends"].get("http://hx-llm02:11434", 0) > 0  # it did serve before it died
    assert result.failures() == [], [(o.started, o.status, o.error) for o in result.failures()]


INSTALLING = "uv pip install|zstd -dcq"


def test_a_deploy_killed_during_the_venv_install_converges_next_time(converged, lab_secrets):
    exec_in("hx-api", "sh", "-c", "systemctl stop litellm; rm -rf /opt/litellm")
    env = {**os.environ, **lab_secrets, "HX_SECRETS_FILE": "/nonexistent"}
    deploy = subprocess.Popen([str(os.path.join(os.path.dirname(sys.executable), "pyinfra")), "-y", LAB_INVENTORY,
                               "deploy.py"], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        # The venv is installed by uv, or (when the control node caches the built venv) unpacked.
        while exec_in("hx-api", "pgrep", "-f", INSTALLING, check=False) == "":
            assert deploy.poll() is None and time.monotonic() < deadline, "the install never started"
            time.sleep(0.2)
        time.sleep(1.0)  # well inside the install
    finally:
        if deploy.poll() is None:
            os.killpg(deploy.pid, signal.SIGKILL)  # the control node dies...
        deploy.wait()
    exec_in("hx-api", "pkill", "-9", "-f", INSTALLING, check=False)  # ...and so does the work on the host
    current = exec_in("hx-api", "sh", "-c", "readlink /opt/litellm/current || true")
    assert current == "", f"`current` points at a half-built venv: {current}"
    run = pyinfra(secrets_env=lab_secrets)
    assert run.returncode == 0, run.output[-3000:]
    assert exec_in("hx-api", "systemctl", "is-active", "litellm") == "active"
    auth = {"Authorization": f"Bearer {lab_secrets['HX_MASTER_KEY']}"}
    assert httpx.get(f"{gateway_url()}/v1/models", headers=auth).status_code == 200
    again = pyinfra(secrets_env=lab_secrets)
    assert again.returncode == 0 and again.changed_ops() == [], again.changed_ops()


def test_a_deployed_venv_whose_interpreter_is_gone_is_built_again_by_the_next_run(converged, lab_secrets):
    """Before: the venv kept its id, so every deploy skipped the install and failed its canary
    ("Failed to execute .../bin/litellm"), forever. The running service is not touched until then."""
    pid = main_pid()
    exec_in("hx-api", "sh", "-c", 'rm -f "$(readlink -f /opt/litellm/current)"/bin/python*')
    run = pyinfra(secrets_env=lab_secrets)
    assert run.returncode == 0, run.output[-3000:]
    assert any(op.startswith("Install | Install LiteLLM") and op.endswith("the deployed one cannot run")
               for op in run.changed_ops()), run.changed_ops()
    assert main_pid() != pid and exec_in("hx-api", "systemctl", "is-active", "litellm") == "active"
    again = pyinfra(secrets_env=lab_secrets)
    assert again.returncode == 0 and again.changed_ops() == [], again.changed_ops()


def test_files_a_stopped_run_wrote_reach_the_service_at_the_next_run(converged, lab_secrets):
    """A run that wrote config.yaml and stopped before the restart (killed, or its connection lost)
    leaves the file as declared but newer than the running service (here: the same text, written
    again). The next run restarts the service and says why; the run after is a no-op."""
    pid = main_pid()
    exec_in("hx-api", "sh", "-c", "cp -p /etc/litellm/config.yaml /tmp/c && cat /tmp/c > /etc/litellm/config.yaml")
    dry = pyinfra("--dry", secrets_env=lab_secrets)
    assert dry.returncode == 0, dry.output[-3000:]
    planned = dry.changed_ops()
    assert not [op for op in planned if "config.yaml" in op and "Restart" not in op], planned  # as declared...
    assert ("Service | Restart litellm (/etc/litellm/config.yaml written by an earlier run that stopped before "
            "the restart)") in planned, planned
    run = pyinfra(secrets_env=lab_secrets)  # ...yet the service restarts to read it
    assert run.returncode == 0, run.output[-3000:]
    assert any("Restart litellm" in op for op in run.changed_ops()) and main_pid() != pid, run.changed_ops()
    again = pyinfra(secrets_env=lab_secrets)
    assert again.returncode == 0 and again.changed_ops() == [], again.changed_ops()
