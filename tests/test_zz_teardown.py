"""Runs last: `down` leaves no container and no network behind."""

from __future__ import annotations

import pytest

from lab.lab import LABEL, docker

pytestmark = pytest.mark.lab


def test_down_leaves_nothing_behind(lab):
    lab.down()
    assert docker("ps", "-aq", "--filter", f"label={LABEL}={lab.name}").strip() == ""
    assert docker("network", "ls", "-q", "--filter", f"name=^{lab.network}$").strip() == ""
    lab.down()  # idempotent
