"""Venv artifacts without a lab: the control node's cache, who builds, and the fallback to a build."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import defaults
from pyinfra.api.exceptions import NestedOperationError

from hx_gateway import lock, venv_artifacts
from hx_gateway.model.settings import load_settings
from hx_gateway.ticket import venv_source
from hx_gateway.venv_artifacts import Artifact, ArtifactError, RunSources
from tasks import locked_venv, venv_artifact

ID = "c5e32c28a1c9cf9c" + "0" * 48


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setattr(venv_artifacts, "ARTIFACT_DIR", tmp_path)
    return tmp_path


def artifact(key: str = "py3.11.2-x86_64-glibc2.36", venv_dir: str = "/opt/litellm/venvs/c5e32c28a1c9cf9c"):
    return Artifact(ID, key, venv_dir)


def cached(cache: Path, item: Artifact, data: bytes = b"packed venv") -> str:
    fetched = venv_artifacts.partial_path(item, "@docker/hx-api")
    fetched.write_bytes(data)
    venv_artifacts.store(item, fetched, lock.digest(data))
    return lock.digest(data)


def test_an_artifact_is_named_by_venv_platform_and_path():
    names = {artifact().name, artifact(key="py3.13.5-x86_64-glibc2.41").name,
             artifact(venv_dir="/srv/litellm/venvs/c5e32c28a1c9cf9c").name}
    assert len(names) == 3  # console scripts and pyvenv.cfg name the venv's path: another path, another artifact


def test_a_cached_artifact_is_used_while_it_matches_its_digest_and_removed_when_not(cache):
    item = artifact()
    digest = cached(cache, item)
    assert venv_artifacts.usable(item) == digest
    item.path.write_bytes(b"packed venw")  # one byte changed on disk
    assert venv_artifacts.usable(item) == ""
    assert not item.path.exists() and not item.digest_path.exists()  # built again, not shipped damaged


def test_a_fetched_artifact_that_does_not_match_its_builders_digest_is_refused(cache):
    item = artifact()
    fetched = venv_artifacts.partial_path(item, "@docker/hx-api")
    fetched.write_bytes(b"truncated")
    with pytest.raises(ArtifactError, match="the builder reported"):
        venv_artifacts.store(item, fetched, lock.digest(b"the whole venv"))
    assert list(cache.iterdir()) == []


def test_the_cache_keeps_the_newest_artifacts(cache, monkeypatch):
    monkeypatch.setattr(venv_artifacts, "KEEP", 100)  # store() prunes too
    items = [artifact(key=f"py3.11.{n}-x86_64-glibc2.36") for n in range(8)]
    for age, item in enumerate(items):
        cached(cache, item)
        os.utime(item.path, (1000 + age, 1000 + age))
    removed = venv_artifacts.prune(keep=6)
    assert removed == [items[1].name, items[0].name]
    assert sorted(p.name for p in cache.glob("*.tar.zst")) == sorted(i.name for i in items[2:])
    assert not items[0].digest_path.exists()


def test_the_first_gateway_by_name_builds_and_the_preview_says_what_each_does(cache):
    sources = RunSources()
    bookworm, trixie = artifact(), artifact(key="py3.13.5-x86_64-glibc2.41")
    for host in ("@docker/hx-api3", "@docker/hx-api2"):  # pyinfra plans hosts concurrently, in no set order
        sources.need(host, bookworm)
    sources.need("@docker/hx-api4", trixie)
    sources.kept["@docker/hx-api"] = "venv c5e32c28a1c9cf9c"
    assert sources.builder(bookworm) == "@docker/hx-api2" and sources.builder(trixie) == "@docker/hx-api4"
    assert sources.ships()  # a fleet: a rebuilt or added gateway receives what is cached
    assert sources.lines() == [
        "@docker/hx-api: venv kept: venv c5e32c28a1c9cf9c",
        f"@docker/hx-api2: venv built here, then shipped to the other gateways of this platform that need it "
        f"({bookworm.name})",
        f"@docker/hx-api3: venv received, built on @docker/hx-api2 ({bookworm.name})",
        f"@docker/hx-api4: venv built here, then shipped to the other gateways of this platform that need it "
        f"({trixie.name})",
    ]
    lone = RunSources()  # the run's only gateway builds as before: packing would only slow it down
    lone.need("@docker/hx-api", trixie)
    assert not lone.ships()
    assert lone.lines() == [f"@docker/hx-api: venv built here from the wheelhouse (the run's only gateway: "
                            f"not packed) ({trixie.name})"]
    cached(cache, bookworm)
    again = RunSources()
    again.need("@docker/hx-api3", bookworm)
    assert again.builder(bookworm) == "" and "received from the control node's cache" in again.lines()[0]


def test_the_ticket_names_the_same_builder_as_the_run():
    records = [{"host": h, "kind": "venv-source", "summary": "venv c5e3", "artifact": "a", "cached": False}
               for h in ("@docker/hx-api3", "@docker/hx-api2")]
    records.append({"host": "@docker/hx-api", "kind": "venv-source", "summary": "keeps venv c5e3"})
    assert venv_source(records[0], records) == "venv c5e3: received, built on @docker/hx-api2"
    assert venv_source(records[1], records).endswith("built here, then shipped to the other gateways of this "
                                                     "platform that need it")
    assert venv_source(records[2], records) == "keeps venv c5e3"
    assert venv_source(records[1], records[1:2]).endswith("built here from the wheelhouse (the run's only "
                                                          "gateway: not packed)")


class FakeHost:
    name = "@docker/hx-api3"

    def __init__(self) -> None:
        self.logged: list[str] = []

    def log(self, message: str, *_: object, **__: object) -> None:
        self.logged.append(message)

    log_styled = log


def test_an_artifact_refused_in_transit_is_replaced_by_a_build_from_the_wheelhouse(cache, monkeypatch, tmp_path):
    item = artifact()
    cached(cache, item)
    fake, sent, ran = FakeHost(), [], []
    sources = RunSources()
    sources.need("@docker/hx-api", item)  # the builder, by name
    sources.need(fake.name, item)
    monkeypatch.setattr(venv_artifact, "run_sources", lambda: sources)
    answers = iter([(False, SimpleNamespace(stderr=f"{venv_artifact.REFUSED}: {item.name} does not match")),
                    (True, SimpleNamespace(stderr=""))])
    for module in (venv_artifact, locked_venv):  # the fallback builds with locked_venv's steps
        monkeypatch.setattr(module, "host", fake)
        monkeypatch.setattr(module, "put_as_root", lambda local, remote: sent.append(Path(local).name))
        monkeypatch.setattr(module, "run_as_root", lambda script: (ran.append(script), next(answers))[1])
    wheelhouse = tmp_path / "wheelhouse-0123.tar"
    settings = load_settings(defaults(), "hx-api3")
    venv_artifact.receive(settings.venv_root, ID, item, "venv-check", wheelhouse, "install from the wheelhouse")
    assert sent == [item.name, wheelhouse.name]  # the artifact, then (refused) the wheelhouse
    assert "sha256sum" in ran[0] and ran[1] == "install from the wheelhouse"
    assert any("building the venv here instead" in line for line in fake.logged), fake.logged


def test_a_venv_the_check_refuses_fails_the_host_without_a_fallback(cache, monkeypatch):
    item = artifact()
    cached(cache, item)
    fake, sources = FakeHost(), RunSources()
    sources.need("@docker/hx-api", item)
    sources.need(fake.name, item)
    monkeypatch.setattr(venv_artifact, "run_sources", lambda: sources)
    refused = SimpleNamespace(stderr="refused: /opt/litellm/venvs/x was not activated")
    for module in (venv_artifact, locked_venv):
        monkeypatch.setattr(module, "host", fake)
        monkeypatch.setattr(module, "put_as_root", lambda local, remote: None)
        monkeypatch.setattr(module, "run_as_root", lambda script: (False, refused))
    with pytest.raises(NestedOperationError, match="was refused"):
        venv_artifact.receive("/opt/litellm", ID, item, "venv-check", Path("w.tar"), "install")
