"""``tracer ui``: the viewer alone (its pages and API, no collector) over a store opened read-only."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from starlette.applications import Starlette
from starlette.middleware import Middleware

from ..store import TraceStore
from ._guard import HostCheck, HostPolicy
from ._run import DEFAULT_HEADER_TIMEOUT, bind, run_app
from ._viewer import Viewer, json_response, viewer_routes

__all__ = ["create_viewer_app", "serve_viewer"]


async def _not_found(request: object, exc: Exception) -> object:
    return json_response({"error": "not found"}, 404)


def create_viewer_app(viewer: Viewer, hosts: HostPolicy | None = None) -> Starlette:
    """The viewer's ASGI app (``hosts``: the ``Host`` names answered, as the collector's)."""
    policy = hosts if hosts is not None else HostPolicy("127.0.0.1")
    return Starlette(
        routes=viewer_routes(viewer),
        exception_handlers={404: _not_found, 405: _not_found},  # type: ignore[dict-item]
        middleware=[Middleware(HostCheck, policy=policy)],
    )


def serve_viewer(
    store: TraceStore,
    *,
    host: str = "127.0.0.1",
    port: int = 8788,
    token: str | None = None,
    search_engine: str | None = None,
    allowed_hosts: Sequence[str] = (),
    header_timeout: float = DEFAULT_HEADER_TIMEOUT,
    access_log: bool = False,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the viewer of *store* (read-only) until SIGINT/SIGTERM; *ready* gets the base URL."""
    from ._viewer_auth import ViewerAuth

    viewer = Viewer(store, ViewerAuth(token), search_engine)
    try:
        sock = bind(host, port)
        bound_host = sock.getsockname()[0]
        app = create_viewer_app(viewer, HostPolicy(str(bound_host), allowed_hosts))
        run_app(app, sock, header_timeout=header_timeout, access_log=access_log, ready=ready)
    finally:
        viewer.close()
