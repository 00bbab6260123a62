"""Virtual environments holding other projects' clients (HoneyHive's SDKs), made by the tests.

Each client pins its own OpenTelemetry (and, for ``honeyhive`` 0.2.x, Traceloop) versions, which
cannot share the test environment, so each gets its own venv under ``.client-venvs/`` in the
checkout (``TRACER_CLIENT_VENVS`` to put them elsewhere), made on first use with the machine's
``python3`` and pip from PyPI, and reused while its requirements are the same (the directory name
holds their hash). Creation is serialized by a lock file, so parallel test processes make one.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: The clients, pinned: the last Traceloop-based SDK and the current OpenTelemetry-native one.
CLIENTS = {
    "honeyhive-0.2": ("honeyhive==0.2.57",),
    "honeyhive-1": ("honeyhive==1.7.0",),
}


def _base_python() -> str:
    """One interpreter for every test run (3.10 … 3.13), so one venv serves them all."""
    return shutil.which("python3") or sys.executable


def client_python(name: str) -> Path:
    """The ``python`` of the venv holding client *name*, made if it is not there yet."""
    return venv_python(name, CLIENTS[name])


def venv_python(name: str, requirements: tuple[str, ...]) -> Path:
    """The ``python`` of a venv named *name* holding *requirements* (pip arguments), made if it is
    not there yet (also used for the LLM clients' version ranges, ``tests/integrations/ranges.py``)."""
    root = Path(os.environ.get("TRACER_CLIENT_VENVS") or REPO / ".client-venvs")
    key = hashlib.sha256("\n".join(requirements).encode()).hexdigest()[:12]
    venv = root / f"{name}-{key}"
    python = venv / "bin" / "python"
    ready = venv / ".ready"
    if ready.exists():
        return python
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready.exists():  # made by another process while this one waited
            return python
        shutil.rmtree(venv, ignore_errors=True)
        for command in (
            [_base_python(), "-m", "venv", str(venv)],
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements],
        ):
            run = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
            if run.returncode != 0:
                raise RuntimeError(f"cannot make the {name} venv ({' '.join(command)}):\n{run.stdout}{run.stderr}")
        ready.touch()
    return python
