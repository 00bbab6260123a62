"""The viewer page in a real browser (issue 15): list, search, waterfall, detail, transcript, deep
links, live updates, hostile strings, narrow and dark layouts, keyboard. See conftest.py."""

from __future__ import annotations

import json
import re
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.processes import Server

from .conftest import TOKEN, Viewer, run_traced_app
from .page_app import IMG, LONG_DOC, REFUND_PROMISE, SCRIPT, SESSION_NAME

pytestmark = pytest.mark.timeout(90)

WAIT_MS = 10_000  # generous under a loaded CI machine; a passing run waits far less


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    tab = context.new_page()
    tab.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    # The page itself never trips its Content-Security-Policy (no inline script or style, no eval).
    tab.on("console", lambda message: "Content Security Policy" in message.text and errors.append(message.text))
    yield tab
    assert_not_pwned(tab)
    context.close()
    assert errors == [], f"JavaScript errors or CSP violations in the page: {errors}"


def assert_not_pwned(tab: Any) -> None:
    """No recorded string ran as markup: the hostile strings set window.__pwned when they run."""
    assert tab.evaluate("typeof window.__pwned") == "undefined"
    assert tab.evaluate("document.querySelectorAll('#view script, #view img, #view iframe').length") == 0


def store_rows(store: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def bot_session(store: Path) -> str:
    [(session_id,)] = store_rows(store, "SELECT session_id FROM sessions WHERE session_name = ?", SESSION_NAME)
    return str(session_id)


def event_id(store: Path, name: str) -> str:
    [(found,)] = store_rows(store, "SELECT event_id FROM events WHERE event_name = ?", name)
    return str(found)


def open_session(page: Any, viewer: Viewer) -> None:
    page.goto(viewer.url + f"/sessions/{bot_session(viewer.store)}")
    page.wait_for_selector(".wf-row[data-index]")


def row_names(page: Any) -> list[str]:
    return [
        str(n) for n in page.eval_on_selector_all(".wf-row[data-index] .wf-name", "els => els.map(e => e.textContent)")
    ]


# ---- the list --------------------------------------------------------------------------------


def test_list_shows_sessions_with_their_totals_and_sorts(page: Any, viewer: Viewer) -> None:
    response = page.goto(viewer.url + "/")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    row = page.locator("tr.session-row", has_text=SESSION_NAME)
    row.wait_for()
    assert row.locator(".col-events").inner_text() == "5"
    assert row.locator(".col-errors").inner_text() == "1"
    assert row.locator(".col-tokens").inner_text() == "116 / 18"
    assert row.locator(".col-models").inner_text() == "gpt-4o-mini"
    assert row.locator(".col-source").inner_text() == "viewer-test"
    # The hostile session name is text in the name cell, not an element.
    hostile = page.locator("tr.session-row", has_text="nightly")
    assert hostile.locator(".col-name a").inner_text() == f"nightly {IMG}"

    page.click("button.sort[data-sort='name']")
    page.wait_for_url(re.compile(r"sort=name"))
    page.wait_for_function("() => document.querySelector('tr.session-row a').textContent.startsWith('batch-job-0')")
    names = page.eval_on_selector_all("tr.session-row .col-name a", "els => els.map(e => e.textContent)")
    assert names == sorted(names)

    page.select_option("#filter-type", "model")
    page.wait_for_function("() => document.querySelectorAll('tr.session-row').length === 1")
    assert "type=model" in page.url and page.locator("tr.session-row a").inner_text() == SESSION_NAME
    page.select_option("#filter-type", "")
    page.fill("#filter-since", "2099-01-01T00:00")
    page.locator(".list-status", has_text="No session matches").wait_for()
    assert "since=" in page.url
    page.fill("#filter-since", "")
    page.wait_for_function("() => document.querySelectorAll('tr.session-row').length > 1")

    page.fill("#filter-q", "batch-job-1")
    page.wait_for_function("() => document.querySelectorAll('tr.session-row').length === 1")
    assert "q=batch-job-1" in page.url
    page.uncheck("#filter-errors")
    page.fill("#filter-q", "")
    page.check("#filter-errors")
    page.wait_for_function("() => document.querySelectorAll('tr.session-row').length === 1")
    assert page.locator("tr.session-row a").inner_text() == SESSION_NAME


# A stand-in for fetch: the answer's headers arrive, its body never completes until the request is
# aborted. The race it makes certain (a list request replaced while its body is read) once drew a
# null body as the list in a CI run ("Cannot read properties of null (reading 'sessions')"); real
# servers cannot be made to stall at that exact point on cue.
STALLED_BODY = """async ([body, abortAfterMs]) => {
  const { getJSON } = await import("/static/api.js");
  window.fetch = async (url, init) => new Response(new ReadableStream({
    start(stream) {
      stream.enqueue(new TextEncoder().encode(body));
      if (abortAfterMs === null) { stream.close(); return; }
      init.signal.addEventListener("abort", () => stream.error(new DOMException("aborted", "AbortError")));
    },
  }), { status: 200, headers: { "Content-Type": "application/json" } });
  const controller = new AbortController();
  const answer = getJSON("/api/sessions", null, { signal: controller.signal });
  if (abortAfterMs !== null) setTimeout(() => controller.abort(), abortAfterMs);
  try { return ["answered", await answer]; } catch (error) { return ["failed", error.name, error.message]; }
}"""


def test_a_request_aborted_while_its_body_arrives_fails_as_aborted(page: Any, viewer: Viewer) -> None:
    page.goto(viewer.url + "/")
    page.locator("tr.session-row").first.wait_for()
    assert page.evaluate(STALLED_BODY, ['{"sessions": [', 20]) == ["failed", "AbortError", "aborted"]


def test_an_answer_that_is_not_json_fails_with_a_message(page: Any, viewer: Viewer) -> None:
    page.goto(viewer.url + "/")
    page.locator("tr.session-row").first.wait_for()
    assert page.evaluate(STALLED_BODY, ["<html>a proxy's page</html>", None]) == [
        "failed",
        "Error",
        "the answer was not JSON",
    ]
    assert page.evaluate(STALLED_BODY, ['{"sessions": []}', None]) == ["answered", {"sessions": []}]


def test_search_finds_the_session_with_the_match_highlighted(page: Any, viewer: Viewer) -> None:
    page.goto(viewer.url + "/")
    page.fill("#search-input", "promise")
    page.press("#search-input", "Enter")
    result = page.locator(".search-result", has_text="llm")
    result.wait_for()
    assert "search=promise" in page.url
    assert result.locator("mark").first.inner_text().lower() == "promise"
    assert SESSION_NAME in result.inner_text()

    # Hostile strings in snippets are text around the <mark>, never markup.
    for word, hostile in (("script", "<script>"), ("onerror", "<img src=x")):
        page.fill("#search-input", word)
        page.press("#search-input", "Enter")
        page.wait_for_url(re.compile(f"search={word}$"))
        page.wait_for_selector(".search-result mark")
        snippets = " ".join(page.eval_on_selector_all(".snippet", "els => els.map(e => e.textContent)"))
        assert hostile in snippets and "window.__pwn" in snippets, snippets
        marks = page.eval_on_selector_all(".snippet mark", "els => els.map(e => e.textContent.toLowerCase())")
        assert marks and set(marks) == {word}, marks
        assert_not_pwned(page)

    page.fill("#search-input", "promise")
    page.press("#search-input", "Enter")
    page.locator(".search-result", has_text="llm").locator("a").click()
    page.wait_for_url(re.compile(r"/sessions/[^/]+/events/[^/]+$"))
    page.wait_for_selector(".transcript")


def test_a_search_answered_while_the_index_is_built_says_so(page: Any, viewer: Viewer) -> None:
    # The server answers by scan with "indexing": true only in the first seconds of a big store
    # (tests/viewer/test_search_warm.py makes that state); here the real answer is passed through
    # with that flag set, to see what the page makes of it. Then the real answer again.
    def while_indexing(route: Any) -> None:
        response = route.fetch()
        answer = {**response.json(), "engine": "scan", "indexing": True, "total": None}
        route.fulfill(response=response, json=answer)

    page.route("**/api/search?*", while_indexing)
    page.goto(viewer.url + "/")
    page.fill("#search-input", "promise")
    page.press("#search-input", "Enter")
    status = page.locator(".list-status", has_text="matching events")
    status.wait_for()
    assert status.inner_text().endswith("(scan, indexing…)"), status.inner_text()
    assert page.locator(".search-result", has_text="llm").count() >= 1

    page.unroute("**/api/search?*")
    page.fill("#search-input", "promises promise")
    page.press("#search-input", "Enter")
    page.wait_for_url(re.compile("search=promises"))
    final = page.locator(".list-status", has_text="(")
    final.wait_for()
    assert "indexing" not in final.inner_text(), final.inner_text()


# ---- the session view --------------------------------------------------------------------------


def test_waterfall_rows_order_indentation_and_bars_follow_the_events_times(page: Any, viewer: Viewer) -> None:
    open_session(page, viewer)
    session_id = bot_session(viewer.store)
    events = store_rows(
        viewer.store,
        "SELECT event_name, parent_id, event_id, start_time, end_time, duration FROM events"
        " WHERE session_id = ? ORDER BY start_time, seq",
        session_id,
    )
    root = next(e for e in events if e[1] == session_id or e[1] not in {x[2] for x in events})
    children = sorted((e for e in events if e[1] == root[2]), key=lambda e: e[3])
    assert row_names(page) == [root[0]] + [c[0] for c in children]
    assert root[0] == "answer" and row_names(page)[3] == f"render {SCRIPT}"

    rows = page.locator(".wf-row[data-index]")
    badge_x = [rows.nth(i).locator(".type-badge").bounding_box()["x"] for i in range(rows.count())]
    assert all(x > badge_x[0] + 8 for x in badge_x[1:]), badge_x  # children indented under the chain
    assert len({round(x) for x in badge_x[1:]}) == 1  # siblings at one depth

    t0 = min(e[3] for e in events)
    span = max(e[4] for e in events) - t0
    for i, event in enumerate([root, *children]):
        track = rows.nth(i).locator(".wf-track").bounding_box()
        bar = rows.nth(i).locator(".wf-bar").bounding_box()
        tolerance = 0.015 * track["width"] + 1  # start times are whole milliseconds: 1 ms is ~0.8% here
        expected_left = (event[3] - t0) / span * track["width"]
        expected_width = max(event[5] / span * track["width"], 2)
        assert abs(bar["x"] - track["x"] - expected_left) <= tolerance, (event[0], bar, track)
        assert abs(bar["width"] - expected_width) <= tolerance, (event[0], bar, track)
    # Later siblings start further right; the failed tool is red, with its error.
    lefts = [rows.nth(i).locator(".wf-bar").bounding_box()["x"] for i in range(1, rows.count())]
    assert lefts == sorted(lefts)
    failed = page.locator(".wf-row.failed")
    assert failed.locator(".wf-name").inner_text() == "lookup_order"
    assert "KeyError" in failed.locator(".wf-error").inner_text()
    color = failed.locator(".wf-bar").evaluate("e => getComputedStyle(e).backgroundColor")
    assert color in ("rgb(207, 34, 46)", "rgb(255, 123, 114)")
    # Totals, and the axis.
    assert page.locator("[data-total='events'] dd").inner_text() == "5"
    assert page.locator("[data-total='errors'] dd").inner_text() == "1"
    assert page.locator(".wf-tick").count() >= 2

    # Collapsing the chain hides its subtree; expanding shows it again.
    page.click(".wf-row[data-index='0'] [data-toggle]")
    page.wait_for_function("() => document.querySelectorAll('.wf-row[data-index]').length === 1")
    page.click(".wf-row[data-index='0'] [data-toggle]")
    page.wait_for_function("() => document.querySelectorAll('.wf-row[data-index]').length === 5")


def test_model_event_shows_as_a_chat_transcript(page: Any, viewer: Viewer) -> None:
    open_session(page, viewer)
    page.click(".wf-row:has(.wf-name:text-is('llm'))")
    page.wait_for_url(re.compile(r"/events/" + re.escape(event_id(viewer.store, "llm")) + "$"))
    transcript = page.locator(".transcript")
    transcript.wait_for()
    roles = transcript.locator(".msg-role").all_inner_texts()
    assert [r.lower() for r in roles] == ["system", "user", "assistant", "tool", "assistant"]
    messages = transcript.locator(".msg")
    assert messages.nth(1).locator(".msg-content").inner_text() == f"Where is my refund? {SCRIPT}"
    call = messages.nth(2).locator(".tool-call")
    assert call.locator(".tool-name").inner_text() == "lookup_order"
    assert '"order_id": "1042"' in call.locator(".tool-args").inner_text()
    assert "call_1" in messages.nth(3).locator(".msg-head").inner_text()
    output = transcript.locator(".msg-output")
    assert output.locator(".msg-content").inner_text() == f"{REFUND_PROMISE} {IMG}"

    chips = {
        key: page.locator(f".model-summary [data-key='{key}'] dd").inner_text()
        for key in ("model", "provider", "tokens in", "tokens out", "cached", "time to first token", "finish reason")
    }
    assert chips == {
        "model": "gpt-4o-mini",
        "provider": "openai",
        "tokens in": "116",
        "tokens out": "18",
        "cached": "64",
        "time to first token": "3.5 ms",
        "finish reason": "stop",
    }
    # The raw fields are there too, as collapsible JSON with copy buttons.
    for field in ("inputs", "outputs", "config", "metadata", "metrics"):
        assert page.locator(f".field-section[data-field='{field}'] button.copy").count() == 1
    assert SCRIPT in page.locator(".field-section[data-field='inputs']").inner_text()

    # The failed tool: its error and traceback, the hostile string as text.
    page.click(".wf-row:has(.wf-name:text-is('lookup_order'))")
    error = page.locator(".error-box")
    error.wait_for()
    assert IMG in error.locator(".error-message").inner_text()
    assert "Traceback" in error.locator(".traceback pre").inner_text()
    # And the tool with the hostile name, input and output.
    page.click(f".wf-row:has(.wf-name:text-is('render {SCRIPT}'))")
    page.locator(".detail-title", has_text="render").wait_for()
    assert page.locator(".detail-title").inner_text() == f"render {SCRIPT}"
    assert IMG in page.locator(".field-section[data-field='inputs']").inner_text()
    assert SCRIPT in page.locator(".field-section[data-field='outputs']").inner_text()


def test_long_strings_fold_and_fields_copy(browser: Any, viewer: Viewer) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    tab = context.new_page()
    tab.set_default_timeout(WAIT_MS)
    try:
        search_docs = event_id(viewer.store, "search_docs")
        tab.goto(viewer.url + f"/sessions/{bot_session(viewer.store)}/events/{search_docs}")
        outputs = tab.locator(".field-section[data-field='outputs']")
        outputs.locator(".show-all").wait_for()
        folded = outputs.locator(".text.folded").inner_text()
        assert folded.endswith("…") and len(folded) < 500 and LONG_DOC not in outputs.inner_text()
        outputs.locator(".show-all").click()
        assert LONG_DOC in outputs.inner_text()
        outputs.locator("summary button.copy").click()
        copied = tab.evaluate("navigator.clipboard.readText()")
        assert json.loads(copied) == {"docs": ["Refunds are processed within 5 business days.", LONG_DOC]}
        assert_not_pwned(tab)
    finally:
        context.close()


def test_deep_links_open_the_event_and_the_back_button_works(page: Any, viewer: Viewer) -> None:
    session_id, llm = bot_session(viewer.store), event_id(viewer.store, "llm")
    response = page.goto(viewer.url + f"/sessions/{session_id}/events/{llm}")
    assert response.status == 200
    page.wait_for_selector(".transcript")
    page.wait_for_selector(".wf-row.open.selected .wf-name:text-is('llm')")

    page.click(".wf-row:has(.wf-name:text-is('search_docs'))")
    page.wait_for_url(re.compile(re.escape(event_id(viewer.store, "search_docs")) + "$"))
    page.locator(".detail-title", has_text="search_docs").wait_for()
    page.go_back()
    page.wait_for_url(re.compile(re.escape(llm) + "$"))
    page.locator(".detail-title", has_text="llm").wait_for()
    page.wait_for_selector(".transcript")
    page.click("a:text('← Sessions')")
    page.wait_for_selector("tr.session-row")
    page.go_back()
    page.wait_for_selector(".transcript")

    # Unknown ids: a 404 and a clear "not found" view.
    response = page.goto(viewer.url + "/sessions/no-such-session")
    assert response.status == 404
    page.locator(".not-found h1", has_text="Session not found").wait_for()
    response = page.goto(viewer.url + f"/sessions/{session_id}/events/no-such-event")
    assert response.status == 404
    page.locator(".not-found h2", has_text="Event not found").wait_for()
    # An event of another session, under this session's URL, is not found either.
    response = page.goto(viewer.url + f"/sessions/{session_id}/events/{event_id(viewer.store, 'step-0')}")
    assert response.status == 404
    page.locator(".not-found h2", has_text="Event not found").wait_for()


def test_keyboard_moves_collapses_expands_and_opens(page: Any, viewer: Viewer) -> None:
    open_session(page, viewer)
    page.focus(".wf-scroll")
    selected = "document.querySelector('.wf-row.selected .wf-name')?.textContent"
    page.keyboard.press("ArrowDown")
    assert page.evaluate(selected) == "answer"
    page.keyboard.press("ArrowDown")
    assert page.evaluate(selected) == "search_docs"
    page.keyboard.press("ArrowLeft")  # a leaf: to its parent
    assert page.evaluate(selected) == "answer"
    page.keyboard.press("ArrowLeft")  # collapse
    page.wait_for_function("() => document.querySelectorAll('.wf-row[data-index]').length === 1")
    assert page.get_attribute(".wf-row.selected", "aria-expanded") == "false"
    page.keyboard.press("ArrowRight")  # expand
    page.wait_for_function("() => document.querySelectorAll('.wf-row[data-index]').length === 5")
    for _ in range(4):
        page.keyboard.press("ArrowDown")
    assert page.evaluate(selected) == "llm"
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(re.escape(event_id(viewer.store, "llm")) + "$"))
    page.wait_for_selector(".transcript")
    page.keyboard.press("Escape")
    page.wait_for_url(re.compile(r"/sessions/[^/]+$"))
    page.wait_for_selector(".detail", state="hidden")


def test_a_token_protected_viewer_shows_the_login_form_then_the_list(page: Any, locked_viewer: Viewer) -> None:
    response = page.goto(locked_viewer.url + "/")
    assert response.status == 401
    page.wait_for_selector("#login:not([hidden])")
    assert page.locator("#view").is_hidden()
    page.fill("#login-token", "wrong")
    page.click("#login button[type=submit]")
    page.wait_for_selector("#login-error:not([hidden])")
    page.fill("#login-token", TOKEN)
    page.click("#login button[type=submit]")
    page.locator("tr.session-row", has_text=SESSION_NAME).wait_for()
    assert page.locator("#login").is_hidden()


def test_a_token_in_the_url_fragment_logs_in_and_leaves_the_address_bar(page: Any, locked_viewer: Viewer) -> None:
    session_id = bot_session(locked_viewer.store)
    page.goto(locked_viewer.url + f"/sessions/{session_id}#token={TOKEN}")
    page.wait_for_selector(".wf-row[data-index]")
    assert page.url == locked_viewer.url + f"/sessions/{session_id}"
    assert page.locator("#login").is_hidden()


# ---- layouts -----------------------------------------------------------------------------------


def test_narrow_layout_puts_the_detail_below_the_waterfall(browser: Any, viewer: Viewer) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844})
    tab = context.new_page()
    tab.set_default_timeout(WAIT_MS)
    try:
        tab.goto(viewer.url + "/")
        tab.wait_for_selector("tr.session-row")
        assert tab.evaluate("document.documentElement.scrollWidth") <= 390
        tab.goto(viewer.url + f"/sessions/{bot_session(viewer.store)}/events/{event_id(viewer.store, 'llm')}")
        tab.wait_for_selector(".transcript")
        waterfall = tab.locator(".waterfall").bounding_box()
        detail = tab.locator(".detail").bounding_box()
        assert detail["y"] >= waterfall["y"] + waterfall["height"] - 1
        assert waterfall["width"] <= 390 and detail["width"] <= 390
        assert tab.evaluate("document.documentElement.scrollWidth") <= 390
        assert_not_pwned(tab)
    finally:
        context.close()


def _background(browser: Any, url: str, scheme: str) -> tuple[int, ...]:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, color_scheme=scheme)
    try:
        tab = context.new_page()
        tab.goto(url)
        tab.wait_for_selector("tr.session-row")
        color = tab.evaluate("getComputedStyle(document.body).backgroundColor")
        return tuple(int(v) for v in re.findall(r"\d+", color)[:3])
    finally:
        context.close()


def test_dark_mode_follows_the_system(browser: Any, viewer: Viewer) -> None:
    light = _background(browser, viewer.url + "/", "light")
    dark = _background(browser, viewer.url + "/", "dark")
    assert sum(light) > 600 and sum(dark) < 150, (light, dark)


# ---- live (last: they add events to the module's store) -------------------------------------


def test_live_event_appears_in_the_open_session(page: Any, viewer: Viewer) -> None:
    open_session(page, viewer)
    page.wait_for_selector("#live-indicator:not([hidden])")
    run_traced_app(viewer.store, "live", bot_session(viewer.store), "late-tool")
    page.wait_for_selector(".wf-row .wf-name:text-is('late-tool')")
    page.wait_for_function("() => document.querySelector(\"[data-total='events'] dd\").textContent === '6'")


def test_new_session_appears_in_the_list(page: Any, viewer: Viewer) -> None:
    page.goto(viewer.url + "/")
    page.wait_for_selector("tr.session-row")
    page.wait_for_selector("#live-indicator:not([hidden])")
    new_session = str(uuid.uuid4())
    run_traced_app(viewer.store, "live", new_session, "arrived")
    page.wait_for_selector(f"tr.session-row[data-session-id='{new_session}']")


def test_the_collector_serves_the_viewer_and_what_it_receives_appears_live(page: Any, viewer: Viewer) -> None:
    collector = Server(viewer.store)  # tracer serve over the same store: pages at /, ingest at /events/batch
    try:
        page.goto(collector.url + "/")
        page.wait_for_selector("tr.session-row")
        page.wait_for_selector("#live-indicator:not([hidden])")
        new_session = str(uuid.uuid4())
        run_traced_app(collector.url, "live", new_session, "sent-to-collector")
        page.click(f"tr.session-row[data-session-id='{new_session}'] a")
        page.wait_for_selector(".wf-row .wf-name:text-is('sent-to-collector')")
        assert_not_pwned(page)
    finally:
        collector.stop()


def test_a_large_session_renders_only_the_visible_rows(page: Any, viewer: Viewer) -> None:
    count = 2500  # three pages of light rows (the page asks for 1,000 at a time)
    run_traced_app(viewer.store, "big", str(count))
    [(session_id,)] = store_rows(viewer.store, "SELECT session_id FROM sessions WHERE session_name = 'big-session'")
    page.goto(viewer.url + f"/sessions/{session_id}")
    page.wait_for_selector(".wf-row .wf-name:text-is('item-0')")
    drawn = page.locator(".wf-row").count()
    assert 5 < drawn < 120, drawn  # one screen and a margin, not 2,501 rows
    height = page.eval_on_selector(".wf-spacer", "e => e.getBoundingClientRect().height")
    assert height == (count + 1) * 28
    page.eval_on_selector(".wf-scroll", "e => { e.scrollTop = e.scrollHeight; }")
    page.wait_for_selector(f".wf-row .wf-name:text-is('item-{count - 1}')")
    assert page.locator(".wf-row").count() < 120
    page.wait_for_function("() => !document.querySelector('.wf-row.placeholder')")
