"""``python -m tracer``: the same as the ``tracer`` command."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
