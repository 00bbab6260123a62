// The session view: totals, the waterfall (virtualized: light rows fetched in pages, only the
// rows on screen drawn), the event detail beside it, live updates over server-sent events.

import { ApiError, getJSON, openStream } from "./api.js";
import { renderDetail } from "./detail.js";
import { append, clear, copyButton, debounce, fmtDuration, fmtInt, fmtTime, h } from "./dom.js";
import { eventPath, safeType, sessionPath } from "./list.js";

const ROW_HEIGHT = 28; // px; app.css's .wf-row height
const PAGE_ROWS = 1000; // light rows per /events request (the API's default)
const OVERSCAN = 10; // rows drawn above and below the visible ones, so fast scrolling shows no gaps
const INDENT_PX = 14;
const MAX_INDENT_LEVELS = 24; // deeper rows stop moving right (the label column stays readable)
const FIND_PAGES = 10; // pages read to find a deep-linked event's row (10,000 rows)

export const typeClass = (type) => `type-${safeType(type)}`;

export function renderSession(root, app, sessionId, eventId) {
  const s = {
    session: null,
    total: 0,
    rows: [], // sparse: waterfall index -> light row
    pages: new Map(), // page number -> Promise while loading, true once loaded
    indexOf: new Map(), // event_id -> waterfall index (loaded rows)
    collapsed: new Set(), // event ids
    hidden: [], // merged [start, end) index ranges hidden by collapsed rows
    selected: null, // waterfall index
    openEvent: eventId,
    t0: 0,
    span: 1,
    generation: 0, // bumped when live data replaces the pages
  };
  let detailCleanup = null;
  let stream = null;
  let destroyed = false;

  const totals = h("dl", { className: "totals" });
  const title = h("h1", { className: "session-title" });
  const subtitle = h("p", { className: "session-sub" });
  const liveBadge = h("span", { className: "badge live", hidden: true }, "live");
  const axis = h("div", { className: "wf-axis", "aria-hidden": "true" });
  const spacer = h("div", { className: "wf-spacer" });
  const scroller = h("div", { className: "wf-scroll", tabIndex: 0, role: "tree", "aria-label": "Events of the session (arrow keys move, left/right collapse/expand, Enter opens)" }, spacer);
  const detail = h("aside", { className: "detail", "aria-label": "Event detail" });
  const body = h("div", { className: "session-body" },
    h("section", { className: "waterfall", "aria-label": "Waterfall" }, axis, scroller),
    detail);
  const view = h("section", { className: "session-view" },
    h("p", { className: "crumbs" }, h("a", { href: "/", dataset: { nav: "" } }, "← Sessions")),
    h("header", { className: "session-head" }, h("div", { className: "title-line" }, title, liveBadge), subtitle, totals),
    body);
  clear(root).appendChild(view);

  // ---- data ---------------------------------------------------------------------------------

  function loadPage(page) {
    if (s.pages.has(page)) return s.pages.get(page) === true ? Promise.resolve() : s.pages.get(page);
    const generation = s.generation;
    const promise = getJSON(`/api/sessions/${encodeURIComponent(sessionId)}/events`, { offset: page * PAGE_ROWS, limit: PAGE_ROWS })
      .then((data) => {
        if (destroyed || generation !== s.generation) return;
        storeRows(page * PAGE_ROWS, data.events);
        s.total = data.total;
        s.pages.set(page, true);
        refit();
      })
      .catch((error) => {
        s.pages.delete(page);
        // A 404 is the session's own "not found" view (start()); anything else is worth a line.
        if (!destroyed && !(error instanceof ApiError && error.status === 404)) console.warn("tracer viewer: loading rows failed", error);
      });
    s.pages.set(page, promise);
    return promise;
  }

  function storeRows(offset, rows) {
    rows.forEach((row, i) => {
      s.rows[offset + i] = row;
      s.indexOf.set(row.event_id, offset + i);
    });
  }

  // The timeline: from the session's start to the latest end seen (an open session keeps growing).
  function computeTimeline() {
    const session = s.session;
    let t0 = session.start_ms;
    let t1 = session.end_ms ?? session.start_ms;
    for (const row of s.rows) {
      if (!row) continue;
      if (row.start_ms !== null && row.start_ms < t0) t0 = row.start_ms;
      const end = row.end_ms ?? (row.duration_ms !== null ? row.start_ms + row.duration_ms : row.start_ms);
      if (end > t1) t1 = end;
    }
    s.t0 = t0;
    s.span = Math.max(t1 - t0, 1e-3);
  }

  // Hidden ranges: every collapsed row's descendants (the rows after it that are deeper).
  function computeHidden() {
    const ranges = [];
    for (const id of s.collapsed) {
      const start = s.indexOf.get(id);
      if (start === undefined) continue;
      const depth = s.rows[start].depth;
      let end = start + 1;
      while (end < s.total) {
        const row = s.rows[end];
        if (!row) { loadPage(Math.floor(end / PAGE_ROWS)); break; } // finished when that page arrives
        if (row.depth <= depth) break;
        end++;
      }
      if (end > start + 1) ranges.push([start + 1, end]);
    }
    ranges.sort((a, b) => a[0] - b[0]);
    const merged = [];
    for (const r of ranges) {
      const last = merged[merged.length - 1];
      if (last && r[0] <= last[1]) last[1] = Math.max(last[1], r[1]);
      else merged.push([r[0], r[1]]);
    }
    s.hidden = merged;
  }

  const visibleCount = () => s.total - s.hidden.reduce((n, [a, b]) => n + (b - a), 0);

  function posToIndex(pos) {
    let index = pos;
    for (const [a, b] of s.hidden) {
      if (a <= index) index += b - a;
      else break;
    }
    return index;
  }

  function indexToPos(index) {
    let pos = index;
    for (const [a, b] of s.hidden) {
      if (index >= b) pos -= b - a;
      else if (index >= a) return -1;
      else break;
    }
    return pos;
  }

  // ---- drawing ------------------------------------------------------------------------------

  function refit() {
    if (!s.session) return;
    computeTimeline();
    computeHidden();
    spacer.style.height = `${visibleCount() * ROW_HEIGHT}px`;
    drawAxis();
    draw();
  }

  function drawAxis() {
    clear(axis);
    const track = h("div", { className: "wf-axis-track" });
    axis.append(h("div", { className: "wf-axis-label" }, "event"), track);
    // About one tick per 80 px of the track: readable at 390 px wide and at 1280.
    const width = track.clientWidth || 480;
    const step = niceStep(s.span / Math.max(2, Math.floor(width / 80)));
    // A centred label is about 50 px wide: none so close to the end that it would leave the track.
    const last = 1 - 28 / width;
    for (let t = 0; t / s.span <= last; t += step) {
      const tick = h("span", { className: "wf-tick" }, t === 0 ? "0" : fmtDuration(t));
      tick.style.left = `${(t / s.span) * 100}%`;
      track.appendChild(tick);
    }
  }

  let frame = 0;
  function draw() {
    frame = 0;
    clear(spacer);
    const count = visibleCount();
    const first = Math.max(0, Math.floor(scroller.scrollTop / ROW_HEIGHT) - OVERSCAN);
    const last = Math.min(count, Math.ceil((scroller.scrollTop + scroller.clientHeight) / ROW_HEIGHT) + OVERSCAN);
    for (let pos = first; pos < last; pos++) {
      const index = posToIndex(pos);
      const row = s.rows[index];
      let el;
      if (row) el = rowView(row, index);
      else {
        loadPage(Math.floor(index / PAGE_ROWS));
        el = h("div", { className: "wf-row placeholder" }, h("div", { className: "wf-label" }, "…"));
      }
      el.style.top = `${pos * ROW_HEIGHT}px`;
      spacer.appendChild(el);
    }
  }
  const schedule = () => { if (!frame) frame = requestAnimationFrame(draw); };

  function rowView(row, index) {
    const failed = row.error !== null && row.error !== undefined;
    const collapsed = s.collapsed.has(row.event_id);
    const label = h("div", { className: "wf-label" });
    label.style.paddingLeft = `${6 + Math.min(row.depth, MAX_INDENT_LEVELS) * INDENT_PX}px`;
    append(label, [
      row.children > 0
        ? h("span", { className: "toggle", dataset: { toggle: "" }, title: collapsed ? "Expand" : "Collapse" }, collapsed ? "▸" : "▾")
        : h("span", { className: "toggle none" }),
      h("span", { className: `type-badge ${typeClass(row.event_type)}` }, row.event_type),
      h("span", { className: "wf-name" }, row.event_name),
      failed ? h("span", { className: "wf-error" }, `✗ ${row.error}`) : null,
      h("span", { className: "wf-dur" }, row.duration_ms === null ? "running" : fmtDuration(row.duration_ms))]);
    const bar = h("div", { className: `wf-bar ${typeClass(row.event_type)}${failed ? " failed" : ""}` });
    const start = (row.start_ms ?? s.t0) - s.t0;
    const duration = row.duration_ms ?? (row.end_ms !== null ? row.end_ms - row.start_ms : s.span - start);
    bar.style.left = `${(start / s.span) * 100}%`;
    bar.style.width = `${Math.max(0, (duration / s.span) * 100)}%`;
    const el = h("div", {
      className: "wf-row" + (failed ? " failed" : "") + (index === s.selected ? " selected" : "") + (row.event_id === s.openEvent ? " open" : ""),
      role: "treeitem",
      "aria-level": row.depth + 1,
      "aria-selected": index === s.selected ? "true" : "false",
      "aria-expanded": row.children > 0 ? String(!collapsed) : null,
      dataset: { eventId: row.event_id, index: String(index), depth: String(row.depth) },
      title: failed ? `${row.event_name}: ${row.error}` : row.event_name,
    }, label, h("div", { className: "wf-track" }, bar));
    return el;
  }

  // ---- interaction --------------------------------------------------------------------------

  function select(index, { scroll = true } = {}) {
    if (index === null || index < 0 || index >= s.total) return;
    s.selected = index;
    if (scroll) {
      const pos = indexToPos(index);
      if (pos >= 0) {
        const top = pos * ROW_HEIGHT;
        if (top < scroller.scrollTop) scroller.scrollTop = top;
        else if (top + ROW_HEIGHT > scroller.scrollTop + scroller.clientHeight) scroller.scrollTop = top + ROW_HEIGHT - scroller.clientHeight;
      }
    }
    draw();
  }

  function toggle(index, collapse) {
    const row = s.rows[index];
    if (!row || row.children === 0) return;
    const isCollapsed = s.collapsed.has(row.event_id);
    const want = collapse === undefined ? !isCollapsed : collapse;
    if (want === isCollapsed) return;
    if (want) s.collapsed.add(row.event_id);
    else s.collapsed.delete(row.event_id);
    refit();
  }

  const openRow = (index) => {
    const row = s.rows[index];
    if (row) app.navigate(eventPath(sessionId, row.event_id));
  };

  spacer.addEventListener("click", (event) => {
    const el = event.target.closest(".wf-row[data-index]");
    if (!el) return;
    const index = Number(el.dataset.index);
    scroller.focus({ preventScroll: true });
    if (event.target.closest("[data-toggle]")) {
      s.selected = index;
      toggle(index);
      return;
    }
    s.selected = index;
    openRow(index);
  });

  // Esc closes the detail from anywhere but a text field.
  const onKey = (event) => {
    if (event.key !== "Escape" || !s.openEvent || event.target.closest("input, select, textarea")) return;
    app.navigate(sessionPath(sessionId));
    scroller.focus({ preventScroll: true });
  };
  document.addEventListener("keydown", onKey);

  scroller.addEventListener("scroll", schedule);
  const onResize = () => { if (s.session) drawAxis(); schedule(); };
  window.addEventListener("resize", onResize);

  scroller.addEventListener("keydown", (event) => {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    const count = visibleCount();
    if (count === 0) return;
    const pos = s.selected === null ? -1 : indexToPos(s.selected);
    const row = s.selected === null ? null : s.rows[s.selected];
    const movePos = (p) => select(posToIndex(Math.max(0, Math.min(count - 1, p))));
    switch (event.key) {
      case "ArrowDown": movePos(pos + 1); break;
      case "ArrowUp": movePos(pos < 0 ? 0 : pos - 1); break;
      case "Home": movePos(0); break;
      case "End": movePos(count - 1); break;
      case "PageDown": movePos(pos + Math.floor(scroller.clientHeight / ROW_HEIGHT)); break;
      case "PageUp": movePos(pos - Math.floor(scroller.clientHeight / ROW_HEIGHT)); break;
      case "ArrowRight":
        if (!row) movePos(0);
        else if (row.children > 0 && s.collapsed.has(row.event_id)) toggle(s.selected, false);
        else if (row.children > 0) movePos(pos + 1);
        break;
      case "ArrowLeft":
        if (!row) break;
        if (row.children > 0 && !s.collapsed.has(row.event_id)) toggle(s.selected, true);
        else if (row.parent_id && s.indexOf.has(row.parent_id)) select(s.indexOf.get(row.parent_id));
        break;
      case "Enter": if (s.selected !== null) openRow(s.selected); break;
      default: return;
    }
    event.preventDefault();
  });

  // ---- header -------------------------------------------------------------------------------

  function drawHeader() {
    const x = s.session;
    title.textContent = x.session_name || "(unnamed session)";
    document.title = `${x.session_name || x.session_id} · tracer`;
    clear(subtitle).append(h("code", { className: "mono" }, x.session_id), " ", copyButton("the session id", () => x.session_id), x.source ? ` · source ${x.source}` : "");
    liveBadge.hidden = !x.live;
    clear(totals);
    const items = [
      ["Start", fmtTime(x.start_ms)],
      ["Duration", x.duration_ms === null ? "running" : fmtDuration(x.duration_ms)],
      ["Events", fmtInt(x.events)],
      ["Errors", fmtInt(x.errors)],
      ["Tokens in / out", `${fmtInt(x.prompt_tokens)} / ${fmtInt(x.completion_tokens)}`],
      ["Total tokens", fmtInt(x.total_tokens)],
      ["Models", (x.models || []).join(", ") || "—"],
    ];
    for (const [label, value] of items) {
      totals.appendChild(h("div", { className: "total" + (label === "Errors" && x.errors ? " error-text" : ""), dataset: { total: label.toLowerCase() } },
        h("dt", null, label), h("dd", null, value)));
    }
  }

  // ---- detail -------------------------------------------------------------------------------

  function showDetail(id) {
    s.openEvent = id;
    if (detailCleanup) { detailCleanup(); detailCleanup = null; }
    body.classList.toggle("with-detail", Boolean(id));
    if (!id) {
      clear(detail);
      detail.hidden = true;
      draw();
      return;
    }
    detail.hidden = false;
    detailCleanup = renderDetail(detail, id, { sessionId, onClose: () => app.navigate(sessionPath(sessionId)), typeClass });
    revealEvent(id);
    if (window.matchMedia("(max-width: 800px)").matches) detail.scrollIntoView({ block: "start" });
  }

  // Select and scroll to a deep-linked event's row: in the loaded pages, else the first few pages.
  async function revealEvent(id) {
    for (let page = 0; !s.indexOf.has(id) && page < FIND_PAGES && page * PAGE_ROWS < s.total; page++) {
      await loadPage(page);
      if (destroyed || s.openEvent !== id) return;
    }
    const index = s.indexOf.get(id);
    if (index === undefined) { draw(); return; }
    // Expand collapsed ancestors so the row can be shown.
    let parent = s.rows[index].parent_id;
    let expanded = false;
    while (parent && s.indexOf.has(parent)) {
      if (s.collapsed.delete(parent)) expanded = true;
      parent = s.rows[s.indexOf.get(parent)].parent_id;
    }
    if (expanded) refit();
    select(index);
  }

  // ---- live ---------------------------------------------------------------------------------

  // New events may land anywhere in the waterfall order: re-read the session and the pages held.
  const refreshLive = debounce(async () => {
    let session;
    try {
      session = await getJSON(`/api/sessions/${encodeURIComponent(sessionId)}`);
    } catch { return; }
    if (destroyed) return;
    s.session = session;
    s.total = session.events;
    drawHeader();
    const held = [...s.pages.keys()];
    s.generation++;
    const generation = s.generation;
    const fresh = await Promise.all(held.map((page) =>
      getJSON(`/api/sessions/${encodeURIComponent(sessionId)}/events`, { offset: page * PAGE_ROWS, limit: PAGE_ROWS })
        .then((data) => [page, data]).catch(() => null)));
    if (destroyed || generation !== s.generation) return;
    const selectedId = s.selected !== null && s.rows[s.selected] ? s.rows[s.selected].event_id : null;
    s.rows = [];
    s.indexOf = new Map();
    s.pages = new Map();
    for (const item of fresh) {
      if (!item) continue;
      const [page, data] = item;
      storeRows(page * PAGE_ROWS, data.events);
      s.total = data.total;
      s.pages.set(page, true);
    }
    if (selectedId && s.indexOf.has(selectedId)) s.selected = s.indexOf.get(selectedId);
    refit();
  }, 250);

  // ---- start --------------------------------------------------------------------------------

  async function start() {
    const firstPage = loadPage(0); // in parallel with the session's summary
    try {
      s.session = await getJSON(`/api/sessions/${encodeURIComponent(sessionId)}`);
    } catch (error) {
      if (destroyed) return;
      if (error instanceof ApiError && error.status === 404) app.notFound("session", sessionId);
      else if (!(error instanceof ApiError && error.status === 401)) {
        clear(root).appendChild(h("p", { className: "error-text" }, `Could not load the session: ${error.message}`));
      }
      return;
    }
    if (destroyed) return;
    drawHeader();
    s.total = Math.max(s.total, s.session.events);
    refit();
    await firstPage;
    if (destroyed) return;
    if (s.openEvent) showDetail(s.openEvent);
    else detail.hidden = true;
    stream = openStream({ session: sessionId, after: s.session.max_seq ?? 0 }, {
      events: (data) => {
        if (data.events && data.events.length) refreshLive();
      },
      open: () => app.setLive(true),
      error: () => app.setLive(false),
    });
  }

  detail.hidden = !eventId;
  start();

  return {
    update(newEventId) {
      if (newEventId === s.openEvent) return;
      if (s.session) showDetail(newEventId);
      else s.openEvent = newEventId;
    },
    cleanup() {
      destroyed = true;
      if (stream) stream.close();
      app.setLive(false);
      if (detailCleanup) detailCleanup();
      window.removeEventListener("resize", onResize);
      document.removeEventListener("keydown", onKey);
    },
  };
}

function niceStep(raw) {
  if (!(raw > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * power >= raw) return m * power;
  return 10 * power;
}
