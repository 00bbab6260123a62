"""One session per request in a small threaded web server; concurrent requests never mix.

    python examples/web_sessions.py

Starts a server on 127.0.0.1 (a free port), sends it a few concurrent requests, and stops.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import tracer

tracer.init(project="examples", session_name="web", exporter=tracer.ConsoleExporter())


@tracer.trace
def lookup_user(user_id: str) -> dict[str, str]:
    return {"id": user_id, "plan": "pro" if user_id.endswith("1") else "free"}


@tracer.trace(event_type="chain")
def handle(path: str, user_id: str) -> dict[str, object]:
    user = lookup_user(user_id)
    tracer.enrich_session(user_properties={"user_id": user_id, "plan": user["plan"]})
    return {"path": path, "user": user}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        user_id = self.headers.get("X-User", "anonymous")
        # Every request gets its own session, even though the server handles them concurrently.
        with tracer.session(session_name=f"GET {self.path}", inputs={"path": self.path}):
            body = json.dumps(handle(self.path, user_id)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # keep the demo output readable
        pass


def main() -> list[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"

    def get(user: str) -> str:
        request = urllib.request.Request(f"{url}/profile", headers={"X-User": user})
        with urllib.request.urlopen(request, timeout=5) as response:
            return str(json.loads(response.read())["user"]["plan"])

    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            return list(pool.map(get, ["user-1", "user-2", "user-3"]))
    finally:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    print(main())
    tracer.flush()
