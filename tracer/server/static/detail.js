// One event's detail: the model call as a chat transcript, the error and its traceback, and every
// field as collapsible JSON with copy buttons. Recorded strings are text nodes, never markup.

import { ApiError, getJSON } from "./api.js";
import { clear, copyButton, fmtDuration, fmtInt, fmtTime, h } from "./dom.js";

// Strings longer than this are folded behind "show all" (a few lines of a typical panel).
const FOLD_CHARS = 400;
const FOLD_LINES = 8;
// Children of one object/array drawn before a "show more" button (a 5,000-item list stays quick).
const CHILD_BATCH = 200;
const SECTIONS = ["inputs", "outputs", "config", "metadata", "metrics", "feedback", "user_properties"];

export function renderDetail(pane, eventId, { sessionId, onClose, typeClass }) {
  const controller = new AbortController();
  clear(pane).appendChild(h("p", { className: "loading" }, "Loading event…"));
  getJSON(`/api/events/${encodeURIComponent(eventId)}`, null, { signal: controller.signal })
    .then((event) => {
      // An event of another session is not this URL's event (the server answers such a page 404).
      if (event.session_id !== undefined && event.session_id !== sessionId) throw new ApiError(404, { error: "unknown event" });
      draw(pane, event, onClose, typeClass);
    })
    .catch((error) => {
      if (error.name === "AbortError") return;
      clear(pane);
      pane.appendChild(closeBar(onClose));
      if (error instanceof ApiError && error.status === 404) {
        pane.appendChild(h("div", { className: "not-found detail-not-found" },
          h("h2", null, "Event not found"),
          h("p", null, "No event with id ", h("code", null, eventId), " is in this session.")));
      } else {
        pane.appendChild(h("p", { className: "error-text" }, `Could not load the event: ${error.message}`));
      }
    });
  return () => controller.abort();
}

function closeBar(onClose) {
  return h("button", { type: "button", className: "close", "aria-label": "Close the detail", title: "Close (Esc)", onclick: onClose }, "×");
}

function draw(pane, event, onClose, typeClass) {
  clear(pane);
  const meta = isObject(event.metadata) ? event.metadata : {};
  const config = isObject(event.config) ? event.config : {};
  const metrics = isObject(event.metrics) ? event.metrics : {};
  const duration = typeof event.duration === "number" ? event.duration
    : (event.end_time && event.start_time ? event.end_time - event.start_time : null);

  pane.appendChild(h("header", { className: "detail-head" },
    closeBar(onClose),
    h("span", { className: `type-badge ${typeClass(event.event_type)}` }, event.event_type),
    h("h2", { className: "detail-title" }, event.event_name),
    h("p", { className: "detail-meta" },
      `${fmtTime(event.start_time)} · ${duration === null ? "running" : fmtDuration(duration)} · `,
      h("code", { className: "mono" }, event.event_id), " ",
      copyButton("event id", () => event.event_id))));

  if (event.error !== null && event.error !== undefined && event.error !== "") {
    const box = h("section", { className: "error-box", "aria-label": "Error" },
      h("h3", null, "Error"),
      h("pre", { className: "error-message" }, String(event.error)));
    if (typeof meta.traceback === "string") {
      box.appendChild(h("details", { className: "traceback", open: true },
        h("summary", null, "Traceback ", copyButton("traceback", () => meta.traceback)),
        h("pre", null, meta.traceback)));
    }
    pane.appendChild(box);
  }

  if (event.event_type === "model") pane.appendChild(modelSummary(event, config, meta, metrics));
  const history = isObject(event.inputs) && Array.isArray(event.inputs.chat_history) ? event.inputs.chat_history : null;
  if (history) pane.appendChild(transcript(history, event.outputs));

  const empty = [];
  for (const name of SECTIONS) {
    const value = event[name];
    if (value === null || value === undefined || (isObject(value) && Object.keys(value).length === 0)) {
      empty.push(name);
      continue;
    }
    pane.appendChild(h("details", { className: "field-section", open: true, dataset: { field: name } },
      h("summary", null, h("span", { className: "field-name" }, name), copyButton(name, () => JSON.stringify(value, null, 2))),
      h("div", { className: "json" }, jsonTree(value, 0))));
  }
  if (empty.length) pane.appendChild(h("p", { className: "empty-fields" }, `Empty: ${empty.join(", ")}`));

  const other = {};
  for (const [key, value] of Object.entries(event)) {
    if (!SECTIONS.includes(key) && !["event_name", "event_type", "event_id", "error"].includes(key)) other[key] = value;
  }
  pane.appendChild(h("details", { className: "field-section", dataset: { field: "event" } },
    h("summary", null, h("span", { className: "field-name" }, "ids and times"), copyButton("the whole event", () => JSON.stringify(event, null, 2))),
    h("div", { className: "json" }, jsonTree(other, 1))));
}

function first(...values) {
  for (const v of values) if (v !== undefined && v !== null && v !== "") return v;
  return null;
}

function modelSummary(event, config, meta, metrics) {
  const outputs = isObject(event.outputs) ? event.outputs : {};
  const ttft = first(metrics.time_to_first_token_ms, meta.time_to_first_token_ms, meta.time_to_first_token);
  const items = [
    ["model", first(config.model, meta.model, meta.response_model)],
    ["provider", first(config.provider, meta.provider)],
    ["tokens in", numberText(meta.prompt_tokens)],
    ["tokens out", numberText(meta.completion_tokens)],
    ["cached", numberText(meta.cached_tokens)],
    ["total", numberText(meta.total_tokens)],
    ["time to first token", typeof ttft === "number" ? fmtDuration(ttft) : ttft],
    ["finish reason", first(outputs.finish_reason, meta.finish_reason, Array.isArray(meta.finish_reasons) ? meta.finish_reasons.join(", ") : null)],
    ["cost", typeof meta.cost === "number" ? `$${meta.cost.toFixed(6)}` : null],
  ];
  const list = h("dl", { className: "model-summary" });
  for (const [label, value] of items) {
    if (value === null || value === undefined) continue;
    list.appendChild(h("div", { className: "chip", dataset: { key: label } }, h("dt", null, label), h("dd", null, String(value))));
  }
  return list;
}

function numberText(value) {
  return typeof value === "number" ? fmtInt(value) : (value ?? null);
}

// ---- chat transcript ---------------------------------------------------------------------------

function transcript(history, outputs) {
  const box = h("section", { className: "transcript", "aria-label": "Chat transcript" }, h("h3", null, "Conversation"));
  for (const message of history) box.appendChild(messageView(message, false));
  if (outputs !== null && outputs !== undefined) {
    if (isObject(outputs) && ("content" in outputs || "tool_calls" in outputs || "role" in outputs)) {
      box.appendChild(messageView({ role: "assistant", ...outputs }, true));
    } else if (typeof outputs === "string") {
      box.appendChild(messageView({ role: "assistant", content: outputs }, true));
    }
  }
  return box;
}

function roleClass(role) {
  return ["system", "user", "assistant", "tool", "developer", "model", "function"].includes(role) ? `role-${role}` : "role-other";
}

function messageView(message, isOutput) {
  if (!isObject(message)) return h("div", { className: "msg role-other" }, jsonTree(message, 0));
  const role = typeof message.role === "string" ? message.role : "message";
  const head = h("div", { className: "msg-head" }, h("span", { className: "msg-role" }, role));
  if (message.name) head.append(" ", h("span", { className: "msg-name" }, String(message.name)));
  if (message.tool_call_id) head.append(" ", h("span", { className: "msg-ref" }, `result of ${message.tool_call_id}`));
  if (isOutput) head.append(" ", h("span", { className: "badge output" }, "output"));
  if (isOutput && message.finish_reason) head.append(" ", h("span", { className: "msg-ref" }, `finish: ${message.finish_reason}`));
  const view = h("div", { className: `msg ${roleClass(role)}${isOutput ? " msg-output" : ""}` }, head);
  const content = message.content;
  if (typeof content === "string") view.appendChild(h("div", { className: "msg-content" }, foldedText(content)));
  else if (Array.isArray(content)) for (const part of content) view.appendChild(contentPart(part));
  else if (content !== null && content !== undefined) view.appendChild(h("div", { className: "msg-content json" }, jsonTree(content, 1)));
  if (Array.isArray(message.tool_calls)) for (const call of message.tool_calls) view.appendChild(toolCall(call));
  return view;
}

function contentPart(part) {
  if (typeof part === "string") return h("div", { className: "msg-content" }, foldedText(part));
  if (isObject(part)) {
    if (typeof part.text === "string") return h("div", { className: "msg-content" }, foldedText(part.text));
    if (part.type === "tool_use") return toolCall({ id: part.id, name: part.name, arguments: part.input });
    if (part.type === "tool_result") {
      return h("div", { className: "msg-content tool-result" }, h("span", { className: "msg-ref" }, `result of ${part.tool_use_id || "a tool call"}`),
        typeof part.content === "string" ? foldedText(part.content) : jsonTree(part.content, 1));
    }
  }
  return h("div", { className: "msg-content json" }, jsonTree(part, 1));
}

function toolCall(call) {
  const fn = isObject(call) && isObject(call.function) ? call.function : call;
  const name = isObject(fn) ? first(fn.name, call.name) : null;
  let args = isObject(fn) ? first(fn.arguments, fn.args, fn.input, call.arguments) : null;
  if (typeof args === "string") {
    try { args = JSON.parse(args); } catch { /* shown as the string it is */ }
  }
  return h("div", { className: "tool-call" },
    h("div", { className: "tool-call-head" }, "calls ", h("code", { className: "tool-name" }, name || "a tool"),
      isObject(call) && call.id ? h("span", { className: "msg-ref" }, ` ${call.id}`) : null),
    args === null || args === undefined ? null
      : h("pre", { className: "tool-args" }, typeof args === "string" ? args : JSON.stringify(args, null, 2)));
}

// ---- JSON ----------------------------------------------------------------------------------------

function isObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function foldedText(text) {
  const lines = text.split("\n");
  if (text.length <= FOLD_CHARS && lines.length <= FOLD_LINES) return h("span", { className: "text" }, text);
  let short = lines.slice(0, FOLD_LINES).join("\n");
  if (short.length > FOLD_CHARS) short = short.slice(0, FOLD_CHARS);
  const span = h("span", { className: "text folded" }, short + "…");
  const button = h("button", { type: "button", className: "show-all" }, `show all (${fmtInt(text.length)} characters)`);
  let open = false;
  button.addEventListener("click", (event) => {
    event.stopPropagation();
    open = !open;
    span.textContent = open ? text : short + "…";
    span.classList.toggle("folded", !open);
    button.textContent = open ? "show less" : `show all (${fmtInt(text.length)} characters)`;
  });
  return h("span", { className: "fold" }, span, " ", button);
}

export function jsonTree(value, depth) {
  if (value === null || value === undefined) return h("span", { className: "j-null" }, "null");
  if (typeof value === "string") return h("span", { className: "j-str" }, foldedText(value));
  if (typeof value === "number") return h("span", { className: "j-num" }, String(value));
  if (typeof value === "boolean") return h("span", { className: "j-bool" }, String(value));
  const isArray = Array.isArray(value);
  const entries = isArray ? value.map((v, i) => [i, v]) : Object.entries(value);
  if (entries.length === 0) return h("span", { className: "j-empty" }, isArray ? "[]" : "{}");
  const list = h("ul", { className: "j-list" });
  const node = h("details", { className: "j-node", open: depth < 3 },
    h("summary", null, isArray ? `[${entries.length} items]` : `{${entries.length} keys}`), list);
  let shown = 0;
  const more = () => {
    const end = Math.min(entries.length, shown + CHILD_BATCH);
    for (; shown < end; shown++) {
      const [key, child] = entries[shown];
      list.appendChild(h("li", null, h("span", { className: isArray ? "j-index" : "j-key" }, `${key}: `), jsonTree(child, depth + 1)));
    }
    if (shown < entries.length) {
      const button = h("button", { type: "button", className: "show-all" }, `show ${fmtInt(entries.length - shown)} more`);
      button.addEventListener("click", () => { button.parentElement.remove(); more(); });
      list.appendChild(h("li", null, button));
    }
  };
  more();
  return node;
}
