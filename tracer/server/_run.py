"""Running the collector with uvicorn on a socket bound here (so ``--port 0`` can report its port)."""

from __future__ import annotations

import contextlib
import ipaddress
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final

from ..store import TraceStore
from ._app import DEFAULT_BODY_TIMEOUT, DEFAULT_MAX_BODY_BYTES, create_app
from ._guard import HostPolicy

__all__ = ["DEFAULT_HEADER_TIMEOUT", "base_url", "bind", "connection_limit", "is_loopback", "run_app", "serve"]

# A request's headers (a few hundred bytes) must arrive within this of the connection or of the
# previous answer on it; HoneyHive's and OpenTelemetry's clients send them at once.
DEFAULT_HEADER_TIMEOUT: Final = 10.0
# Descriptors kept for what is not a client connection: the listening socket, the store's SQLite
# files (database, WAL, shared memory), stdio, worker threads' files, a margin.
_RESERVED_DESCRIPTORS: Final = 64
_MAX_CONNECTIONS: Final = 1000
# An HTTP message's head (request line and headers) larger than this is refused with 400 by h11
# (uvicorn's default too; set here so that the limit is ours, not a dependency's).
_MAX_HEAD_BYTES: Final = 16 * 1024
# uvicorn's idle keep-alive timeout (its default): a connection with no request in flight is closed.
_KEEP_ALIVE_SECONDS: Final = 5


def connection_limit() -> int:
    """How many client connections to hold at most: below the process's descriptor limit."""
    try:
        import resource
    except ImportError:  # Windows: no descriptor limit to stay under
        return _MAX_CONNECTIONS
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return _MAX_CONNECTIONS
    return max(8, min(_MAX_CONNECTIONS, soft - _RESERVED_DESCRIPTORS))


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
    allowed_hosts: Sequence[str] = (),
    header_timeout: float = DEFAULT_HEADER_TIMEOUT,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    access_log: bool = False,
    viewer_token: str | None = None,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM. *ready* is called with the base URL once connections are accepted.

    *allowed_hosts*: ``Host`` names answered besides localhost and the bound address (``*``: any).
    The viewer's pages and API are served too, on their own read-only connection to the store
    (its reads never wait for the collector's writes); *viewer_token*: what they require (None: nothing).
    """
    from ._viewer import Viewer
    from ._viewer_auth import ViewerAuth

    store = TraceStore(store_path)
    viewer: Viewer | None = None
    try:
        viewer = Viewer(TraceStore(store_path, read_only=True), ViewerAuth(viewer_token))
        sock = bind(host, port)
        bound_host = sock.getsockname()[0]
        app = create_app(
            store,
            api_key=api_key,
            max_body_bytes=max_body_bytes,
            body_timeout=body_timeout,
            hosts=HostPolicy(str(bound_host), allowed_hosts),
            viewer=viewer,
        )
        run_app(app, sock, header_timeout=header_timeout, access_log=access_log, ready=ready)
    finally:
        if viewer is not None:
            viewer.close()
            viewer.store.close()
        store.close()


def base_url(sock: socket.socket) -> str:
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in str(bound_host) else str(bound_host)
    return f"http://{shown}:{bound_port}"


def run_app(
    app: Any,
    sock: socket.socket,
    *,
    header_timeout: float = DEFAULT_HEADER_TIMEOUT,
    access_log: bool = False,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the ASGI *app* on the listening *sock* with uvicorn until SIGINT/SIGTERM."""
    import uvicorn

    from ._protocol import guarded_protocol

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

    max_connections = connection_limit()
    config = uvicorn.Config(
        app,
        http=guarded_protocol(max_connections, header_timeout),
        # The protocol keeps connections at max_connections by closing idle ones, so uvicorn's
        # own cap (503 once connections or requests in flight reach it) is only a backstop.
        limit_concurrency=max_connections + 1,
        timeout_keep_alive=_KEEP_ALIVE_SECONDS,
        h11_max_incomplete_event_size=_MAX_HEAD_BYTES,
        log_level="info" if access_log else "warning",
        access_log=access_log,
        lifespan="off",
        server_header=False,
        # Open live streams (the viewer's) end at shutdown after this long.
        timeout_graceful_shutdown=5,
    )
    server = Server(config)
    if ready is not None:
        ready(base_url(sock))
    server.run(sockets=[sock])
