// promptdeck console: the helpers every page uses. An ES module, loaded by base.html;
// page scripts import what they need:  import { api, stream } from "/static/console.js";

/** The session's CSRF token, from <meta name="csrf-token"> (empty before sign-in). */
/** A new element: `text` sets its text, a non-string value (a handler, a boolean) its property,
 * anything else an attribute; false, null and undefined are left out, as are null children. */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name === "text") node.textContent = value;
    else if (name in node && typeof value !== "string") node[name] = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

export function csrfToken() {
  return document.querySelector('meta[name="csrf-token"]')?.content ?? "";
}

/** An answer of the admin API that was not a success; `message` is the server's own. */
export class ApiError extends Error {
  constructor(message, status, code = "", details = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

const SESSION_EXPIRED =
  "Your session expired — sign in again in another tab; nothing here is lost.";

/** Shows the non-blocking "session expired" banner. The page keeps its state. */
export function showSessionExpired() {
  const banner = document.getElementById("session-banner");
  if (!banner) return;
  banner.replaceChildren();
  const text = document.createElement("span");
  text.textContent = SESSION_EXPIRED + " ";
  const link = document.createElement("a");
  link.href = "/sign-in?next=" + encodeURIComponent(location.pathname + location.search);
  link.target = "_blank";
  link.rel = "noopener";
  link.textContent = "Sign in";
  banner.append(text, link);
  banner.hidden = false;
}

function requestInit(method, body) {
  const headers = { Accept: "application/json", "X-CSRF-Token": csrfToken() };
  const init = { method, headers, credentials: "same-origin" };
  if (body !== undefined && body !== null) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  return init;
}

async function failure(response) {
  if (response.status === 401) showSessionExpired();
  let message = `${response.status} ${response.statusText}`;
  let code = "";
  let details = null;
  try {
    const answer = await response.json();
    const error = answer.error ?? answer;
    if (typeof error === "string") message = error;
    else if (error && error.message) ({ message, code = "", details = null } = error);
  } catch {
    /* not JSON: keep the status line */
  }
  return new ApiError(message, response.status, code, details);
}

/**
 * Calls the admin API as the signed-in member: `await api("GET", "/api/prompts")`,
 * `await api("POST", "/api/prompts", { slug: "x" })`. Resolves to the JSON answer (null for
 * 204); rejects with an ApiError carrying the server's message. A 401 also shows the
 * session-expired banner.
 */
export async function api(method, path, body) {
  const response = await fetch(path, requestInit(method.toUpperCase(), body));
  if (!response.ok) throw await failure(response);
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") ?? "";
  return type.includes("json") ? response.json() : response.text();
}

/**
 * POSTs `body` to `path` and reads the Server-Sent Events answer, calling `onEvent(data)`
 * with each `data:` line's JSON (a `[DONE]` line ends it). Resolves when the stream ends;
 * pass `{ signal }` from an AbortController to stop early.
 */
export async function stream(path, body, onEvent, { signal } = {}) {
  const init = requestInit("POST", body);
  init.headers.Accept = "text/event-stream";
  init.signal = signal;
  const response = await fetch(path, init);
  if (!response.ok) throw await failure(response);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  const flush = (block) => {
    const data = block
      .split("\n")
      .filter((line) => line.startsWith("data:"))
      .map((line) => line.slice(5).replace(/^ /, ""))
      .join("\n");
    if (!data || data === "[DONE]") return data === "[DONE]";
    onEvent(JSON.parse(data));
    return false;
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      if (flush(block)) {
        await reader.cancel();
        return;
      }
    }
  }
  if (buffer.trim()) flush(buffer);
}

/** Copies an element's text (or an input's value) to the clipboard; a button says "Copied". */
export async function copyText(element, button = null) {
  const text = "value" in element && element.value !== undefined ? element.value : element.textContent;
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const range = document.createRange();
    range.selectNodeContents(element);
    const selection = getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    document.execCommand("copy");
  }
  if (button) {
    const label = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => (button.textContent = label), 1500);
  }
  return text;
}

/**
 * A form's list of rows the user adds to and takes from (the logs' metadata conditions, a
 * traffic split's versions). `addButton` appends a copy of the last row with its first input
 * set to `blank` and focuses the copy's `focus` field; a `remove` button takes its row out,
 * except the only row left, which stays (its first input set to `blank` when `clearLast`).
 */
export function wireRowList(list, addButton, { remove, blank = "", focus = "input", clearLast = false }) {
  addButton.addEventListener("click", () => {
    const copy = list.lastElementChild.cloneNode(true);
    copy.querySelector("input").value = blank;
    list.append(copy);
    copy.querySelector(focus).focus();
  });
  list.addEventListener("click", (event) => {
    const button = event.target.closest(remove);
    const row = button && [...list.children].find((child) => child.contains(button));
    if (!row) return;
    if (list.children.length > 1) row.remove();
    else if (clearLast) row.querySelector("input").value = blank;
  });
}

/** US dollars: "$0.00042", "$1.27"; "—" when unknown. */
export function formatCost(usd) {
  if (usd === null || usd === undefined || Number.isNaN(usd)) return "—";
  if (usd === 0) return "$0";
  if (Math.abs(usd) < 0.01) return "$" + Number(usd.toPrecision(2)).toString();
  return "$" + usd.toFixed(2);
}

/** Milliseconds: "840 ms", "1.24 s", "2 min 5 s"; "—" when unknown. */
export function formatMs(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}

/** Token counts: "812", "12,480", "1.3M". */
export function formatTokens(count) {
  if (count === null || count === undefined) return "—";
  if (count >= 1e6) return `${(count / 1e6).toFixed(1)}M`;
  return count.toLocaleString("en-US");
}

/** "just now", "5 min ago", "3 h ago", "2 days ago" (or "in …" for the future). */
export function relativeTime(when, now = new Date()) {
  const date = when instanceof Date ? when : new Date(when);
  const seconds = Math.round((now - date) / 1000);
  const ahead = seconds < 0;
  const s = Math.abs(seconds);
  let text;
  if (s < 45) return "just now";
  if (s < 3600) text = `${Math.round(s / 60)} min`;
  else if (s < 86400) text = `${Math.round(s / 3600)} h`;
  else if (s < 86400 * 45) text = `${Math.round(s / 86400)} day${Math.round(s / 86400) === 1 ? "" : "s"}`;
  else return date.toISOString().slice(0, 10);
  return ahead ? `in ${text}` : `${text} ago`;
}

/** Fills every <time datetime=… data-relative> under `root` with its relative time. */
export function renderRelativeTimes(root = document) {
  for (const element of root.querySelectorAll("time[data-relative]")) {
    element.textContent = relativeTime(element.getAttribute("datetime"));
  }
}

/** A secret shown once ([data-reveal]): scrolled into view, focused and selected, so it can be
 *  copied at once (Ctrl+C) and nothing above it hides it. */
export function presentRevealed(root = document) {
  const secret = root.querySelector("[data-reveal]");
  if (!secret) return;
  secret.scrollIntoView({ block: "nearest" });
  secret.focus({ preventScroll: true });
  const range = document.createRange();
  range.selectNodeContents(secret);
  getSelection().removeAllRanges();
  getSelection().addRange(range);
}

function wirePage() {
  renderRelativeTimes();
  presentRevealed();
  setInterval(renderRelativeTimes, 60000);

  // <form data-confirm="Sure?">: ask before sending.
  document.addEventListener("submit", (event) => {
    const question = event.target.closest?.("form[data-confirm]")?.dataset.confirm;
    if (question && !confirm(question)) event.preventDefault();
  });

  // <button data-copy="#selector">: copy that element's text.
  document.addEventListener("click", (event) => {
    const button = event.target.closest?.("[data-copy]");
    if (!button) return;
    const target = document.querySelector(button.dataset.copy);
    if (target) copyText(target, button);
  });

  // "/" focuses the page's search box ([data-search] or input[type=search]).
  document.addEventListener("keydown", (event) => {
    if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) return;
    const typing = event.target.closest?.("input, textarea, select, [contenteditable]");
    const search = document.querySelector("[data-search], input[type=search]");
    if (!typing && search) {
      event.preventDefault();
      search.focus();
      search.select?.();
    }
  });
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", wirePage);
else wirePage();
