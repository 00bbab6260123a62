// The viewer's entry point: routes (/, /sessions/{id}, /sessions/{id}/events/{eid}) with
// history.pushState and popstate, in-page links, the search box, the login form.

import { login, onUnauthorized } from "./api.js";
import { clear, h } from "./dom.js";
import { renderList, renderSearch } from "./list.js";
import { renderSession } from "./session.js";

const view = document.getElementById("view");
const loginSection = document.getElementById("login");
const searchInput = document.getElementById("search-input");
const liveIndicator = document.getElementById("live-indicator");

let current = null; // {kind, key, cleanup(), update?(eventId)}

const app = {
  navigate(url) {
    if (url !== location.pathname + location.search) history.pushState(null, "", url);
    route();
  },
  setLive(on) {
    liveIndicator.hidden = !on;
  },
  notFound(kind, id) {
    showNotFound(kind, id);
  },
};

function unmount() {
  if (current) current.cleanup();
  current = null;
}

function showNotFound(kind, id) {
  unmount();
  document.title = "Not found · tracer";
  const what = kind === "session" ? "No session" : kind === "event" ? "No event" : "Nothing";
  clear(view).appendChild(h("section", { className: "not-found" },
    h("h1", null, `${kind === "page" ? "Page" : kind === "session" ? "Session" : "Event"} not found`),
    h("p", null, what, id ? [" with id ", h("code", null, id)] : " at this address", " is in this store."),
    h("p", null, h("a", { href: "/", dataset: { nav: "" } }, "← All sessions"))));
  current = { kind: "not-found", key: null, cleanup() {} };
}

function decode(part) {
  try { return decodeURIComponent(part); } catch { return null; }
}

function route() {
  loginSection.hidden = true;
  view.hidden = false;
  const path = location.pathname;
  const params = new URLSearchParams(location.search);
  if (path === "/" || path === "/index.html") {
    const search = params.get("search");
    searchInput.value = search || "";
    unmount();
    if (search) {
      document.title = `Search: ${search} · tracer`;
      current = { kind: "search", key: search, cleanup: renderSearch(view, app, search) };
    } else {
      document.title = "Sessions · tracer";
      current = { kind: "list", key: null, cleanup: renderList(view, app) };
    }
    return;
  }
  const match = path.match(/^\/sessions\/([^/]+)(?:\/events\/([^/]+))?\/?$/);
  const sessionId = match ? decode(match[1]) : null;
  const eventId = match && match[2] ? decode(match[2]) : null;
  if (!sessionId || (match[2] && !eventId)) {
    showNotFound("page", null);
    return;
  }
  if (current && current.kind === "session" && current.key === sessionId) {
    current.update(eventId);
    return;
  }
  unmount();
  const session = renderSession(view, app, sessionId, eventId);
  current = { kind: "session", key: sessionId, cleanup: session.cleanup, update: session.update };
}

// Links marked data-nav stay in the page (a plain click); new tabs and other clicks are the browser's.
document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-nav]");
  if (!link || event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const url = new URL(link.href, location.href);
  if (url.origin !== location.origin) return;
  event.preventDefault();
  app.navigate(url.pathname + url.search);
});

window.addEventListener("popstate", route);

document.getElementById("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = searchInput.value.trim();
  app.navigate(text ? `/?search=${encodeURIComponent(text)}` : "/");
});

// ---- authentication (README, Viewer API: a token when not on loopback or given --api-key) -----

function showLogin() {
  unmount();
  view.hidden = true;
  loginSection.hidden = false;
  document.getElementById("login-token").focus();
}

onUnauthorized(showLogin);

document.getElementById("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = document.getElementById("login-token");
  const error = document.getElementById("login-error");
  const ok = await login(input.value).catch(() => false);
  error.hidden = ok;
  if (ok) {
    input.value = "";
    route();
  }
});

async function start() {
  const token = location.hash.match(/[#&]token=([^&]+)/);
  if (token) {
    // Trade the fragment's token for the HttpOnly cookie, then drop it from the address bar.
    await login(decode(token[1]) || "").catch(() => false);
    history.replaceState(null, "", location.pathname + location.search);
  }
  route();
}

start();
