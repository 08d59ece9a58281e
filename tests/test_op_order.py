"""hx_gateway.patches.op_order answers exactly what pyinfra's own stack reading answers, from any depth."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pyinfra
import pytest
from pyinfra.api import util

from hx_gateway.patches import measured_patch, op_order

DEPLOY = """
def planned(depth, ask):
    if depth:
        return planned(depth - 1, ask)
    return ask()

def in_loop(ask):
    return [planned(n, ask) for n in range(3)]
"""


# Both are called as pyinfra calls them: from a function of pyinfra's (skipped, like its own frame).
_PYINFRA_CALLER: dict = {}
exec(compile("def solve_operation_consistency(state, order):\n    return order(state)\n",
             f"{util.PYINFRA_INSTALL_DIR}/api/operation.py", "exec"), _PYINFRA_CALLER)


def _compare(state: SimpleNamespace) -> tuple[list[int], list[int]]:
    solve = _PYINFRA_CALLER["solve_operation_consistency"]
    return solve(state, util.get_operation_order_from_stack), solve(state, op_order.operation_order_from_stack)


@pytest.mark.parametrize("is_cli", [True, False])
@pytest.mark.parametrize("deploy_file_in_stack", [True, False])
def test_the_order_is_pyinfras_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, is_cli: bool,
                                     deploy_file_in_stack: bool):
    monkeypatch.setattr(pyinfra, "is_cli", is_cli)
    deploy = tmp_path / "deploy.py"
    deploy.write_text(DEPLOY)
    scope: dict = {}
    exec(compile(DEPLOY, str(deploy), "exec"), scope)  # as pyinfra runs a deploy file
    state = SimpleNamespace(current_deploy_filename=str(deploy) if deploy_file_in_stack else str(tmp_path / "other.py"),
                            current_op_file_number=7)
    for theirs, ours in scope["in_loop"](lambda: _compare(state)):
        assert ours == theirs
    theirs, ours = scope["planned"](4, lambda: _compare(state))
    assert ours == theirs
    # From the deploy file's first frame: 5 of planned(), the lambda, _compare; else none but pyinfra's.
    assert len(ours) == int(is_cli) + (7 if deploy_file_in_stack else 0)
    assert ours[0] == 7 if is_cli else True

def test_install_replaces_pyinfras_function_once_and_only_on_the_measured_version(monkeypatch: pytest.MonkeyPatch):
    module = sys.modules["pyinfra.api.operation"]
    monkeypatch.setattr(module, "get_operation_order_from_stack", util.get_operation_order_from_stack)
    monkeypatch.setattr(measured_patch, "version", lambda _: "3.99.0")
    assert op_order.install() is False and module.get_operation_order_from_stack is util.get_operation_order_from_stack
    monkeypatch.setattr(measured_patch, "version", lambda _: op_order.MEASURED_ON)
    assert op_order.install() is True and op_order.install() is True
    assert module.get_operation_order_from_stack is op_order.operation_order_from_stack


def test_the_pinned_pyinfra_is_the_measured_one():
    pinned = next(line.split("==")[1].split()[0] for line in
                  (Path(__file__).resolve().parent.parent / "requirements.txt").read_text().splitlines()
                  if line.startswith("pyinfra=="))
    assert pinned == op_order.MEASURED_ON
