"""Install: OS prerequisites, the service user, and the locked LiteLLM venv."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import python

from hx_gateway import lock
from hx_gateway.model.plan import VenvPlan
from hx_gateway.model.settings import Settings
from hx_gateway.pyinfra_ext import changes, render
from hx_gateway.pyinfra_ext.operations import ensure_directory
from hx_gateway.venv_artifacts import Artifact
from tasks import venv_artifact
from tasks.locked_venv import activation, install_script, os_prerequisites, service_account


@deploy("Install")
def install(settings: Settings, facts: dict, venv: VenvPlan) -> dict:
    """Returns the operations whose change means the service must restart, by what they manage."""
    os_prerequisites(facts, venv.installed, also={"iproute2": facts["has_ss"]})
    service_account(settings.service_user, settings.service_group, facts["account"])
    directories = render.managed_directories(settings)
    for key in ("venv_root", "venvs", "cache"):
        ensure_directory(directories[key], facts["directories"])
    artifact = Artifact(venv.venv_id, venv.target.key, f"{settings.venv_root}/venvs/{venv.venv_id[:16]}")
    sources = venv_artifact.run_sources()
    summary = f"venv {venv.venv_id[:16]} (LiteLLM {venv.version}, {venv.target.key})"
    if venv.installed:
        sources.kept[host.name] = summary
        changes.record("venv-source", f"{settings.venv_root}/current", f"keeps {summary}")
        return {}
    sources.need(host.name, artifact)
    cached = bool(sources.cached[artifact.name])
    broken = facts.get("venv_runnable") is False
    before = ("a venv that cannot run (bin/python or bin/litellm missing)" if broken
              else f"LiteLLM {facts['installed_litellm']}" if facts.get("installed_litellm") else "no venv")
    changes.record("venv", f"{settings.venv_root}/current",
                   f"{before} -> LiteLLM {venv.version} (venv {venv.venv_id[:16]}, {venv.target.key})")
    # Who builds is known once every host is planned: the ticket works it out from these records.
    changes.record("venv-source", f"{settings.venv_root}/current", summary, artifact=artifact.name, cached=cached)
    archive = venv.wheelhouse()
    script = install_script(settings.venv_root, archive.name, lock.file_sha256(archive), venv.venv_id)
    why = "; the deployed one cannot run" if broken else ""
    if not cached:
        python.call(name=f"Install LiteLLM {venv.version}: build venv {venv.venv_id[:16]} "
                         f"({venv.target.key}, uv) on the first gateway by name that needs it; in a fleet, pack it "
                         f"and fetch it to the control node",
                    function=venv_artifact.build, artifact=artifact, wheelhouse=archive, install=script,
                    pack=venv_artifact.pack_script(settings.venv_root, venv.venv_id, artifact))
    # Planned after the build above: pyinfra runs it once every builder has built and fetched.
    received = python.call(name=f"Install LiteLLM {venv.version}: receive venv {venv.venv_id[:16]} "
                                f"({venv.target.key}) from "
                                f"{'the control node' if cached else 'the gateway that built it'}{why}",
                           function=venv_artifact.receive, venv_root=settings.venv_root, venv_id=venv.venv_id,
                           artifact=artifact, activate=activation(settings.venv_root), wheelhouse=archive,
                           install_script=script)
    return {"venv": received}
