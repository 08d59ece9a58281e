"""`down` leaves no container and no network behind. It takes the session's lab down, so it runs only
when the lab is not to be kept (HX_KEEP_LAB=1 keeps it, as the README says)."""

from __future__ import annotations

import os

import pytest

from lab.lab import LABEL, docker

pytestmark = pytest.mark.lab


@pytest.mark.skipif(os.environ.get("HX_KEEP_LAB") == "1", reason="HX_KEEP_LAB=1: the lab stays up")
def test_down_leaves_nothing_behind(lab):
    lab.down()
    assert docker("ps", "-aq", "--filter", f"label={LABEL}={lab.name}").strip() == ""
    assert docker("network", "ls", "-q", "--filter", f"name=^{lab.network}$").strip() == ""
    lab.down()  # idempotent
