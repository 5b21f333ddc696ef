// Logs: rows that open their run, metadata conditions with key suggestions, the custom time
// range, live tail (polls /logs/tail and adds the new rows, no reload), and on a run's page
// the feedback form (through the admin API).
import { api, relativeTime, renderRelativeTimes, showSessionExpired, wireRowList } from "/static/console.js";

const TAIL_EVERY_MS = 2000;

// ── the run list ────────────────────────────────────────────────────────────

function wireRows(table) {
  table.addEventListener("click", (event) => {
    if (event.target.closest("a, button, input")) return;
    const row = event.target.closest("tr[data-href]");
    if (row && !getSelection().toString()) location.assign(row.dataset.href);
  });
}

function wireMetaConditions(form) {
  wireRowList(form.querySelector(".meta-list"), form.querySelector(".add-meta"), {
    remove: ".remove-meta",
    clearLast: true,
  });
  // Empty fields are not sent: the shared link stays short. (Enabled again when the page is
  // shown from the back/forward cache.)
  const fields = () => form.querySelectorAll("input, select");
  form.addEventListener("submit", () => {
    for (const field of fields()) if (field.name && !field.value) field.disabled = true;
  });
  addEventListener("pageshow", () => fields().forEach((field) => (field.disabled = false)));
}

/** Suggestions for metadata conditions: each recent key, and key=value for its common values. */
async function suggestMetadataKeys(datalist) {
  try {
    const answer = await api("GET", "/api/runs/metadata-keys");
    const options = [];
    for (const { key, count, examples } of answer.data) {
      options.push(new Option(`${count} run${count === 1 ? "" : "s"} in 7 days`, `${key}=`));
      for (const value of examples) options.push(new Option(key, `${key}=${value}`));
    }
    datalist.replaceChildren(...options);
  } catch {
    /* suggestions are a convenience: typing still works */
  }
}

function wireRange(form) {
  const range = form.querySelector("#range");
  const custom = form.querySelector(".custom-range");
  const show = () => (custom.hidden = range.value !== "custom");
  range.addEventListener("change", show);
  show();
}

// ── live tail ───────────────────────────────────────────────────────────────

const when = (row) => Date.parse(row.dataset.created);

/** Adds `rows` (newest first) that the table does not show yet, each where its time puts it;
 * unless every match is shown, runs older than the oldest shown belong to the next pages. */
function addRows(body, rows, allShown) {
  const shown = new Set([...body.rows].map((r) => r.dataset.id));
  const oldest = body.rows.length && !allShown ? when(body.rows[body.rows.length - 1]) : -Infinity;
  let added = 0;
  for (const row of [...rows].reverse()) {
    if (shown.has(row.dataset.id) || when(row) < oldest) continue;
    const before = [...body.rows].find((r) => when(r) <= when(row));
    row.classList.add("row-new");
    body.insertBefore(row, before ?? null);
    added += 1;
  }
  if (added) renderRelativeTimes(body);
  return added;
}

function wireLiveTail(toggle, table) {
  const body = table.tBodies[0];
  const status = document.getElementById("tail-status");
  let timer = null;
  let seen = 0;
  const newest = () => (body.rows.length ? body.rows[0].dataset.created : toggle.dataset.now);

  async function poll() {
    const query = new URLSearchParams(toggle.dataset.query);
    query.set("after", newest());
    try {
      const response = await fetch(`/logs/tail?${query}`, { redirect: "manual", credentials: "same-origin" });
      if (response.type === "opaqueredirect" || response.status === 401) {
        stop();
        showSessionExpired();
        return;
      }
      if (!response.ok) throw new Error(`${response.status}`);
      const template = document.createElement("template");
      template.innerHTML = await response.text();
      const found = template.content.querySelector("tbody");
      const rows = found.querySelectorAll("tr.run-row");
      // The answer is capped: when even its oldest run is newer than what was shown, runs between
      // them are missing.
      const before = body.rows.length ? when(body.rows[0]) : Date.parse(toggle.dataset.now);
      const gap = found.dataset.more && rows.length && when(rows[rows.length - 1]) > before;
      const added = addRows(body, rows, toggle.dataset.allShown === "true");
      if (added) document.getElementById("no-runs")?.remove();
      seen += added;
      status.textContent = gap
        ? "More runs arrived than live tail shows: reload to see them all."
        : `Live: ${seen} new run${seen === 1 ? "" : "s"} · checked ${relativeTime(new Date())}`;
    } catch (error) {
      status.textContent = `Live tail could not check for new runs (${error.message}); trying again.`;
    }
    if (timer !== null) timer = setTimeout(poll, TAIL_EVERY_MS);
  }

  function stop() {
    clearTimeout(timer);
    timer = null;
    toggle.checked = false;
    status.textContent = "";
  }

  toggle.addEventListener("change", () => {
    if (toggle.checked) {
      status.textContent = "Live: waiting for new runs…";
      timer = setTimeout(poll, 0);
    } else stop();
  });
}

// ── a run's feedback ────────────────────────────────────────────────────────

function feedbackItem(stored) {
  const item = document.createElement("li");
  const badge = (text, kind) => Object.assign(document.createElement("span"), { className: `badge ${kind}`, textContent: text });
  if (stored.thumbs) item.append(badge(`thumbs ${stored.thumbs}`, stored.thumbs === "up" ? "badge-ok" : "badge-error"), " ");
  if (stored.quality !== null && stored.quality !== undefined) item.append(badge(`score ${stored.quality.toFixed(2)}`, "badge-muted"), " ");
  item.append(Object.assign(document.createElement("span"), { className: "muted", textContent: "just now" }));
  if (stored.text) item.append(Object.assign(document.createElement("p"), { className: "correction", textContent: stored.text }));
  return item;
}

function wireFeedback(form) {
  const error = form.querySelector(".form-error");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    const body = {};
    const thumbs = form.elements.thumbs.value;
    const score = form.elements.score.value.trim();
    const correction = form.elements.correction.value.trim();
    if (thumbs) body.thumbs = thumbs;
    if (score) body.score = Number(score);
    if (correction) body.correction = correction;
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const stored = await api("POST", `/api/runs/${encodeURIComponent(form.dataset.run)}/feedback`, body);
      document.getElementById("feedback-list").append(feedbackItem(stored));
      document.getElementById("no-feedback")?.remove();
      form.reset();
    } catch (failure) {
      error.textContent = failure.message;
      error.hidden = false;
    }
    button.disabled = false;
  });
}

const filters = document.querySelector("form.filters");
if (filters) {
  wireMetaConditions(filters);
  wireRange(filters);
  suggestMetadataKeys(document.getElementById("meta-keys"));
}
const runs = document.getElementById("runs");
if (runs) wireRows(runs);
const toggle = document.getElementById("live-tail");
if (toggle && runs) wireLiveTail(toggle, runs);
const feedback = document.getElementById("feedback-form");
if (feedback) wireFeedback(feedback);
