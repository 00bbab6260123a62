"""The viewer's browser tests: Debian's chromium driven by Playwright, ``tracer ui`` as a subprocess
over a store filled by a real traced script (``page_app.py``). One browser and one server per
module (fixtures scoped per module) keep the whole file to a few seconds of browser time.

Without chromium (or Playwright) the tests skip with the reason, except under CI (the ``CI``
variable set), where they fail: ``.ci/run`` installs chromium first.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.processes import clean_env, stop_process

HERE = Path(__file__).resolve().parent
TRACED_APP = HERE / "page_app.py"


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: the browser tests must run)", pytrace=False)
    pytest.skip(reason)


def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        _missing("Debian's chromium is not installed (apt-get install -y chromium)")
    assert path is not None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("Playwright for Python is not installed (the test extra has it)")
    return path


def run_traced_app(target: Path | str, *args: str) -> None:
    """The traced script as a real process writing into *target*, a store or a collector's URL."""
    subprocess.run(
        [sys.executable, str(TRACED_APP), str(target), *args],
        check=True,
        capture_output=True,
        timeout=60,
        env=clean_env(),
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Viewer:
    """``python -m tracer ui`` on a free loopback port, serving *store*."""

    def __init__(self, store: Path, *args: str) -> None:
        self.store = store
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tracer", "ui", "--store", str(store), "--port", str(self.port), *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            # The search index goes under $XDG_CACHE_HOME: the test's directory, not the user's cache.
            env=clean_env(XDG_CACHE_HOME=str(store.parent / "cache")),
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"tracer ui exited: {self.process.stderr.read().decode() if self.process.stderr else ''}"
                )
            try:
                # Any answer (200, or 401 when a token is required) means it is serving.
                httpx.get(self.url + "/api/info", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("tracer ui did not start within 30 s")

    def api(self, path: str, **params: Any) -> Any:
        response = httpx.get(self.url + path, params=params, timeout=10)
        response.raise_for_status()
        return response.json()

    def stop(self) -> None:
        stop_process(self.process)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("viewer") / "traces.db"
    run_traced_app(path, "fill")
    return path


@pytest.fixture(scope="module")
def viewer(store: Path) -> Iterator[Viewer]:
    server = Viewer(store)
    yield server
    server.stop()


TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def locked_viewer(store: Path) -> Iterator[Viewer]:
    """The same store served with ``--api-key``: every page and API call needs the token."""
    server = Viewer(store, "--api-key", TOKEN)
    yield server
    server.stop()
