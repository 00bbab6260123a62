"""Running the collector with uvicorn on a socket bound here (so ``--port 0`` can report its port)."""

from __future__ import annotations

import contextlib
import ipaddress
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

from ..store import TraceStore
from ._app import DEFAULT_MAX_BODY_BYTES, create_app

__all__ = ["bind", "is_loopback", "serve"]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on *host*:*port* (port 0: any free port). OSError when it cannot."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    infos = socket.getaddrinfo(host.strip("[]"), port, family if host != "localhost" else 0, socket.SOCK_STREAM)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except BaseException:
        sock.close()
        raise
    return sock


def serve(
    store_path: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8787,
    api_key: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    access_log: bool = False,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM. *ready* is called with the base URL once connections are accepted."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # Like uvicorn's, minus re-raising the signal after the graceful shutdown: Ctrl-C or
            # SIGTERM end `tracer serve` normally (exit 0, store closed).
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            handled = (signal.SIGINT, signal.SIGTERM)
            original: dict[int, Any] = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)

    store = TraceStore(store_path)
    try:
        app = create_app(store, api_key=api_key, max_body_bytes=max_body_bytes)
        sock = bind(host, port)
        bound_host, bound_port = sock.getsockname()[:2]
        shown = f"[{bound_host}]" if ":" in str(bound_host) else str(bound_host)
        config = uvicorn.Config(
            app,
            log_level="info" if access_log else "warning",
            access_log=access_log,
            lifespan="off",
            server_header=False,
            timeout_graceful_shutdown=5,
        )
        server = Server(config)
        if ready is not None:
            ready(f"http://{shown}:{bound_port}")
        server.run(sockets=[sock])
    finally:
        store.close()
