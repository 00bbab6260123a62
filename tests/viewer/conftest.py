"""The viewer's tests run ``tracer ui`` (and ``tracer serve``) as real subprocesses over a store
filled by a real traced program (``traced_app.py``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from ..processes import clean_env, stop_process

pytest.importorskip("starlette")

APP = Path(__file__).with_name("traced_app.py")


class Ui:
    """``python -m tracer ui --port 0 --store STORE ARGS`` in a subprocess; ``url`` is its base URL
    (without the ``#token=`` part), ``printed`` the URL it printed."""

    def __init__(self, store: Path, *args: str, cache: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tracer", "ui", "--port", "0", "--store", str(store), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(XDG_CACHE_HOME=str(cache)),
        )
        self.printed = ""
        self.errors: list[str] = []
        ready = threading.Event()

        def read() -> None:
            assert self.process.stdout is not None
            first = self.process.stdout.readline()
            if "listening on " in first:
                self.printed = first.split("listening on ", 1)[1].split(" ", 1)[0]
            ready.set()
            for _ in self.process.stdout:
                pass

        def read_errors() -> None:
            assert self.process.stderr is not None
            self.errors.extend(self.process.stderr)

        self._readers = [threading.Thread(target=f, daemon=True) for f in (read, read_errors)]
        for reader in self._readers:
            reader.start()
        if not ready.wait(30) or not self.printed:
            self.stop()
            raise RuntimeError(f"tracer ui did not start: {''.join(self.errors)}")
        self.url = self.printed.split("/#", 1)[0].rstrip("/")

    def stop(self) -> int:
        return stop_process(self.process, self._readers)


def run_traced_app(store: Path) -> dict[str, str]:
    """Run the traced app into *store*; its session ids by name."""
    done = subprocess.run(
        [sys.executable, str(APP), str(store)], capture_output=True, text=True, timeout=60, env=clean_env(), check=True
    )
    ids: dict[str, str] = orjson.loads(done.stdout.strip().splitlines()[-1])
    return ids


@pytest.fixture(scope="session")
def traced(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A store written by the traced app, and its session ids (copy it before writing to it)."""
    store = tmp_path_factory.mktemp("viewer") / "traces.db"
    return store, run_traced_app(store)


@pytest.fixture
def start_ui(tmp_path: Path) -> Iterator[Any]:
    """Start ``tracer ui`` processes (stopped after the test): ``start_ui(store, *args)``."""
    started: list[Ui] = []

    def start(store: Path, *args: str) -> Ui:
        ui = Ui(store, *args, cache=tmp_path / "cache")
        started.append(ui)
        return ui

    yield start
    for ui in started:
        assert ui.stop() == 0, "tracer ui should stop cleanly on SIGTERM"


def copy_store(source: Path, target_dir: Path) -> Path:
    target = target_dir / "copy.db"
    shutil.copyfile(source, target)
    return target
