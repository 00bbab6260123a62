"""The ``tracer`` command (click): sessions, show, tail, export, send, serve, ui."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from typing import IO, Any, NoReturn

import click
import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .._errors import ConfigError
from .._version import DISTRIBUTION, __version__
from ..store import DEFAULT_STORE, StoreError, TraceStore, default_store_path
from ..store.exporter import STORE_ENV
from ._render import make_console, session_header, sessions_table, tail_line, tree_lines

__all__ = ["cli", "run"]

_DEFAULT_SERVER = "https://api.honeyhive.ai"


class CliError(click.ClickException):
    """A failure explained in one line on stderr; exit code 1."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"tracer: error: {self.message}", err=True)


def _fail(message: str) -> NoReturn:
    raise CliError(message)


def _shown(path: str) -> str:
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else os.path.join(".", relative)


def _open_store(store_path: str | None, *, read_only: bool = True) -> TraceStore:
    """The store, opened read-only unless the command writes to it (``send``'s bookkeeping)."""
    path = default_store_path(store_path)
    if not os.path.exists(path):
        _fail(
            f"no trace store at {_shown(path)}: run a traced program here first (without an API key, "
            f"traces go there), or pass --store PATH / set {STORE_ENV}"
        )
    try:
        return TraceStore(path, create=False, read_only=read_only)
    except StoreError as exc:
        _fail(str(exc))


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """Store and configuration failures become one ``tracer: error:`` line."""
    try:
        yield
    except (StoreError, ConfigError) as exc:
        _fail(str(exc))


def _progress(console: Console, what: str) -> Progress:
    return Progress(
        TextColumn(f"[bold]{what}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


def _stdout() -> IO[bytes]:
    """The binary standard output (after what was written as text)."""
    sys.stdout.flush()
    return sys.stdout.buffer


def _write_json(data: Any) -> None:
    out = _stdout()
    out.write(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
    out.flush()


store_option = click.option(
    "--store",
    "store_path",
    metavar="PATH",
    envvar=STORE_ENV,
    show_envvar=True,
    help=f"The trace store file.  [default: ./{DEFAULT_STORE}]",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "-V", "--version", prog_name="tracer")
def cli() -> None:
    """See what your LLM app did: the local trace store, a local collector, and re-sending.

    Without an API key, tracer.init() stores every event in ./.tracer/traces.db;
    these commands read that store (or the one given with --store / TRACER_STORE).

    \b
    Examples:
      python examples/local_demo.py          # trace something (no account, no network)
      tracer sessions                        # recent sessions
      tracer show last                       # the latest session as a tree
      tracer tail                            # follow new events as they are stored
      tracer export --all > traces.jsonl     # every event, one JSON per line
      tracer send --api-key $HH_API_KEY      # re-send everything to HoneyHive, once
      tracer serve --port 8787               # a local HoneyHive-compatible collector
      tracer ui --open                       # browse the store in a web browser
    """


@cli.command()
@store_option
@click.option("-n", "--limit", default=20, show_default=True, type=click.IntRange(1), help="Sessions to list.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
def sessions(store_path: str | None, limit: int, as_json: bool) -> None:
    """List recent sessions, newest first.

    Shows name, source, start, duration, event count, errors and tokens (prompt + completion
    tokens of model events).

    \b
    Examples:
      tracer sessions
      tracer sessions -n 100 --store /tmp/traces.db
      tracer sessions --json | jq '.[0].session_id'
    """
    with _errors(), _open_store(store_path) as store:
        rows = store.sessions(limit)
        total = store.count_sessions()
    if as_json:
        _write_json([row.to_json() for row in rows])
        return
    console = make_console()
    if not rows:
        console.print(f"no sessions yet in {_shown(store.path)}")
        return
    console.print(sessions_table(rows))
    if total > len(rows):
        console.print(f"[dim]… {total - len(rows)} older session(s); use --limit to see more[/dim]")
    console.print("[dim]tracer show <SESSION> for the tree of one (the end of its id, as above, is enough)[/dim]")


# Events `tracer show` prints unless told otherwise: a whole ordinary session (tens to hundreds of
# events), while a 200,000-event one shows in well under a second (the tree is walked in SQL and only
# the rows printed are loaded: README, "The local store and the `tracer` command").
SHOW_LIMIT = 500


@cli.command()
@click.argument("session", default="last", required=False)
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print the session and its events as JSON.")
@click.option("--io", "show_io", is_flag=True, help="Also show each event's inputs and outputs (abridged).")
@click.option(
    "-n",
    "--limit",
    default=SHOW_LIMIT,
    show_default=True,
    type=click.IntRange(0),
    help="Events shown at most (the first in tree order; with --json, by start time); 0: all.",
)
def show(session: str, store_path: str | None, as_json: bool, show_io: bool, limit: int) -> None:
    """Show one session as a tree (SESSION: `last` (the default), an id, or its start or end).

    Each line: type, name, duration, a bar of where the event falls on the session's timeline,
    the model and tokens of model events; failed events are marked with their error. A session
    with more events than --limit shows its first ones and says how many were left out.

    \b
    Examples:
      tracer show                 # the latest session
      tracer show 9f95ec6d72f9    # by the end of the id (as `tracer sessions` shows it)
      tracer show 1b4e28ba        # or by its start
      tracer show last --io       # with inputs and outputs
      tracer show last -n 0       # every event, however many
      tracer show last --json     # {"session": {...}, "events": [...]}
    """
    cap = limit or None
    with _errors(), _open_store(store_path) as store:
        session_id = store.resolve_session(session)
        summary = store.session(session_id)
        if as_json:
            events = store.session_events(session_id, cap)
        else:
            rows = store.session_tree(session_id, cap)
            events = [event for _, event in rows]
            # A part of the session: bars on the whole session's scale (a whole one scales itself).
            cut = summary is not None and len(events) < summary.event_count
            timeline = store.session_timeline(session_id) if cut else None
    assert summary is not None
    left_out = max(summary.event_count - len(events), 0)
    if as_json:
        _write_json({"session": summary.to_json(), "events": events, "events_left_out": left_out})
        if left_out:
            click.echo(_left_out_line(left_out, summary.event_count, session), err=True)
        return
    console = make_console()
    for line in session_header(summary):
        console.print(line, soft_wrap=True)
    console.print()
    for line in tree_lines(events, show_io=show_io, timeline=timeline):
        console.print(line, soft_wrap=True)
    if left_out:
        console.print(f"[dim]{_left_out_line(left_out, summary.event_count, session)}[/dim]", soft_wrap=True)


def _left_out_line(left_out: int, total: int, session: str) -> str:
    more = min(total, max(SHOW_LIMIT * 10, (total - left_out) * 10))
    return (
        f"… {left_out:,} more event(s) not shown (of {total:,}): "
        f"tracer show {session} --limit {more} for more, --limit 0 for all"
    )


@cli.command()
@store_option
@click.option("-n", "--lines", default=10, show_default=True, type=click.IntRange(0), help="Recent events shown first.")
@click.option("--session", "session_ref", metavar="SESSION", help="Only this session (`last`, or [part of] an id).")
@click.option("--once", is_flag=True, help="Print the recent events and exit (do not follow).")
@click.option("--timeout", type=click.FloatRange(0), metavar="SECONDS", help="Stop following after this long.")
@click.option("--interval", default=0.5, show_default=True, type=click.FloatRange(0.01), help="Seconds between polls.")
@click.option("--json", "as_json", is_flag=True, help="One JSON event per line.")
def tail(
    store_path: str | None,
    lines: int,
    session_ref: str | None,
    once: bool,
    timeout: float | None,
    interval: float,
    as_json: bool,
) -> None:
    """Follow events live as they are stored (Ctrl-C to stop).

    Works while other processes write the store: it polls for new events.

    \b
    Examples:
      tracer tail                      # follow everything
      tracer tail --session last -n 0  # only new events of the latest session
      tracer tail --once -n 50         # the last 50 events, then exit
      tracer tail --timeout 30 --json  # follow for 30 s, as JSON lines
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    path = default_store_path(store_path)
    console = make_console()
    out = _stdout()
    try:
        if not os.path.exists(path) and not once:
            click.echo(f"tracer: waiting for traces in {_shown(path)} (Ctrl-C to stop)", err=True)
            while not os.path.exists(path):
                if deadline is not None and time.monotonic() >= deadline:
                    return
                time.sleep(interval)
        with _errors(), _open_store(path) as store:
            session_id = store.resolve_session(session_ref) if session_ref else None
            cursor = store.last_seq()
            recent = store.recent_events(lines, session_id) if lines else []

            def emit(event: dict[str, Any]) -> None:
                if as_json:
                    out.write(orjson.dumps(event) + b"\n")
                else:
                    console.print(tail_line(event), soft_wrap=True)

            for item in recent:
                emit(item.event)
            _flush(console, out)
            if once:
                return
            while deadline is None or time.monotonic() < deadline:
                batch = store.events_after(cursor, 500, session_id)
                for item in batch:
                    emit(item.event)
                    cursor = item.seq
                _flush(console, out)
                if len(batch) < 500:
                    pause = interval if deadline is None else min(interval, max(deadline - time.monotonic(), 0))
                    time.sleep(pause)
    except KeyboardInterrupt:
        return


def _flush(console: Console, out: IO[bytes]) -> None:
    console.file.flush()
    out.flush()


@cli.command()
@click.argument("session_refs", metavar="[SESSION]...", nargs=-1)
@click.option("--all", "all_sessions", is_flag=True, help="Every session.")
@click.option("--format", "fmt", type=click.Choice(["jsonl"]), default="jsonl", show_default=True)
@click.option("-o", "--output", metavar="FILE", help="Write to FILE instead of stdout.")
@store_option
def export(
    session_refs: tuple[str, ...], all_sessions: bool, fmt: str, output: str | None, store_path: str | None
) -> None:
    """Write stored events as JSON lines: exactly the wire shape HoneyHive takes (updates merged).

    \b
    Examples:
      tracer export last > last.jsonl
      tracer export --all -o traces.jsonl
      tracer export 9f95ec6d72f9 0c11aa42b0e1 --format jsonl
    """
    if not session_refs and not all_sessions:
        _fail("name the sessions to export (SESSION ids, or `last`), or pass --all")
    if session_refs and all_sessions:
        _fail("give SESSION ids or --all, not both")
    with _errors(), _open_store(store_path) as store:
        ids = None if all_sessions else list(dict.fromkeys(store.resolve_session(ref) for ref in session_refs))
        total = store.count_events(ids)
        stderr = make_console(stderr=True)
        target: IO[bytes]
        with contextlib.ExitStack() as stack:
            if output is not None:
                try:
                    target = stack.enter_context(open(output, "wb"))  # closed by the stack
                except OSError as exc:
                    _fail(f"cannot write {output}: {exc.strerror or exc}")
            else:
                target = _stdout()
            progress = stack.enter_context(_progress(stderr, "exporting"))
            task = progress.add_task("export", total=total)
            count = 0
            for text in store.iter_events(ids):
                target.write(text.encode("utf-8") + b"\n")
                count += 1
                if count % 500 == 0:
                    progress.update(task, completed=count)
            target.flush()
    if output is not None:
        click.echo(f"tracer: exported {count} event(s) to {output}", err=True)


@cli.command()
@click.argument("session_refs", metavar="[SESSION]...", nargs=-1)
@click.option("--all", "all_sessions", is_flag=True, help="Every session (the default when no SESSION is given).")
@click.option(
    "--api-key", envvar=["TRACER_API_KEY", "HH_API_KEY"], show_envvar=True, help="API key of the receiving server."
)
@click.option(
    "--server-url",
    envvar=["TRACER_SERVER_URL", "HH_API_URL"],
    show_envvar=True,
    default=_DEFAULT_SERVER,
    show_default=True,
    help="Base URL of the HoneyHive-compatible API.",
)
@click.option("--project", envvar=["TRACER_PROJECT", "HH_PROJECT"], default="default", show_default=True)
@click.option(
    "--timeout",
    default=30.0,
    show_default=True,
    type=click.FloatRange(0.1),
    help="Seconds per batch, retries included.",
)
@click.option("--no-gzip", is_flag=True, help="Send uncompressed bodies.")
@click.option(
    "--spool",
    "spool_path",
    metavar="PATH",
    help="Drain this spool (events a traced program could not deliver yet) instead of a store.",
)
@store_option
def send(
    session_refs: tuple[str, ...],
    all_sessions: bool,
    api_key: str | None,
    server_url: str,
    project: str,
    timeout: float,
    no_gzip: bool,
    spool_path: str | None,
    store_path: str | None,
) -> None:
    """Re-send stored events to HoneyHive (or any compatible server), each at most once.

    Uses the library's HoneyHive exporter (batches, gzip, retries with backoff). What the server
    acknowledged is recorded in the store per server URL, so running it again sends only what
    is new; an interrupted run resumes where it stopped.

    \b
    Examples:
      tracer send --api-key $HH_API_KEY                           # everything, to api.honeyhive.ai
      tracer send last --api-key k --server-url http://127.0.0.1:8787
      TRACER_API_KEY=k TRACER_SERVER_URL=https://hh.example.com tracer send --all
      tracer send --spool .tracer/spool.db --api-key k   # drain a spool by hand (deletes what was sent)
    """
    from ..store import send_store

    if session_refs and all_sessions:
        _fail("give SESSION ids or --all, not both")
    if not api_key or not api_key.strip():
        _fail("--api-key is required (or set TRACER_API_KEY / HH_API_KEY)")
    if spool_path is not None:
        if session_refs or all_sessions:
            _fail("--spool sends the whole spool: give no SESSION and no --all")
        _send_spool(spool_path, api_key.strip(), server_url, project, timeout, not no_gzip)
        return
    with _errors(), _open_store(store_path, read_only=False) as store:
        ids = list(dict.fromkeys(store.resolve_session(ref) for ref in session_refs)) if session_refs else None
        stderr = make_console(stderr=True)
        with _progress(stderr, f"sending to {server_url}") as progress:
            task = progress.add_task("send", total=None)

            def advance(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            report = send_store(
                store,
                api_key.strip(),
                server_url,
                session_ids=ids,
                project=project,
                timeout=timeout,
                gzip=not no_gzip,
                progress=advance,
            )
    url = report.server_url
    if report.events_sent or report.sessions_started or report.updates_sent:
        parts = [f"{report.events_sent} event(s)"]
        if report.sessions_started:
            parts.append(f"{report.sessions_started} session start(s)")
        if report.updates_sent:
            parts.append(f"{report.updates_sent} update(s)")
        already = f"; {report.already_sent} event(s) were already there" if report.already_sent else ""
        click.echo(f"tracer: sent {', '.join(parts)} to {url}{already}")
    elif report.ok:
        click.echo(f"tracer: nothing to send: all {report.already_sent} event(s) are already on {url}")
    if not report.ok:
        unsent = report.events_failed + report.sessions_failed + report.updates_failed
        _fail(f"{unsent} item(s) not sent to {url} (run send again to retry): {report.error()}")


def _send_spool(path: str, api_key: str, server_url: str, project: str, timeout: float, gzip: bool) -> None:
    from ..store.spool import drain_spool

    if not os.path.exists(path):
        _fail(f"no spool at {_shown(os.path.abspath(path))}")
    with _errors():
        report = drain_spool(path, api_key, server_url, project=project, timeout=timeout, gzip=gzip)
    if report.busy:
        _fail(f"another process is sending {_shown(report.path)} right now; try again when it is done")
    if report.events_sent:
        click.echo(f"tracer: sent {report.events_sent} spooled event(s) to {report.server_url}")
    elif report.ok:
        click.echo(f"tracer: nothing to send: the spool {_shown(report.path)} is empty")
    if not report.ok:
        _fail(
            f"{report.events_left} spooled event(s) not sent to {report.server_url} (run send again to retry): "
            f"{report.error or 'the server did not accept them'}"
        )


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on (loopback by default).")
@click.option("--port", default=8787, show_default=True, type=click.IntRange(0, 65535), help="0: any free port.")
@store_option
@click.option(
    "--api-key",
    envvar="TRACER_SERVE_API_KEY",
    show_envvar=True,
    help="Require 'Authorization: Bearer KEY' (401 otherwise).",
)
@click.option(
    "--max-body-bytes",
    default=16 * 1024 * 1024,
    show_default=True,
    type=click.IntRange(1024),
    help="Larger request bodies (also once decompressed) get 413.",
)
@click.option(
    "--allow-host",
    "allowed_hosts",
    multiple=True,
    metavar="NAME",
    help="Also answer requests whose Host is NAME (repeatable; '*': any). Answered anyway: localhost "
    "and the address listened on; other names get 403 (DNS rebinding).",
)
@click.option(
    "--header-timeout",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.1),
    help="Seconds a connection may take to send a request's headers; then it is closed.",
)
@click.option(
    "--body-timeout",
    default=120.0,
    show_default=True,
    type=click.FloatRange(0.1),
    help="Seconds a request may take to send its body; then it gets 408.",
)
@click.option("--access-log", is_flag=True, help="Log every request.")
def serve(
    host: str,
    port: int,
    store_path: str | None,
    api_key: str | None,
    max_body_bytes: int,
    allowed_hosts: tuple[str, ...],
    header_timeout: float,
    body_timeout: float,
    access_log: bool,
) -> None:
    """Run a local HoneyHive-compatible collector that writes to the trace store.

    Implements HoneyHive's events API (POST /events, /events/batch, /events/model, PUT /events,
    POST /session/start, GET /session/ID, GET /events, POST /events/export, /v1/events/export),
    with HoneyHive's response bodies and error codes; gzip bodies are accepted and event ids are
    idempotent. Point any HoneyHive-style client at it.

    \b
    Examples:
      tracer serve                                   # http://127.0.0.1:8787, ./.tracer/traces.db
      tracer serve --port 9000 --api-key secret --store /tmp/collector.db
      TRACER_SERVER_URL=http://127.0.0.1:8787 TRACER_API_KEY=any python app.py
      curl -X POST http://127.0.0.1:8787/events -H 'Content-Type: application/json' \\
           -d '{"event": {"event_type": "tool", "event_name": "hello", "inputs": {}}}'
    """
    _need_server_extra("serve")
    from ..server._run import is_loopback
    from ..server._run import serve as run_server

    path = default_store_path(store_path)
    viewer_token = _viewer_token(host, api_key)
    if not is_loopback(host) and not api_key:
        click.echo(
            f"tracer: warning: listening on {host} without --api-key: anyone who can reach this port can write "
            "to your store",
            err=True,
        )

    def ready(url: str) -> None:
        click.echo(f"tracer: collector listening on {url}, storing to {_shown(path)} (Ctrl-C to stop)")
        key = "<the key>" if api_key else "any"
        click.echo(f"tracer: send to it with TRACER_SERVER_URL={url} TRACER_API_KEY={key} python your_app.py")
        click.echo(f"tracer: the viewer is at {_viewer_url(url, viewer_token)}")
        sys.stdout.flush()

    with _errors():
        try:
            run_server(
                path,
                host=host,
                port=port,
                api_key=api_key,
                max_body_bytes=max_body_bytes,
                allowed_hosts=allowed_hosts,
                header_timeout=header_timeout,
                body_timeout=body_timeout,
                access_log=access_log,
                viewer_token=viewer_token,
                ready=ready,
            )
        except OSError as exc:
            _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


def _viewer_token(host: str, api_key: str | None) -> str | None:
    """The viewer's token: the API key when given; a random one when listening off loopback."""
    from ..server._run import is_loopback
    from ..server._viewer_auth import new_token

    if api_key:
        return api_key
    return None if is_loopback(host) else new_token()


def _viewer_url(base: str, token: str | None) -> str:
    return f"{base}/#token={token}" if token else f"{base}/"


def _need_server_extra(command: str) -> None:
    missing = [name for name in ("starlette", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        _fail(
            f"`tracer {command}` needs the server extra ({', '.join(missing)} missing): "
            f"pip install '{DISTRIBUTION}[server]'"
        )


@cli.command()
@store_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on (loopback by default).")
@click.option("--port", default=8788, show_default=True, type=click.IntRange(0, 65535), help="0: any free port.")
@click.option("--open", "open_browser", is_flag=True, help="Also open the viewer in the default browser.")
@click.option(
    "--api-key",
    envvar="TRACER_UI_API_KEY",
    show_envvar=True,
    help="Require this token on every page and API call (off loopback, a random one is made without it).",
)
@click.option(
    "--allow-host",
    "allowed_hosts",
    multiple=True,
    metavar="NAME",
    help="Also answer requests whose Host is NAME (repeatable; '*': any); others get 403 (DNS rebinding).",
)
@click.option(
    "--search",
    "search_engine",
    type=click.Choice(["auto", "fts5", "scan"]),
    default="auto",
    show_default=True,
    help="Search engine: SQLite FTS5 (an index in ~/.cache/tracer/search) or a scan of the events.",
)
@click.option("--access-log", is_flag=True, help="Log every request.")
def ui(
    store_path: str | None,
    host: str,
    port: int,
    open_browser: bool,
    api_key: str | None,
    allowed_hosts: tuple[str, ...],
    search_engine: str,
    access_log: bool,
) -> None:
    """Browse the trace store in a web browser: sessions, waterfalls, transcripts, search, live.

    Reads the store read-only (a running app may keep writing it). Listens on loopback by
    default; elsewhere (or with --api-key) every page and API call needs the token, which the
    printed URL carries after #token=.

    \b
    Examples:
      tracer ui --open                            # http://127.0.0.1:8788/
      tracer ui --store /tmp/traces.db --port 0   # any free port
      tracer ui --host 0.0.0.0                    # prints http://0.0.0.0:8788/#token=...
    """
    _need_server_extra("ui")
    from ..server._run import is_loopback
    from ..server._ui import serve_viewer

    token = _viewer_token(host, api_key)
    engine = None if search_engine == "auto" else search_engine
    with _errors(), _open_store(store_path) as store:

        def ready(url: str) -> None:
            shown = _viewer_url(url, token)
            click.echo(f"tracer: viewer listening on {shown} , reading {_shown(store.path)} (Ctrl-C to stop)")
            if not is_loopback(host):
                click.echo("tracer: listening off loopback: pages and API need the token in the URL above", err=True)
            sys.stdout.flush()
            if open_browser:
                import webbrowser

                webbrowser.open(shown)

        try:
            serve_viewer(
                store,
                host=host,
                port=port,
                token=token,
                search_engine=engine,
                allowed_hosts=allowed_hosts,
                access_log=access_log,
                ready=ready,
            )
        except OSError as exc:
            _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


def run(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    # The library's own warnings (e.g. the exporter's "HoneyHive rejected …") would repeat, in
    # another form, the one error line each command prints.
    library_logger = logging.getLogger("tracer")
    library_logger.addHandler(logging.NullHandler())
    library_logger.propagate = False
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="tracer", standalone_mode=True)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except BrokenPipeError:  # `tracer export --all | head`: the reader left, which is fine
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 0
    return 0
