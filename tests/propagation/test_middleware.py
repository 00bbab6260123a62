"""The ASGI and WSGI middlewares: real Starlette apps under uvicorn and real Flask apps under
werkzeug's server, on 127.0.0.1; a few direct calls where only the protocol matters."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any
from wsgiref import simple_server

import flask
import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Mount, Route
from werkzeug.serving import make_server

import tracer
from tracer import Tracer
from tracer._otlp_mapping import event_id_for
from tracer.integrations import asgi, wsgi

from ..conftest import Recorder

FOREIGN_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
FOREIGN_SPAN = "00f067aa0ba902b7"


@pytest.fixture
def rec() -> Iterator[Recorder]:
    recorder = Recorder(batch=False)
    yield recorder
    recorder.tracer.shutdown(1.0)


class Uvicorn:
    """An ASGI app served by uvicorn on 127.0.0.1 (a free port) in a background thread."""

    def __init__(self, app: Any) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="critical", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


class Werkzeug:
    """A WSGI app served by werkzeug's threaded server on 127.0.0.1 in a background thread."""

    def __init__(self, app: Any) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(10)


def _starlette_app(tracer: Tracer, last_chunk: list[float]) -> Starlette:
    async def item(request: Request) -> JSONResponse:
        with tracer.span("lookup"):
            pass
        return JSONResponse({"id": request.path_params["item_id"]})

    async def boom(request: Request) -> JSONResponse:
        raise ValueError("boom")

    async def stream(request: Request) -> StreamingResponse:
        async def chunks() -> Any:
            for index in range(3):
                with tracer.span(f"chunk{index}"):
                    await asyncio.sleep(0.02)
                yield b"x"
            last_chunk.append(time.time())

        return StreamingResponse(chunks())

    async def user(request: Request) -> PlainTextResponse:
        return PlainTextResponse("u")

    return Starlette(
        routes=[
            Route("/items/{item_id:int}", item),
            Route("/boom", boom),
            Route("/stream", stream),
            Mount("/api", routes=[Route("/users/{name}", user)]),
        ],
        middleware=[Middleware(asgi.TracerMiddleware, tracer=tracer)],
    )


@pytest.fixture
def starlette_server(rec: Recorder) -> Iterator[tuple[Uvicorn, list[float]]]:
    last_chunk: list[float] = []
    server = Uvicorn(_starlette_app(rec.tracer, last_chunk))
    yield server, last_chunk
    server.close()


def _wait(rec: Recorder, *names: str) -> None:
    """Wait until the server has ended these events: the client may have the whole response
    before the server has seen the end of its body."""
    deadline = time.monotonic() + 10
    while not set(names) <= {e["event_name"] for e in rec.events()}:
        assert time.monotonic() < deadline, (names, [e["event_name"] for e in rec.events()])
        time.sleep(0.01)


def _session_name(rec: Recorder, event: dict) -> str:
    name: str = rec.exporter.sessions[event["session_id"]]["session_name"]
    return name


def test_asgi_one_session_per_request_named_by_the_route(rec: Recorder, starlette_server: Any) -> None:
    server, _ = starlette_server
    assert httpx.get(server.url + "/items/7?q=a%20b&x=1").json() == {"id": 7}
    assert httpx.get(server.url + "/items/8").status_code == 200
    _wait(rec, "GET /items/{item_id}")
    while len([e for e in rec.events() if e["event_type"] == "chain"]) < 2:
        time.sleep(0.01)
    first, second = [e for e in rec.events() if e["event_type"] == "chain"]
    assert first["event_name"] == "GET /items/{item_id}"
    assert first["inputs"] == {"method": "GET", "path": "/items/7", "query": "q=a%20b&x=1"}
    assert first["outputs"] == {"status_code": 200}
    assert first["parent_id"] == first["session_id"] != second["session_id"]
    assert _session_name(rec, first) == "/items/{item_id}"
    lookups = [e for e in rec.events() if e["event_name"] == "lookup"]
    assert [e["parent_id"] for e in lookups] == [first["event_id"], second["event_id"]]


def test_asgi_continues_the_incoming_trace(rec: Recorder, starlette_server: Any) -> None:
    server, _ = starlette_server
    httpx.get(server.url + "/items/1", headers={"traceparent": f"00-{FOREIGN_TRACE}-{FOREIGN_SPAN}-01"})
    _wait(rec, "GET /items/{item_id}")
    request = rec.by_name("GET /items/{item_id}")
    assert request["session_id"] == str(uuid.UUID(hex=FOREIGN_TRACE))
    assert request["parent_id"] == event_id_for(FOREIGN_TRACE, FOREIGN_SPAN)
    assert rec.by_name("lookup")["parent_id"] == request["event_id"]
    assert _session_name(rec, request) == "/items/{item_id}"


def test_asgi_mounts_404_and_errors(rec: Recorder, starlette_server: Any) -> None:
    server, _ = starlette_server
    assert httpx.get(server.url + "/api/users/ann").status_code == 200
    assert httpx.get(server.url + "/nowhere").status_code == 404
    assert httpx.get(server.url + "/boom").status_code == 500
    _wait(rec, "GET /api/users/{name}", "GET /nowhere", "GET /boom")
    assert rec.by_name("GET /api/users/{name}")["outputs"] == {"status_code": 200}
    assert rec.by_name("GET /nowhere")["outputs"] == {"status_code": 404}
    failed = rec.by_name("GET /boom")
    assert failed["error"] == "ValueError: boom"


def test_asgi_a_streamed_response_ends_the_event_with_its_body(rec: Recorder, starlette_server: Any) -> None:
    server, last_chunk = starlette_server
    assert httpx.get(server.url + "/stream").content == b"xxx"
    _wait(rec, "GET /stream")
    request = rec.by_name("GET /stream")
    for index in range(3):
        assert rec.by_name(f"chunk{index}")["parent_id"] == request["event_id"]
    assert request["end_time"] >= int(last_chunk[0] * 1000)
    assert request["outputs"] == {"status_code": 200}


def test_asgi_reraises_the_apps_exception_unchanged_and_passes_other_scopes(rec: Recorder) -> None:
    raised = KeyError("mine")
    lifespans: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            lifespans.append("seen")
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise raised

    async def sent(message: Any) -> None:
        pass

    async def receive() -> Any:
        return {"type": "http.request"}

    middleware = asgi.TracerMiddleware(app, tracer=rec.tracer)
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/x",
        "query_string": b"",
        "headers": [(b"traceparent", b"junk")],
    }
    with pytest.raises(KeyError) as caught:
        asyncio.run(middleware(scope, receive, sent))
    assert caught.value is raised
    asyncio.run(middleware({"type": "lifespan"}, receive, sent))
    assert lifespans == ["seen"]
    failed = rec.by_name("POST /x")
    assert failed["error"] == "KeyError: 'mine'" and failed["outputs"] == {"status_code": 200}


def test_asgi_a_malformed_response_start_reaches_the_server_as_sent(
    rec: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server refuses a bad status with its own error; the middleware must not raise its own first."""
    monkeypatch.delenv("TRACER_RAISE_INTERNAL_ERRORS")  # the library's swallow-and-log path, as in production
    start = {"type": "http.response.start", "status": "two hundred", "headers": []}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(start)
        await send({"type": "http.response.body", "body": b"x"})

    received: list[Any] = []

    async def sent(message: Any) -> None:
        received.append(message)

    async def receive() -> Any:
        return {"type": "http.request"}

    middleware = asgi.TracerMiddleware(app, tracer=rec.tracer)
    scope = {"type": "http", "method": "GET", "path": "/odd", "query_string": b"", "headers": []}
    asyncio.run(middleware(scope, receive, sent))
    assert received[0] is start and len(received) == 2
    assert rec.by_name("GET /odd")["outputs"] == {}  # no status recorded, the event still ends


def _flask_app(tracer: Tracer) -> flask.Flask:
    app = flask.Flask("traced")
    app.config["PROPAGATE_EXCEPTIONS"] = True  # the error reaches the WSGI layer, as under a debugger

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> Any:
        with tracer.span("lookup"):
            pass
        return {"id": item_id}

    @app.get("/boom")
    def boom() -> Any:
        raise ValueError("boom")

    @app.get("/stream")
    def stream() -> Any:
        def chunks() -> Iterator[bytes]:
            for index in range(3):
                with tracer.span(f"chunk{index}"):
                    time.sleep(0.02)
                yield b"x"

        return flask.Response(chunks())

    app.wsgi_app = wsgi.TracerMiddleware(app.wsgi_app, tracer=tracer)  # type: ignore[method-assign]
    return app


@pytest.fixture
def flask_server(rec: Recorder) -> Iterator[Werkzeug]:
    server = Werkzeug(_flask_app(rec.tracer))
    yield server
    server.close()


def test_wsgi_flask_request_events(rec: Recorder, flask_server: Werkzeug) -> None:
    response = httpx.get(
        flask_server.url + "/items/3?q=1", headers={"traceparent": f"00-{FOREIGN_TRACE}-{FOREIGN_SPAN}-01"}
    )
    assert response.json() == {"id": 3}
    _wait(rec, "GET /items/<int:item_id>")
    request = rec.by_name("GET /items/<int:item_id>")
    assert request["inputs"] == {"method": "GET", "path": "/items/3", "query": "q=1"}
    assert request["outputs"] == {"status_code": 200}
    assert request["parent_id"] == event_id_for(FOREIGN_TRACE, FOREIGN_SPAN)
    assert request["session_id"] == str(uuid.UUID(hex=FOREIGN_TRACE))
    assert _session_name(rec, request) == "/items/<int:item_id>"
    assert rec.by_name("lookup")["parent_id"] == request["event_id"]
    assert httpx.get(flask_server.url + "/nowhere").status_code == 404
    _wait(rec, "GET /nowhere")
    missing = rec.by_name("GET /nowhere")
    assert missing["outputs"] == {"status_code": 404} and missing["parent_id"] == missing["session_id"]
    assert _session_name(rec, missing) == "/nowhere"


def test_wsgi_flask_streamed_body_and_errors(rec: Recorder, flask_server: Werkzeug) -> None:
    assert httpx.get(flask_server.url + "/stream").content == b"xxx"
    _wait(rec, "GET /stream")
    request = rec.by_name("GET /stream")
    for index in range(3):
        chunk = rec.by_name(f"chunk{index}")
        assert chunk["parent_id"] == request["event_id"]
        assert chunk["end_time"] <= request["end_time"]
    assert httpx.get(flask_server.url + "/boom").status_code == 500
    _wait(rec, "GET /boom")
    assert rec.by_name("GET /boom")["error"] == "ValueError: boom"


def test_wsgi_reraises_unchanged_and_restores_the_context(rec: Recorder) -> None:
    raised = KeyError("mine")

    def app(environ: Any, start_response: Any) -> Any:
        raise raised

    def streaming(environ: Any, start_response: Any) -> Any:
        start_response("200 OK", [])

        def body() -> Iterator[bytes]:
            assert rec.tracer.current_span() is not None  # each step runs under the request's event
            yield b"a"
            raise raised

        return body()

    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/x", "QUERY_STRING": ""}
    with pytest.raises(KeyError) as caught:
        wsgi.TracerMiddleware(app, tracer=rec.tracer)(dict(environ), lambda *a: None)
    assert caught.value is raised
    assert rec.tracer.current_span() is None
    body = wsgi.TracerMiddleware(streaming, tracer=rec.tracer)(dict(environ, PATH_INFO="/y"), lambda *a: None)
    assert rec.tracer.current_span() is None  # nothing current between the steps
    iterator = iter(body)
    assert next(iterator) == b"a"
    with pytest.raises(KeyError) as caught:
        next(iterator)
    assert caught.value is raised
    assert rec.by_name("GET /x")["error"] == "KeyError: 'mine'"
    assert rec.by_name("GET /y")["error"] == "KeyError: 'mine'"
    assert rec.by_name("GET /y")["outputs"] == {"status_code": 200}


def test_the_default_tracer_is_used_when_none_is_given() -> None:
    def app(environ: Any, start_response: Any) -> Any:
        start_response("204 No Content", [])
        return []

    with tracer.testing.capture() as events:
        body = wsgi.TracerMiddleware(app)({"REQUEST_METHOD": "DELETE", "PATH_INFO": "/z"}, lambda *a: None)
        assert list(body) == []
        body.close()  # type: ignore[attr-defined]
    assert events.by_name("DELETE /z")["outputs"] == {"status_code": 204}


class _SendfileHandler(simple_server.ServerHandler):
    """wsgiref's handler with the platform file transmission PEP 3333 leaves to servers: a body
    that is its ``wsgi.file_wrapper`` is sent from the file in one piece, noted in ``sent``."""

    sent: list[str]

    def sendfile(self) -> bool:
        data = self.result.filelike.read()  # type: ignore[attr-defined]
        self.write(data)
        self.sent.append(self.environ["PATH_INFO"])
        return True


class _RequestHandler(simple_server.WSGIRequestHandler):
    def handle(self) -> None:  # WSGIRequestHandler.handle, with _SendfileHandler
        self.raw_requestline = self.rfile.readline(65537)
        if not self.parse_request():
            return
        handler = _SendfileHandler(self.rfile, self.wfile, self.get_stderr(), self.get_environ(), multithread=False)
        handler.request_handler = self  # type: ignore[attr-defined]
        handler.run(self.server.get_app())  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_wsgi_a_servers_file_wrapper_is_handed_back_for_sendfile(rec: Recorder, tmp_path: Any) -> None:
    report = tmp_path / "report.txt"
    report.write_bytes(b"the whole file")
    app = flask.Flask("files")

    @app.get("/report")
    def download() -> Any:
        with rec.tracer.span("open"):
            return flask.send_file(report)

    app.wsgi_app = wsgi.TracerMiddleware(app.wsgi_app, tracer=rec.tracer)  # type: ignore[method-assign]
    _SendfileHandler.sent = []
    server = simple_server.make_server("127.0.0.1", 0, app, handler_class=_RequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        response = httpx.get(f"http://127.0.0.1:{server.server_port}/report")
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()
    assert response.content == b"the whole file"
    assert _SendfileHandler.sent == ["/report"]  # the server still recognized its file wrapper
    _wait(rec, "GET /report")  # ended by the server's close()
    request = rec.by_name("GET /report")
    assert request["outputs"] == {"status_code": 200}
    assert rec.by_name("open")["parent_id"] == request["event_id"]


def test_wsgi_a_file_wrapper_whose_close_cannot_be_replaced_is_wrapped(rec: Recorder) -> None:
    class SlottedWrapper:
        __slots__ = ("chunks", "closed")

        def __init__(self, chunks: list[bytes]) -> None:
            self.chunks = chunks
            self.closed = False

        def __iter__(self) -> Iterator[bytes]:
            return iter(self.chunks)

        def close(self) -> None:
            self.closed = True

    wrapper = SlottedWrapper([b"a", b"b"])

    def app(environ: Any, start_response: Any) -> Any:
        start_response("200 OK", [])
        return wrapper

    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/f", "QUERY_STRING": "", "wsgi.file_wrapper": SlottedWrapper}
    body = wsgi.TracerMiddleware(app, tracer=rec.tracer)(environ, lambda *a: None)
    assert body is not wrapper and list(body) == [b"a", b"b"]
    body.close()  # type: ignore[attr-defined]
    assert wrapper.closed
    assert rec.by_name("GET /f")["outputs"] == {"status_code": 200}
