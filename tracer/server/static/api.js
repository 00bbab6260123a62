// The viewer's JSON API (README, "Viewer API"): fetch with the session cookie, errors as ApiError,
// the live stream as server-sent events.

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

let unauthorized = () => {};

// Called with no argument whenever the API answers 401: the app shows its login form.
export function onUnauthorized(handler) {
  unauthorized = handler;
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value === null || value === undefined || value === "" || value === false) continue;
    search.set(key, value === true ? "1" : String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

export async function getJSON(path, params = null, { signal } = {}) {
  const response = await fetch(path + query(params), {
    credentials: "same-origin",
    headers: { Accept: "application/json" },
    signal,
  });
  let body = null;
  try {
    body = await response.json();
  } catch (error) {
    // Aborted while the body was still arriving (a newer request replaced this one): the caller
    // drops an AbortError, but would draw a null body as if it were the answer.
    if (signal && signal.aborted) throw error.name === "AbortError" ? error : new DOMException("aborted", "AbortError");
    // Otherwise the answer was not JSON: body stays null, told apart below.
  }
  if (response.status === 401) unauthorized();
  if (!response.ok) throw new ApiError(response.status, body);
  if (body === null) throw new ApiError(response.status, { error: "the answer was not JSON" });
  return body;
}

export async function login(token) {
  const response = await fetch("/api/login", {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify({ token }),
  });
  return response.ok;
}

// One EventSource on /api/stream. handlers: {sessions(data), events(data), open(), error()}.
// The browser reconnects by itself after a drop; close() ends it for good.
export function openStream(params, handlers) {
  const source = new EventSource("/api/stream" + query(params), { withCredentials: true });
  for (const name of ["sessions", "events"]) {
    if (!handlers[name]) continue;
    source.addEventListener(name, (message) => {
      let data;
      try { data = JSON.parse(message.data); } catch { return; }
      handlers[name](data);
    });
  }
  source.addEventListener("open", () => handlers.open && handlers.open());
  source.addEventListener("error", () => handlers.error && handlers.error());
  return source;
}
