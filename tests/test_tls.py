"""TLS for clients: the operator's certificate, key and CA are checked on the control node before any
host changes, each fault named with its knob and fix (hx_gateway/model/tls.py, settings, plan)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from conftest import defaults, random_key

from hx_gateway.model.plan import fleet_plans, gateway_plan
from hx_gateway.model.settings import SettingsError, load_settings
from hx_gateway.model.tls import change_of, covers, load_tls
from hx_gateway.proof.tls import TLS_VALIDATION_PLAN
from hx_gateway.ticket import validation_of
from lab.tls import ensure_lab_tls, issue, make_ca, write_private

HOST = "gw.example.test"


@pytest.fixture(scope="module")
def ca():
    return make_ca("test CA")


def files(tmp_path: Path, ca, names=(HOST,), key=None, days=365, not_before=None, key_mode=0o600) -> dict:
    chain, key_pem = issue(ca, list(names), key=key, days=days, not_before=not_before)
    (tmp_path / "chain.pem").write_bytes(chain)
    write_private(tmp_path / "key.pem", key_pem)
    os.chmod(tmp_path / "key.pem", key_mode)
    (tmp_path / "ca.pem").write_bytes(ca.pem)
    return {"certificate_path": str(tmp_path / "chain.pem"), "key_path": str(tmp_path / "key.pem"),
            "ca_path": str(tmp_path / "ca.pem")}


def check(paths: dict, host: str = HOST, min_days: int = 14):
    return load_tls(paths["certificate_path"], paths["key_path"], paths["ca_path"], host, min_days)


def test_a_good_certificate_passes_and_its_summary_never_holds_the_key(tmp_path, ca):
    result = check(files(tmp_path, ca))
    assert (result.problems, result.warnings) == ([], [])
    material = result.material
    assert material is not None and material.certificate.names == (HOST,)
    assert material.certificate.describe().startswith("serial ") and "expires" in material.certificate.describe()
    assert "PRIVATE KEY" in material.key.reveal() and "PRIVATE" not in repr(material) + str(material.key)


def test_an_expired_certificate_is_refused(tmp_path, ca):
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=40)
    result = check(files(tmp_path, ca, days=30, not_before=past))
    assert result.material is None
    assert len(result.problems) == 1 and result.problems[0].startswith("tls_certificate: expired on ")
    assert result.problems[0].endswith("renew it")


def test_too_few_days_left_refuse_and_under_30_warn(tmp_path, ca):
    short = check(files(tmp_path, ca, days=10))
    assert short.material is None and "fewer than tls_min_days_left (14)" in short.problems[0]
    soon = check(files(tmp_path, ca, days=20))
    assert soon.problems == [] and soon.material is not None
    assert soon.warnings and "renew it soon" in soon.warnings[0]


def test_a_certificate_not_yet_valid_is_refused(tmp_path, ca):
    future = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2)
    assert "is not valid before" in check(files(tmp_path, ca, not_before=future)).problems[0]


def test_a_key_that_does_not_match_is_refused(tmp_path, ca):
    paths = files(tmp_path, ca)
    write_private(Path(paths["key_path"]), issue(ca, [HOST])[1])  # another key, same name
    problems = check(paths).problems
    assert len(problems) == 1 and problems[0].startswith("tls_key: does not match the certificate")


def test_a_certificate_for_another_name_is_refused(tmp_path, ca):
    problems = check(files(tmp_path, ca, names=("other.example.test",))).problems
    assert problems == [f"tls_certificate: is for other.example.test, not {HOST!r}, the host clients use; issue it "
                        f"with {HOST} as a subject alternative name, or set the URL to a name it covers"]


def test_a_chain_from_another_ca_is_refused_naming_ca_bundle(tmp_path, ca):
    paths = files(tmp_path, ca)
    Path(paths["ca_path"]).write_bytes(make_ca("someone else").pem)
    problems = check(paths).problems
    assert len(problems) == 1 and problems[0].startswith("tls_certificate: its chain does not verify against the "
                                                         "CA in ca_bundle")


def test_a_missing_ca_file_is_refused_by_name(tmp_path, ca):
    paths = {**files(tmp_path, ca), "ca_path": str(tmp_path / "missing.pem")}
    problems = check(paths).problems
    assert problems == [f"ca_bundle: {tmp_path / 'missing.pem'} cannot be read (No such file or directory); point it "
                        f"at the PEM file on the control node"]


def test_a_key_file_others_can_read_is_refused(tmp_path, ca):
    problems = check(files(tmp_path, ca, key_mode=0o644)).problems
    assert problems == [f"tls_key: {tmp_path / 'key.pem'} has mode 0644, so others on the control node can read "
                        f"the private key; run `chmod 600 {tmp_path / 'key.pem'}`"]


def test_files_that_are_not_pem_are_refused(tmp_path, ca):
    paths = files(tmp_path, ca)
    Path(paths["certificate_path"]).write_text("not a certificate\n")
    write_private(Path(paths["key_path"]), b"not a key\n")
    problems = check(paths).problems
    assert any(p.startswith("tls_certificate: holds no PEM certificate") for p in problems)
    assert any(p.startswith("tls_key: holds no PEM private key") for p in problems)


def test_names_match_exactly_or_by_one_wildcard_label_and_addresses_by_value(tmp_path, ca):
    summary = check(files(tmp_path, ca, names=("*.example.test", "10.0.0.7", "::1")), host="a.example.test")
    assert summary.problems == []
    certificate = summary.material.certificate
    assert covers(certificate, "A.Example.Test") and not covers(certificate, "b.a.example.test")
    assert not covers(certificate, "example.test") and covers(certificate, "10.0.0.7")
    assert covers(certificate, "0:0::1") and not covers(certificate, "10.0.0.8")


def tls_data(paths: dict, **overrides) -> dict:
    return {**defaults(), "environment": "lab", "tls_certificate": paths["certificate_path"],
            "tls_key": paths["key_path"], "ca_bundle": paths["ca_path"], **overrides}


def test_with_tls_the_url_defaults_to_https_and_a_plain_http_url_is_refused(tmp_path, ca):
    paths = files(tmp_path, ca)
    settings = load_settings(tls_data(paths), HOST)
    assert settings.gateway_url == f"https://{HOST}:4000" and settings.local_url == "https://127.0.0.1:4000"
    with pytest.raises(SettingsError) as error:
        load_settings(tls_data(paths, gateway_url=f"http://{HOST}:4000"), HOST)
    assert error.value.problems == [f"gateway_url: 'http://{HOST}:4000' is plain HTTP but HTTPS is served there "
                                    f"(tls_certificate is set); write it with https://"]
    with pytest.raises(SettingsError) as error:
        load_settings({**defaults(), "gateway_url": f"https://{HOST}:4000"}, HOST)
    assert "is HTTPS but tls_certificate and tls_key are not set" in error.value.problems[0]


def test_a_certificate_without_its_key_is_refused(tmp_path, ca):
    with pytest.raises(SettingsError) as error:
        load_settings(tls_data(files(tmp_path, ca), tls_key=None), HOST)
    assert error.value.problems == ["tls_certificate, tls_key: set both (the certificate chain and its private key) to "
                                    "serve HTTPS, or neither for plain HTTP"]


def test_the_plan_lists_tls_problems_with_the_other_problems_before_any_host_changes(tmp_path, ca, monkeypatch):
    monkeypatch.delenv("HX_MASTER_KEY", raising=False)
    monkeypatch.setenv("HX_SECRETS_FILE", "/nonexistent")
    paths = files(tmp_path, ca, names=("other.example.test",))
    with pytest.raises(SettingsError) as error:
        gateway_plan(tls_data(paths), HOST)
    assert any(p.startswith("HX_MASTER_KEY: missing") for p in error.value.problems)
    assert any(p.startswith("tls_certificate: is for other.example.test") for p in error.value.problems)
    monkeypatch.setenv("HX_MASTER_KEY", random_key())
    monkeypatch.setenv("HX_CLIENT_KEY_OPEN_WEBUI", random_key())
    plan = gateway_plan(tls_data(files(tmp_path, ca)), HOST)
    assert plan.tls is not None and plan.tls.ca_pem.startswith("-----BEGIN CERTIFICATE-----")


def test_the_lab_makes_its_ca_once_and_again_only_when_the_names_change(tmp_path):
    first = ensure_lab_tls(tmp_path / "tls", ["172.17.0.2", "hx-api"])
    assert oct(first.key.stat().st_mode & 0o777) == "0o600"
    ca_before = first.ca.read_bytes()
    assert ensure_lab_tls(tmp_path / "tls", ["172.17.0.2", "hx-api"]).ca.read_bytes() == ca_before
    assert ensure_lab_tls(tmp_path / "tls", ["172.17.0.3"]).ca.read_bytes() != ca_before
    result = load_tls(str(first.chain), str(first.key), str(first.ca), "172.17.0.3", 14)
    assert result.problems == []



def test_a_certificate_change_names_serials_and_expiry_never_more(tmp_path, ca):
    (tmp_path / "old").mkdir()
    old = check(files(tmp_path / "old", ca)).material
    new = check(files(tmp_path, ca)).material
    line = change_of(old.chain_pem, new.certificate)
    assert line == f"certificate: {old.certificate.describe()} -> {new.certificate.describe()}"
    assert change_of("", new.certificate) == f"certificate: none -> {new.certificate.describe()}"
    assert change_of(None, new.certificate).startswith("certificate: not read (run with --diff) -> serial ")
    assert change_of("garbage", new.certificate).startswith("certificate: not a certificate -> ")


def test_with_balancers_haproxy_serves_https_and_the_gateways_behind_it_plain_http(tmp_path, ca, monkeypatch):
    for name in ("HX_MASTER_KEY", "HX_CLIENT_KEY_OPEN_WEBUI"):
        monkeypatch.setenv(name, random_key())
    monkeypatch.setenv("HX_SECRETS_FILE", "/nonexistent")
    data = tls_data(files(tmp_path, ca, names=("lb1.example.test",)), environment="production")
    plans = fleet_plans([("gw1", {**data, "gateway_url": "http://10.0.0.1:4000"}, {"litellm"}),
                         ("lb1.example.test", data, {"lb"})])
    gateway, balancer = plans["gw1"].gateway, plans["lb1.example.test"].lb
    assert not gateway.settings.tls and gateway.tls is None and gateway.ca_pem == balancer.ca_pem != ""
    assert balancer.settings.lb_url == "https://lb1.example.test:4000" and balancer.tls is not None
    assert gateway.fleet.lbs[0].certificate == balancer.tls.certificate
    assert set(TLS_VALIDATION_PLAN) <= set(validation_of(plans))
    with pytest.raises(SettingsError) as error:
        fleet_plans([("gw1", {**data, "gateway_url": "https://10.0.0.1:4000"}, {"litellm"}),
                     ("lb1", {**data, "lb_url": "http://lb1:4000"}, {"lb"})])
    assert any(p.startswith("gw1: gateway_url: 'https://10.0.0.1:4000' is HTTPS but behind the `lb` group the "
                            "gateways serve plain HTTP") for p in error.value.problems), error.value.problems
    assert any(p.startswith("lb1: lb_url: 'http://lb1:4000' is plain HTTP but HTTPS is served there")
               for p in error.value.problems), error.value.problems


def test_a_ca_bundle_alone_is_read_and_checked_for_the_trust_store(tmp_path, ca, monkeypatch):
    monkeypatch.setenv("HX_MASTER_KEY", random_key())
    monkeypatch.setenv("HX_CLIENT_KEY_OPEN_WEBUI", random_key())
    monkeypatch.setenv("HX_SECRETS_FILE", "/nonexistent")
    (tmp_path / "ca.pem").write_bytes(ca.pem)
    plan = gateway_plan({**defaults(), "ca_bundle": str(tmp_path / "ca.pem")}, HOST)
    assert plan.tls is None and plan.ca_pem == ca.pem.decode()
    (tmp_path / "ca.pem").write_text("not a CA\n")
    with pytest.raises(SettingsError) as error:
        gateway_plan({**defaults(), "ca_bundle": str(tmp_path / "ca.pem")}, HOST)
    assert error.value.problems == ["ca_bundle: holds no PEM certificate (-----BEGIN CERTIFICATE-----); give the PEM "
                                    "file"]


def test_only_a_new_certificate_or_key_reloads_and_only_under_gunicorn(tmp_path, ca):
    from types import SimpleNamespace

    from tasks.gateway.service import reloads_for

    settings = load_settings(tls_data(files(tmp_path, ca)), HOST)
    change, same = SimpleNamespace(will_change=True), SimpleNamespace(will_change=False)
    assert reloads_for(settings, {"tls-chain.pem": change, "tls-key.pem": change, "config.yaml": same})
    assert reloads_for(settings, {"tls-key.pem": change, "litellm.service": same})
    assert not reloads_for(settings, {"tls-chain.pem": change, "config.yaml": change})
    assert not reloads_for(settings, {"openssl.cnf": change})  # the policy is read at the master's start
    assert not reloads_for(settings, {"tls-chain.pem": same})
    uvicorn = load_settings({**tls_data(files(tmp_path, ca)), "server": "uvicorn"}, HOST)
    assert not reloads_for(uvicorn, {"tls-chain.pem": change})
    assert not reloads_for(load_settings(defaults(), HOST), {"tls-chain.pem": change})
