"""One service of tests/propagation/test_two_services.py: a Starlette app with the ASGI middleware,
served by uvicorn on 127.0.0.1 (it prints its port first). ``/ask`` calls the next service's
``/answer/{n}`` with httpx inside a span (``propagate_http`` adds the headers); ``/answer/{n}``
records a span of its own. Settings come from the environment (the test's)."""

from __future__ import annotations

import os
import socket

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import tracer
from tracer.integrations.asgi import TracerMiddleware

# TRACER_STORE, TRACER_PROPAGATE_HTTP, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT… from the environment.
tracer.init(project="two-services", flush_interval=0.05, first_flush_interval=0.05, spool=False)


async def ask(request: Request) -> JSONResponse:
    with tracer.span("ask_b", inputs={"n": request.query_params["n"]}):
        async with httpx.AsyncClient() as client:
            response = await client.get(f"{os.environ['NEXT_SERVICE']}/answer/{request.query_params['n']}")
    return JSONResponse({"from_b": response.json()})


async def answer(request: Request) -> JSONResponse:
    with tracer.span("think"):
        n = int(request.path_params["n"])
    return JSONResponse({"answer": n * 2})


app = Starlette(
    routes=[Route("/ask", ask), Route("/answer/{n:int}", answer)],
    middleware=[Middleware(TracerMiddleware)],
)

if __name__ == "__main__":
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off")).run(sockets=[sock])
