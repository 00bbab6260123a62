"""The read commands never change the file they are pointed at, open stores they can only read, and
show any session, however large, in pages (``tracer show --limit``); bad session ids are one line."""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import sqlite3
import stat
import subprocess
import sys
import sysconfig
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from tracer.store import TraceStore

from ..processes import REPO, clean_env, run_cli

pytest.importorskip("click")


def _fingerprint(path: Path) -> tuple[str, float, list[str]]:
    """The file's bytes, its modification time and the files beside it."""
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime, sorted(os.listdir(path.parent))


def event(session: str, name: str, parent: str, start: int, **fields: Any) -> dict[str, Any]:
    return {
        "project": "p",
        "source": "test",
        "event_id": fields.pop("event_id", str(uuid.uuid4())),
        "session_id": session,
        "parent_id": parent,
        "event_type": fields.pop("event_type", "tool"),
        "event_name": name,
        "children_ids": [],
        "config": {},
        "inputs": {},
        "outputs": {},
        "error": None,
        "start_time": start,
        "end_time": start + 1,
        "duration": 1.0,
        "metadata": {},
        **fields,
    }


def write_tree(path: Path, children: int, grandchildren: int) -> tuple[str, list[str]]:
    """A session: a root, *children* under it, *grandchildren* under each; returns its id and the
    event names in tree order (depth first, children by start time)."""
    session = str(uuid.uuid4())
    root = event(session, "root", session, 1_000, event_type="chain")
    events, order = [root], ["root"]
    for index in range(children):
        # Stored in reverse start order: the tree order must come from the start times.
        child = event(session, f"c{index}", root["event_id"], 10_000 - index * 10, event_type="chain")
        events.append(child)
        for sub in range(grandchildren):
            events.append(event(session, f"c{index}.{sub}", child["event_id"], 10_000 - index * 10 + sub))
    for index in reversed(range(children)):
        order.append(f"c{index}")
        order.extend(f"c{index}.{sub}" for sub in range(grandchildren))
    with TraceStore(path) as store:
        store.write([(e, orjson.dumps(e).decode()) for e in events], {session: {"session_id": session}})
    return session, order


@pytest.mark.parametrize("command", [["sessions"], ["show", "last"], ["tail", "--once"], ["export", "--all"]])
def test_foreign_and_empty_databases_are_refused_untouched(tmp_path: Path, command: list[str]) -> None:
    app = tmp_path / "app.db"
    db = sqlite3.connect(app)
    db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    db.execute("INSERT INTO users (name) VALUES ('ada')")
    db.commit()
    db.close()
    empty = tmp_path / "empty.db"
    empty.touch()
    for path, reason in ((app, "an SQLite database, but not a tracer store"), (empty, "empty")):
        before = _fingerprint(path)
        done = run_cli(*command, "--store", str(path))
        assert done.returncode == 1
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("tracer: error: "), done.stderr
        assert reason in done.stderr
        assert _fingerprint(path) == before  # same bytes, same mtime, no -wal / -shm created
    db = sqlite3.connect(app)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # not switched to WAL
    db.close()
    assert empty.stat().st_size == 0  # no schema written into it


_PR_CAPBSET_DROP = 24  # prctl(2)
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2  # capability.h


def _without_file_overrides() -> None:
    """In the child, as root: root reads and writes anything, so the reader gives up the two
    capabilities that override file permissions (dropped from the bounding set, the interpreter it
    execs never has them). It then obeys the permission bits like the files' owner, and can still
    run this interpreter under /root."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _as_nobody() -> None:
    """In the child, as root, where capabilities cannot be dropped: become `nobody`."""
    os.setgid(65534)
    os.setuid(65534)


def _reader() -> tuple[str, dict[str, str], Callable[[], None] | None]:
    """An interpreter, environment and child set-up for a reader who may not write the store.

    As root: this interpreter without the capabilities that override file permissions; where they
    cannot be dropped, the user `nobody`, who may not enter the directory of this interpreter
    (pyenv's under /root): then the system's Python of the same version, given this environment's
    packages on PYTHONPATH."""
    extra = os.pathsep.join([str(REPO), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    if os.geteuid() != 0:
        return sys.executable, clean_env(PYTHONPATH=extra), None
    try:
        subprocess.run([sys.executable, "-c", "pass"], preexec_fn=_without_file_overrides, check=True, timeout=30)
    except (subprocess.SubprocessError, OSError):
        pass
    else:
        return sys.executable, clean_env(PYTHONPATH=extra), _without_file_overrides
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [sys.executable] if os.access(sys.executable, os.X_OK, effective_ids=False) else []
    candidates += [f"/usr/bin/{version}", f"/usr/local/bin/{version}"]
    for python in candidates:
        mode = os.stat(python).st_mode if os.path.exists(python) else 0
        if mode & stat.S_IXOTH and _world_reachable(python):
            return python, clean_env(PYTHONPATH=extra), _as_nobody
    pytest.skip("running as root, unable to drop file capabilities, with no interpreter that `nobody` can run")


def _world_reachable(path: str) -> bool:
    """Every directory above *path* can be entered by anyone."""
    parent = os.path.dirname(os.path.realpath(path))
    while parent != os.path.dirname(parent):
        if not os.stat(parent).st_mode & stat.S_IXOTH:
            return False
        parent = os.path.dirname(parent)
    return True


@pytest.mark.parametrize("directory_writable", [False, True])
def test_a_store_the_user_can_only_read_opens(directory_writable: bool) -> None:
    # Not under pytest's tmp_path: that is private to its owner, and the reader may be `nobody`.
    directory = Path(tempfile.mkdtemp(prefix="tracer-ro-"))
    try:
        store = directory / "traces.db"
        session, _ = write_tree(store, 3, 2)
        assert sorted(os.listdir(directory)) == ["traces.db"]  # the writer checkpointed and closed
        store.chmod(0o444)
        directory.chmod(0o777 if directory_writable else 0o555)
        before = _fingerprint(store)

        python, env, setup = _reader()
        # The reader really cannot write here (as root: its capabilities are gone).
        probe = f"open({str(directory / 'probe')!r}, 'w')" if not directory_writable else f"open({str(store)!r}, 'r+b')"
        refused = subprocess.run([python, "-c", probe], env=env, preexec_fn=setup, capture_output=True, timeout=30)
        assert refused.returncode != 0 and b"PermissionError" in refused.stderr, refused
        for command in (["sessions"], ["show", session[-12:]]):
            done = subprocess.run(
                [python, "-m", "tracer", *command, "--store", str(store)],
                capture_output=True,
                text=True,
                env=env,
                preexec_fn=setup,
                timeout=30,
                check=False,
            )
            assert done.returncode == 0, done.stderr
            assert session[-12:] in done.stdout or "c2.1" in done.stdout
        assert _fingerprint(store)[:2] == before[:2]
    finally:
        directory.chmod(0o755)
        for name in os.listdir(directory):
            os.chmod(directory / name, 0o644)
            os.unlink(directory / name)
        directory.rmdir()


def test_show_pages_a_large_session_and_says_what_it_left_out(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    session, order = write_tree(path, 30, 9)  # 301 events
    done = run_cli("show", session, "--limit", "25", "--store", str(path))
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if "█" in line]
    assert len(rows) == 25
    names = [re.search(r"(?:chain|tool) +(\S+)", row).group(1) for row in rows]  # type: ignore[union-attr]
    assert names == order[:25]  # the first rows in tree order, children by start time
    last = done.stdout.splitlines()[-1]
    assert last.startswith("… 276 more event(s) not shown (of 301): ")
    assert f"tracer show {session} --limit" in last and "--limit 0 for all" in last
    everything = run_cli("show", session, "--limit", "0", "--store", str(path))
    assert len([line for line in everything.stdout.splitlines() if "█" in line]) == 301
    assert "not shown" not in everything.stdout
    as_json = run_cli("show", session, "--json", "-n", "10", "--store", str(path))
    data = orjson.loads(as_json.stdout)
    assert len(data["events"]) == 10 and data["events_left_out"] == 291
    assert [e["start_time"] for e in data["events"]] == sorted(e["start_time"] for e in data["events"])
    assert "291 more event(s) not shown" in as_json.stderr


def test_unusual_session_ids_are_one_line_errors(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    write_tree(path, 1, 1)
    for ref in ("\U0010ffff" * 4, "abc\U0010ffff", "'; DROP TABLE events; --", "%%%%", "____"):
        done = run_cli("show", ref, "--store", str(path))
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.startswith("tracer: error: no session") and done.stderr.count("\n") == 1
    undecodable = subprocess.run(
        [sys.executable, "-m", "tracer", "show", b"\xff\xfe\xfd\xfc", "--store", str(path)],
        capture_output=True,
        env=clean_env(),
        timeout=30,
        check=False,
    )
    assert undecodable.returncode == 1, undecodable.stderr
    assert undecodable.stderr.startswith(b"tracer: error: no session") and undecodable.stderr.count(b"\n") == 1
    assert run_cli("show", "last", "--store", str(path)).returncode == 0  # the store is intact
