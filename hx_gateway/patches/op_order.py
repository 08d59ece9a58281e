"""The control node's CPU per planned operation, taken back (installed by deploy.py).

pyinfra's CLI orders operations by where the deploy code called them: for every operation planned on
every host, `get_operation_order_from_stack` calls `inspect.stack()`, which resolves each frame's
module by scanning `sys.modules` and reads its source line, then keeps only each frame's file name
and line number. Measured on a no-op over SSH: ~1.3 ms per operation once warm (3.4 ms cold), about
half of the control node's CPU per extra gateway (bench/README.md). This reads the same two values
from the frames themselves: `inspect.getframeinfo(frame)` answers `frame.f_code.co_filename` (a
path that exists, or the same string via `getfile`) and `frame.f_lineno`.

Only on the pyinfra version it was read against (MEASURED_ON): on any other, nothing is replaced,
so an upgrade never runs a copy nobody has compared with its code. tests/test_op_order.py proves
both give the same order.
"""

from __future__ import annotations

import sys
from types import FrameType
from typing import Any

import pyinfra
from pyinfra.api import util

from hx_gateway.patches.measured_patch import replace_if_measured

MEASURED_ON = "3.10.0"
_OPERATION_MODULE = "pyinfra.api.operation"  # `pyinfra.api.operation` the attribute is the decorator


def operation_order_from_stack(state: Any) -> list[int]:
    """pyinfra's `get_operation_order_from_stack(state)`: the caller's frame outwards."""
    frames = []
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    frames.reverse()

    start = 0  # from the deploy file's outermost frame; without one, from the innermost (as pyinfra does)
    if state.current_deploy_filename:
        start = next((i for i, f in enumerate(frames) if f.f_code.co_filename == state.current_deploy_filename),
                     len(frames) - 1)

    line_numbers = [state.current_op_file_number] if pyinfra.is_cli else []
    line_numbers += [f.f_lineno for f in frames[start:]
                     if not f.f_code.co_filename.startswith(util.PYINFRA_INSTALL_DIR)]
    return line_numbers


def install() -> bool:
    """Replace pyinfra's function for this process; True when it is (again) in place."""
    return replace_if_measured(sys.modules[_OPERATION_MODULE], "get_operation_order_from_stack",
                               util.get_operation_order_from_stack, operation_order_from_stack,
                               "pyinfra", MEASURED_ON)
