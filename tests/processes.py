"""Helpers for tests that run the ``tracer`` command and ``tracer serve`` as real subprocesses
(the store, CLI and collector tests); the collector's ``server`` fixture is in ``tests/server/conftest.py``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a subprocess: no TRACER_/HH_ settings of the developer, no colours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACER_", "HH_"))}
    env.update(TRACER_RAISE_INTERNAL_ERRORS="1", NO_COLOR="1", PYTHONPATH=str(REPO), COLUMNS="200")
    env.pop("FORCE_COLOR", None)
    env.update(extra)
    return env


def run_at_exit(body: str, timeout: float = 60) -> tuple[str, list[str]]:
    """Run *body* in a new interpreter from an ``atexit`` handler (where Python 3.12 refuses new
    threads): the body of a function returning a list of words. Returns whether a plain
    ``Thread.start()`` there was ``"started"`` or ``"refused"``, and the words."""
    script = (
        "import atexit, threading\n\n"
        "def _words():\n" + textwrap.indent(textwrap.dedent(body).strip(), "    ") + "\n\n"
        "def _at_exit():\n"
        "    try:\n"
        "        threading.Thread(target=lambda: None).start()\n"
        "        plain = 'started'\n"
        "    except RuntimeError:\n"
        "        plain = 'refused'\n"
        "    print(plain, *_words(), flush=True)\n\n"
        "atexit.register(_at_exit)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout, env=clean_env(), check=False
    )
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    plain, *words = done.stdout.split()
    return plain, words


def run_cli(
    *args: str, cwd: str | Path | None = None, timeout: float = 30, **env: str
) -> subprocess.CompletedProcess[str]:
    """``python -m tracer ARGS`` as a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "tracer", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=clean_env(**env),
        check=False,
    )


class Server:
    """``python -m tracer serve --port 0`` running in a subprocess."""

    def __init__(self, store: Path, *args: str, max_descriptors: int | None = None) -> None:
        self.store = store
        launcher = ["-m", "tracer"]
        if max_descriptors is not None:  # the collector under RLIMIT_NOFILE = max_descriptors
            launcher = [
                "-c",
                "import resource, sys; from tracer.cli import main; "
                f"resource.setrlimit(resource.RLIMIT_NOFILE, ({max_descriptors}, {max_descriptors})); "
                "sys.argv[0] = 'tracer'; sys.exit(main())",
            ]
        self.process = subprocess.Popen(
            [sys.executable, *launcher, "serve", "--port", "0", "--store", str(store), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )
        self.url = ""
        ready = threading.Event()

        def read() -> None:
            assert self.process.stdout is not None
            first = self.process.stdout.readline()
            if "listening on " in first:
                self.url = first.split("listening on ", 1)[1].split(",", 1)[0].strip()
            ready.set()
            for _ in self.process.stdout:  # keep the pipe drained
                pass

        self.errors: list[str] = []

        def read_errors() -> None:
            assert self.process.stderr is not None
            self.errors.extend(self.process.stderr)

        self._readers = [threading.Thread(target=f, daemon=True) for f in (read, read_errors)]
        for reader in self._readers:
            reader.start()
        if not ready.wait(20) or not self.url:
            self.stop()
            raise RuntimeError(f"the collector did not start: {''.join(self.errors)}")

    def stop(self) -> int:
        return stop_process(self.process, self._readers)


def stop_process(process: subprocess.Popen[Any], readers: Sequence[threading.Thread] = ()) -> int:
    """Terminate *process* (killed if it has not exited within 10 s), join the threads that read
    its pipes, close them; its exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    for reader in readers:
        reader.join(5)
    for pipe in (process.stdout, process.stderr):
        if pipe is not None:
            pipe.close()
    return process.returncode


def wait_until(condition: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.02)
    return False
