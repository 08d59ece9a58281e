"""CPU that LiteLLM spends on every request for nothing, taken back. Loaded by hx_auth.py at start.

LiteLLM's Ollama provider answers "is this model in the cost map?" (`OllamaModelInfo.
_is_static_ollama_model`) by lower-casing every key of `litellm.model_cost` (~4,250) into a new set
on each call, and a chat completion asks two to three times per request (the responses-API bridge
check, twice, and the router's usage accounting): ~10 % of a worker's CPU at 8 requests in flight
(py-spy; bench/README.md). Here the lower-cased set is kept while the cost map is the same object
of the same size (LiteLLM replaces the map on a reload and registers deployments by adding keys),
and the answer is computed from it exactly as LiteLLM does.

Only for the LiteLLM version it was measured on (MEASURED_ON): on any other version nothing is
patched and the log says so, so an upgrade never runs a patch nobody has read against its code.
"""

from __future__ import annotations

import logging
from importlib.metadata import version
from typing import Any

MEASURED_ON = "1.106.2"
log = logging.getLogger("hx_speedups")


class LoweredKeys:
    """The lower-cased keys of a mapping, rebuilt when it is another object or changes size."""

    def __init__(self) -> None:
        self._source: dict[str, Any] | None = None  # held, not its id: a new map never passes for it
        self._size = -1
        self._keys: frozenset[str] = frozenset()

    def of(self, mapping: dict[str, Any]) -> frozenset[str]:
        if mapping is not self._source or len(mapping) != self._size:
            self._keys = frozenset(key.lower() for key in mapping)
            self._source, self._size = mapping, len(mapping)
        return self._keys


def cached_is_static_ollama_model(litellm: Any, strip_prefix: Any, lowered: LoweredKeys) -> Any:
    """LiteLLM 1.106.2's `_is_static_ollama_model`, with the key set from `lowered`."""

    def is_static_ollama_model(model: str) -> bool:
        stripped = strip_prefix(model)
        names = (model, stripped, "ollama/" + stripped, "ollama_chat/" + stripped)
        keys = lowered.of(litellm.model_cost)  # read each call: a reload replaces the map
        return any(name.lower() in keys for name in names)

    return is_static_ollama_model


def install() -> bool:
    """Patch once per process (hx_auth.py is loaded several times); True when the patch is in."""
    installed = version("litellm")
    if installed != MEASURED_ON:
        log.warning("hx_speedups: LiteLLM %s is not %s, the version measured; nothing patched", installed, MEASURED_ON)
        return False
    import litellm
    from litellm.llms.ollama.common_utils import OllamaModelInfo

    current = OllamaModelInfo.__dict__["_is_static_ollama_model"].__func__
    if getattr(current, "hx_speedup", False):
        return True
    patched = cached_is_static_ollama_model(litellm, OllamaModelInfo._strip_ollama_model_prefix, LoweredKeys())
    patched.hx_speedup = True  # type: ignore[attr-defined]
    patched.unpatched = current  # type: ignore[attr-defined]
    OllamaModelInfo._is_static_ollama_model = staticmethod(patched)
    return True
