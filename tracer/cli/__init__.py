"""The ``tracer`` command (also ``python -m tracer``): sessions, show, tail, export, send, serve.

It needs the ``cli`` extra (click, rich), and ``serve`` the ``server`` extra (starlette, uvicorn);
without them the command says which ``pip install`` to run. ``import tracer`` never imports them.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence

from .._version import DISTRIBUTION

__all__ = ["main"]

CLI_PACKAGES = ("click", "rich")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    missing = [name for name in CLI_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        sys.stderr.write(
            f"tracer: the `tracer` command needs the cli extra ({', '.join(missing)} missing): "
            f"pip install '{DISTRIBUTION}[cli]'\n"
        )
        return 1
    from ._app import run

    return run(argv)
