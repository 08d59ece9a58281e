"""Replace a third-party function only on the version it was measured against (ssh_stalls).

An upgrade of the distribution, or anyone else's replacement already in place, leaves the original
alone: nobody has compared the copy with code it has not seen.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any


def replace_if_measured(owner: Any, attribute: str, original: Any, replacement: Any,
                        distribution: str, measured_on: str) -> bool:
    """Set owner.attribute to `replacement`; True when it is (again) in place."""
    current = getattr(owner, attribute)
    if current is replacement:
        return True
    if version(distribution) != measured_on or current is not original:
        return False
    setattr(owner, attribute, replacement)
    return True
