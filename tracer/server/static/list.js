// The sessions list (filters, sortable columns, pages, live new sessions) and the search results.

import { ApiError, getJSON, openStream } from "./api.js";
import { clear, debounce, fmtDuration, fmtInt, fmtTime, fromLocalInput, h, toLocalInput } from "./dom.js";

const PAGE_SIZE = 50;
const SEARCH_PAGE = 50;
const EVENT_TYPES = ["model", "tool", "chain", "session"];

// [column label, sort key or null, class]
const COLUMNS = [
  ["Name", "name", "col-name"],
  ["Source", null, "col-source"],
  ["Start", "start", "col-start"],
  ["Duration", "duration", "col-num col-duration"],
  ["Events", "events", "col-num col-events"],
  ["Errors", "errors", "col-num col-errors"],
  ["Tokens in / out", "tokens", "col-num col-tokens"],
  ["Models", null, "col-models"],
];

export const sessionPath = (id) => `/sessions/${encodeURIComponent(id)}`;
export const eventPath = (sid, eid) => `${sessionPath(sid)}/events/${encodeURIComponent(eid)}`;

function readFilters(search) {
  const p = new URLSearchParams(search);
  const int = (name) => {
    const v = Number.parseInt(p.get(name) || "", 10);
    return Number.isFinite(v) ? v : null;
  };
  return {
    q: p.get("q") || "",
    type: p.get("type") || "",
    model: p.get("model") || "",
    errors: p.get("errors") === "1",
    since: int("since"),
    until: int("until"),
    sort: p.get("sort") || "start",
    order: p.get("order") === "asc" ? "asc" : "desc",
    page: Math.max(1, int("page") || 1),
  };
}

function filtersQuery(f) {
  const p = new URLSearchParams();
  if (f.q) p.set("q", f.q);
  if (f.type) p.set("type", f.type);
  if (f.model) p.set("model", f.model);
  if (f.errors) p.set("errors", "1");
  if (f.since !== null) p.set("since", String(f.since));
  if (f.until !== null) p.set("until", String(f.until));
  if (f.sort !== "start") p.set("sort", f.sort);
  if (f.order !== "desc") p.set("order", f.order);
  if (f.page > 1) p.set("page", String(f.page));
  const text = p.toString();
  return text ? `?${text}` : "";
}

// Renders the list into root; returns a cleanup function (closes the live stream).
export function renderList(root, app) {
  const filters = readFilters(location.search);
  let controller = null;
  let changed = new Set();

  const status = h("p", { className: "list-status", role: "status" });
  const tbody = h("tbody");
  const pager = h("nav", { className: "pager", "aria-label": "Pages" });
  const headRow = h("tr");
  const modelOptions = h("datalist", { id: "model-options" });

  const qInput = h("input", { type: "search", id: "filter-q", value: filters.q, placeholder: "Name, source or session id", "aria-label": "Filter sessions by text" });
  const typeSelect = h("select", { id: "filter-type", "aria-label": "Event type" },
    h("option", { value: "" }, "Any event type"),
    EVENT_TYPES.map((t) => h("option", { value: t }, `has ${t} events`)));
  typeSelect.value = filters.type;
  const modelInput = h("input", { type: "text", id: "filter-model", value: filters.model, placeholder: "Model", list: "model-options", "aria-label": "Model" });
  const errorsBox = h("input", { type: "checkbox", id: "filter-errors", checked: filters.errors });
  const sinceInput = h("input", { type: "datetime-local", id: "filter-since", "aria-label": "Started after" });
  const untilInput = h("input", { type: "datetime-local", id: "filter-until", "aria-label": "Started before" });
  if (filters.since !== null) sinceInput.value = toLocalInput(filters.since);
  if (filters.until !== null) untilInput.value = toLocalInput(filters.until);
  const clearButton = h("button", { type: "button", className: "secondary" }, "Clear filters");

  const filterBar = h("form", { className: "filters", role: "search", onsubmit: (e) => e.preventDefault() },
    qInput, typeSelect, modelInput, modelOptions,
    h("label", { className: "check" }, errorsBox, " errors only"),
    h("label", { className: "range" }, "from ", sinceInput),
    h("label", { className: "range" }, "to ", untilInput),
    clearButton);

  for (const [label, sort, cls] of COLUMNS) {
    const th = h("th", { className: cls, scope: "col" });
    if (sort) {
      const active = filters.sort === sort;
      th.setAttribute("aria-sort", active ? (filters.order === "asc" ? "ascending" : "descending") : "none");
      th.appendChild(h("button", { type: "button", className: "sort" + (active ? " active" : ""), dataset: { sort } },
        label, active ? (filters.order === "asc" ? " ▲" : " ▼") : ""));
    } else {
      th.textContent = label;
    }
    headRow.appendChild(th);
  }

  clear(root).appendChild(h("section", { className: "list-view" },
    h("h1", { className: "visually-hidden" }, "Sessions"),
    filterBar,
    status,
    h("div", { className: "table-wrap" },
      h("table", { className: "sessions" }, h("thead", null, headRow), tbody)),
    pager));

  const apply = (replace = true) => {
    const url = "/" + filtersQuery(filters);
    if (replace) history.replaceState(null, "", url);
    else history.pushState(null, "", url);
    load();
  };
  const refilter = () => { filters.page = 1; apply(); };

  qInput.addEventListener("input", debounce(() => { filters.q = qInput.value.trim(); refilter(); }, 250));
  modelInput.addEventListener("input", debounce(() => { filters.model = modelInput.value.trim(); refilter(); }, 250));
  typeSelect.addEventListener("change", () => { filters.type = typeSelect.value; refilter(); });
  errorsBox.addEventListener("change", () => { filters.errors = errorsBox.checked; refilter(); });
  sinceInput.addEventListener("change", () => { filters.since = fromLocalInput(sinceInput.value); refilter(); });
  untilInput.addEventListener("change", () => { filters.until = fromLocalInput(untilInput.value); refilter(); });
  clearButton.addEventListener("click", () => {
    Object.assign(filters, { q: "", type: "", model: "", errors: false, since: null, until: null, page: 1 });
    qInput.value = modelInput.value = sinceInput.value = untilInput.value = typeSelect.value = "";
    errorsBox.checked = false;
    apply();
  });
  headRow.addEventListener("click", (event) => {
    const button = event.target.closest("button.sort");
    if (!button) return;
    const sort = button.dataset.sort;
    if (filters.sort === sort) filters.order = filters.order === "desc" ? "asc" : "desc";
    else { filters.sort = sort; filters.order = sort === "name" ? "asc" : "desc"; }
    filters.page = 1;
    apply();
    // Re-render the headers' arrows: cheapest is to draw the view again with the new URL.
    renderListHeaders(headRow, filters);
  });

  async function load() {
    if (controller) controller.abort();
    controller = new AbortController();
    const params = {
      q: filters.q, type: filters.type, model: filters.model, errors: filters.errors,
      since: filters.since, until: filters.until, sort: filters.sort, order: filters.order,
      limit: PAGE_SIZE, offset: (filters.page - 1) * PAGE_SIZE,
    };
    let data;
    try {
      data = await getJSON("/api/sessions", params, { signal: controller.signal });
    } catch (error) {
      if (error.name === "AbortError") return;
      status.textContent = error instanceof ApiError && error.status === 400
        ? `Invalid filter (${error.body.parameter || "parameter"}): ${error.message}`
        : `Could not load sessions: ${error.message}`;
      status.classList.add("error-text");
      return;
    }
    status.classList.remove("error-text");
    drawRows(data);
  }

  function drawRows(data) {
    clear(tbody);
    const models = new Set();
    for (const s of data.sessions) {
      for (const m of s.models || []) models.add(m);
      tbody.appendChild(sessionRow(s, changed.has(s.session_id), app));
    }
    changed = new Set();
    clear(modelOptions);
    for (const m of models) modelOptions.appendChild(h("option", { value: m }));
    const first = data.total === 0 ? 0 : data.offset + 1;
    const last = data.offset + data.sessions.length;
    const filtered = filters.q || filters.type || filters.model || filters.errors || filters.since !== null || filters.until !== null;
    if (data.total === 0) {
      status.textContent = filtered
        ? "No session matches these filters."
        : "No sessions yet: run a script traced with tracer.init() (no api_key) and its session appears here.";
    } else {
      status.textContent = `${fmtInt(first)}–${fmtInt(last)} of ${fmtInt(data.total)} sessions`;
    }
    drawPager(data);
  }

  function drawPager(data) {
    clear(pager);
    const pages = Math.max(1, Math.ceil(data.total / PAGE_SIZE));
    if (pages <= 1) return;
    const go = (page) => { filters.page = page; apply(false); window.scrollTo(0, 0); };
    pager.append(
      h("button", { type: "button", className: "secondary", disabled: filters.page <= 1, onclick: () => go(filters.page - 1) }, "← Newer"),
      h("span", null, `page ${filters.page} of ${pages}`),
      h("button", { type: "button", className: "secondary", disabled: filters.page >= pages, onclick: () => go(filters.page + 1) }, "Older →"));
  }

  // New sessions and sessions gaining events: reload the page shown (debounced), marking those rows.
  const reload = debounce(load, 300);
  const stream = openStream({}, {
    sessions: (data) => {
      for (const id of data.changed || []) changed.add(id);
      reload();
    },
    open: () => app.setLive(true),
    error: () => app.setLive(false),
  });

  load();
  return () => {
    stream.close();
    app.setLive(false);
    if (controller) controller.abort();
  };
}

function renderListHeaders(headRow, filters) {
  for (const th of headRow.children) {
    const button = th.querySelector("button.sort");
    if (!button) continue;
    const active = button.dataset.sort === filters.sort;
    const label = COLUMNS.find((c) => c[1] === button.dataset.sort)[0];
    button.className = "sort" + (active ? " active" : "");
    button.textContent = label + (active ? (filters.order === "asc" ? " ▲" : " ▼") : "");
    th.setAttribute("aria-sort", active ? (filters.order === "asc" ? "ascending" : "descending") : "none");
  }
}

function sessionRow(s, flash, app) {
  const href = sessionPath(s.session_id);
  const name = s.session_name || "(unnamed session)";
  const row = h("tr", { className: "session-row" + (flash ? " flash" : "") + (s.errors ? " has-errors" : ""), dataset: { sessionId: s.session_id } },
    h("td", { className: "col-name" },
      h("a", { href, dataset: { nav: "" }, title: s.session_id }, name),
      s.live ? h("span", { className: "badge live", title: "receiving events" }, "live") : null,
      h("div", { className: "sub mono" }, s.session_id)),
    h("td", { className: "col-source" }, s.source || "—"),
    h("td", { className: "col-start" }, fmtTime(s.start_ms)),
    h("td", { className: "col-num col-duration" }, s.duration_ms === null ? "running" : fmtDuration(s.duration_ms)),
    h("td", { className: "col-num col-events" }, fmtInt(s.events)),
    h("td", { className: "col-num col-errors" + (s.errors ? " error-text" : "") }, fmtInt(s.errors)),
    h("td", { className: "col-num col-tokens" }, `${fmtInt(s.prompt_tokens)} / ${fmtInt(s.completion_tokens)}`),
    h("td", { className: "col-models" }, (s.models || []).join(", ") || "—"));
  row.addEventListener("click", (event) => {
    if (event.target.closest("a")) return; // the link navigates by itself (and opens new tabs)
    app.navigate(href);
  });
  return row;
}

// ---- search results: /?search=… ----------------------------------------------------------------

export function renderSearch(root, app, text) {
  let offset = 0;
  let controller = new AbortController();
  const status = h("p", { className: "list-status", role: "status" }, "Searching…");
  const results = h("ol", { className: "search-results" });
  const more = h("button", { type: "button", className: "secondary", hidden: true }, "More results");
  clear(root).appendChild(h("section", { className: "search-view" },
    h("p", { className: "crumbs" }, h("a", { href: "/", dataset: { nav: "" } }, "← Sessions")),
    h("h1", null, "Search: ", h("q", null, text)),
    status, results, more));

  async function page() {
    let data;
    try {
      data = await getJSON("/api/search", { q: text, limit: SEARCH_PAGE, offset }, { signal: controller.signal });
    } catch (error) {
      if (error.name === "AbortError") return;
      status.textContent = `Search failed: ${error.message}`;
      status.classList.add("error-text");
      return;
    }
    for (const r of data.results) results.appendChild(searchResult(r));
    offset += data.results.length;
    const shown = results.children.length;
    // While the full-text index is being built, the server answers by scan and says so.
    const engine = data.engine === "fts5" ? "full-text index" : data.indexing ? "scan, indexing…" : "scan";
    if (shown === 0) status.textContent = `No event matches (${engine}).`;
    else if (data.total === null || data.total === undefined) status.textContent = `${fmtInt(shown)} matching events (${engine})`;
    else status.textContent = `${fmtInt(shown)} of ${fmtInt(data.total)} matching events (${engine})`;
    more.hidden = data.results.length < SEARCH_PAGE || (data.total !== null && data.total !== undefined && shown >= data.total);
  }
  more.addEventListener("click", page);
  page();
  return () => controller.abort();
}

function searchResult(r) {
  const href = eventPath(r.session_id, r.event_id);
  const snippet = h("p", { className: "snippet" });
  for (const segment of r.snippet || []) {
    snippet.appendChild(segment.match ? h("mark", null, segment.text) : document.createTextNode(segment.text));
  }
  return h("li", { className: "search-result" },
    h("a", { href, dataset: { nav: "" }, className: "result-link" },
      h("span", { className: `type-badge type-${safeType(r.event_type)}` }, r.event_type),
      h("span", { className: "result-event" }, r.event_name),
      h("span", { className: "result-session" }, " in ", r.session_name || r.session_id),
      h("span", { className: "result-field" }, r.field)),
    snippet);
}

export function safeType(type) {
  return EVENT_TYPES.includes(type) ? type : "other";
}
