// The Evaluations tab: when this browser holds an unsaved draft of the prompt (the editor keeps it
// in localStorage), "What to run" offers it, and starting sends the draft itself through the admin
// API (`POST /api/prompts/{slug}/evaluations` with `draft`), then opens the new evaluation.

import { api } from "/static/console.js";
import { DraftStore } from "/static/prompt_draft.js";

const form = document.getElementById("start-form");
const DRAFT = "draft";
// Read as attributes: the form's `dataset` field hides its `dataset` property.
const prompt = form?.getAttribute("data-prompt");

function offerDraft() {
  const draft = new DraftStore(form.getAttribute("data-workspace"), prompt).load();
  if (!draft?.spec) return null;
  const option = document.createElement("option");
  option.value = DRAFT;
  option.textContent = `The editor's unsaved draft${draft.base ? ` (based on v${draft.base})` : ""}`;
  const group = document.createElement("optgroup");
  group.label = "Not saved";
  group.append(option);
  form.elements.target.prepend(group);
  if (new URLSearchParams(location.search).get("target") === DRAFT) option.selected = true;
  return draft.spec;
}

if (form) {
  const spec = offerDraft();
  const failed = form.querySelector(".form-error");
  form.addEventListener("submit", async (event) => {
    if (!spec || form.elements.target.value !== DRAFT) return; // a saved version: the form posts
    event.preventDefault();
    const body = { dataset: form.elements.dataset.value, draft: spec };
    if (form.elements.concurrency.value) body.concurrency = Number(form.elements.concurrency.value);
    try {
      const started = await api("POST", `/api/prompts/${encodeURIComponent(prompt)}/evaluations`, body);
      location.assign(`${location.pathname}/${encodeURIComponent(started.id)}`);
    } catch (error) {
      failed.textContent = error.message;
      failed.hidden = false;
    }
  });
}
