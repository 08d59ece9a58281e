"""The gateway's start: LiteLLM's own `litellm` command, its proxy imported with the collector paused.

Importing LiteLLM's proxy (`litellm.proxy.proxy_server`, the app its command serves) creates some
900,000 objects that live as long as the process, and Python's cyclic garbage collector walks them
over and over while they are being created: about a third of the import's CPU, and the import is
most of a start (bench/gateway_start.py, figures in bench/README.md). So the collector is paused for
that one import; what it created is then frozen (`gc.freeze`: never scanned again, so the workers
gunicorn forks keep sharing those pages) and the collector runs as before. That is the recipe the
Python documentation gives for `gc.freeze` in servers that fork workers.

Then the `litellm` console script's entry point runs with this command line; its own import of the
proxy finds it loaded. Run as `python -P hx_start.py ARGS` (-P: this directory is not put on
sys.path).
"""

from __future__ import annotations

import gc
import sys
from importlib.metadata import entry_points


def import_proxy_frozen() -> None:
    """Import LiteLLM's proxy with the collector off, then freeze what it made and turn it back on."""
    gc.disable()
    try:
        import litellm.proxy.proxy_server  # noqa: F401  (imported for its side effect: loaded once, here)
    finally:
        gc.freeze()
        gc.enable()


def main() -> None:
    import_proxy_frozen()
    (command,) = entry_points(group="console_scripts", name="litellm")
    sys.argv[0] = "litellm"
    command.load()()  # a click command: parses sys.argv[1:] and exits with the server's status


if __name__ == "__main__":
    main()
