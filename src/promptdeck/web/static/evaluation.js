// An evaluation's page while it runs: reads `GET /api/evaluations/{id}` about once a second and
// moves the progress bar and the count; once the evaluation has ended, the page is loaded again
// to show its summary and every case (rendered by the server).

import { ApiError, api } from "/static/console.js";

const POLL_MS = 1000;
const UNFINISHED = new Set(["queued", "running"]);

const card = document.getElementById("evaluation");
const bar = document.getElementById("eval-progress");
const count = document.getElementById("eval-count");
const badge = document.querySelector("#eval-status .badge");

async function poll() {
  let evaluation;
  try {
    evaluation = await api("GET", `/api/evaluations/${encodeURIComponent(card.dataset.evaluation)}`);
  } catch (error) {
    if (error instanceof ApiError && (error.status === 401 || error.status === 404)) return; // signed out, or gone
    setTimeout(poll, POLL_MS * 3);
    return;
  }
  bar.max = evaluation.total;
  bar.value = evaluation.completed;
  bar.textContent = `${Math.round(evaluation.progress * 100)} %`;
  count.textContent = `${evaluation.completed} of ${evaluation.total} cases`;
  if (badge && badge.textContent !== evaluation.status) {
    badge.textContent = evaluation.status;
    badge.className = `badge eval-status ${evaluation.status === "running" ? "badge-editor" : "badge-muted"}`;
  }
  card.dataset.status = evaluation.status;
  if (UNFINISHED.has(evaluation.status)) setTimeout(poll, POLL_MS);
  else location.reload();
}

if (card && UNFINISHED.has(card.dataset.status)) setTimeout(poll, POLL_MS);
