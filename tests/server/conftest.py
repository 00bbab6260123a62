"""The collector's tests run against one ``tracer serve`` subprocess per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..processes import Server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A collector requiring API key ``k``, with a 1 MiB body limit, on its own store."""
    store = tmp_path_factory.mktemp("collector") / "collector.db"
    running = Server(store, "--api-key", "k", "--max-body-bytes", str(1024 * 1024))
    try:
        yield running
    finally:
        code = running.stop()
        assert code == 0, "the collector should stop cleanly on SIGTERM"
