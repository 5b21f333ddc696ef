// The prompt editor: messages, model, parameters, inputs, tools and response format of a
// draft; saving it as a version; keeping it in localStorage until it is saved or discarded.
// Saves go through the admin API (`POST /api/prompts/{slug}/versions`); a draft survives a
// reload and an expired session (sign in in another tab, then press Save again).

import { ApiError, api, el, relativeTime } from "/static/console.js";
import { withFreshCsrf } from "/static/fresh_csrf.js";
import { DraftStore, detectInputs, fieldOf, problemsOf, sameSpec, specOf } from "/static/prompt_draft.js";
import { contentFor, isEmpty, partEditors, partProblems } from "/static/message_parts.js";
import { Playground } from "/static/playground.js";
import { deployStep, reportProblems } from "/static/release_step.js";

const data = JSON.parse(document.getElementById("editor-data").textContent);
const slug = data.prompt.slug;
const store = new DraftStore(data.workspace, slug);
const $ = (id) => document.getElementById(id);
const form = $("editor");
const PARAM_NUMBERS = ["temperature", "max_tokens", "top_p", "seed", "presence_penalty", "frequency_penalty"];
const INTEGER_PARAMS = new Set(["max_tokens", "seed"]);
const BLANK = {
  model: "",
  messages: [
    { role: "system", content: "" },
    { role: "user", content: "" },
  ],
  params: {},
  inputs: {},
};

// ── state: messages and inputs live here; the rest is read from the form ──────────────────
let messages = [];
let inputs = []; // {name, type, required, default (text as typed), description, auto}
let latest = data.latest ? specOf(data.latest) : null;
let baseNumber = data.latest?.number ?? null;
let nextKey = 1;

// ── model ─────────────────────────────────────────────────────────────────────────────────
const providerSelect = $("f-provider");
const modelInput = $("f-model");

function fillProviders() {
  providerSelect.replaceChildren(...Object.keys(data.models).map((name) => el("option", { value: name, text: name })));
}

function fillModelList() {
  const provider = providerSelect.value;
  const prefix = provider + "/";
  $("model-list").replaceChildren(
    ...(data.models[provider] ?? []).map((id) => el("option", { value: id.slice(prefix.length) })),
  );
}

function setModel(model) {
  const [provider, ...rest] = (model || "").split("/");
  if (provider && !(provider in data.models)) {
    providerSelect.append(el("option", { value: provider, text: `${provider} (not configured)` }));
  }
  providerSelect.value = provider || (data.models.local ? "local" : Object.keys(data.models)[0]);
  fillModelList();
  modelInput.value = rest.join("/");
  if (!model && providerSelect.value === "local") modelInput.value = (data.models.local?.[0] ?? "").slice(6);
}

function readModel() {
  const name = modelInput.value.trim();
  if (name.includes("/") && name.split("/")[0] in data.models && !data.models[providerSelect.value]?.includes(`${providerSelect.value}/${name}`)) {
    return name; // a whole `provider/model` typed or pasted into the name
  }
  return name ? `${providerSelect.value}/${name}` : "";
}

// ── messages ──────────────────────────────────────────────────────────────────────────────
const messageList = $("messages");

function renderMessages(focus = null) {
  messageList.replaceChildren(...messages.map((message, index) => messageItem(message, index)));
  if (focus) messageList.querySelector(`[data-key="${focus.key}"] ${focus.selector}`)?.focus();
}

function messageItem(message, index) {
  const n = index + 1;
  const role = el(
    "select",
    { "aria-label": `Role of message ${n}`, class: "message-role" },
    ...data.roles.map((r) => el("option", { value: r, text: r, selected: r === message.role })),
  );
  role.addEventListener("change", () => {
    message.role = role.value;
    renderMessages({ key: message.key, selector: "select" }); // a user message may add images
    changed();
  });
  const textarea = (target, key, label) => {
    const text = el("textarea", {
      class: "message-text",
      rows: Math.min(Math.max(3, (target[key].match(/\n/g)?.length ?? 0) + 2), 18),
      "aria-label": label,
      placeholder: message.role === "system" ? "You are a helpful assistant…" : "Write the message; {{ name }} inserts an input",
      spellcheck: "true",
    });
    text.value = target[key];
    text.addEventListener("input", () => {
      target[key] = text.value;
      changed();
    });
    return text;
  };
  const rerender = (selector) => {
    renderMessages();
    [...messageList.querySelectorAll(`[data-key="${message.key}"] ${selector}`)].at(-1)?.focus();
  };
  const parts = partEditors(message, n, { el, textarea, changed, rerender, canEdit: data.canEdit });
  const button = (label, title, action, disabled = false) => {
    const b = el("button", { type: "button", class: "btn btn-small btn-quiet", "aria-label": `${title} ${n}`, title, text: label, disabled });
    b.addEventListener("click", action);
    return b;
  };
  const item = el(
    "li",
    { class: "message", "data-key": message.key, "data-error-for": `messages[${index}]` },
    el(
      "div",
      { class: "message-head" },
      el("span", { class: "message-number", text: `${n}` }),
      role,
      el(
        "span",
        { class: "message-actions" },
        button("↑", "Move up message", () => move(index, -1), index === 0),
        button("↓", "Move down message", () => move(index, 1), index === messages.length - 1),
        button("✕", "Remove message", () => removeMessage(index)),
      ),
    ),
    ...parts,
    el("p", { class: "field-error", "data-error-slot": `messages[${index}]`, hidden: true }),
  );
  item.addEventListener("keydown", (event) => {
    if (event.altKey && (event.key === "ArrowUp" || event.key === "ArrowDown")) {
      event.preventDefault();
      move(index, event.key === "ArrowUp" ? -1 : 1, event.target.classList.contains("message-text") ? "textarea" : "select");
    }
  });
  return item;
}

function announce(text) {
  $("save-status")?.replaceChildren(el("span", { class: "muted", text }));
}

function move(index, step, focusOn = "textarea") {
  const to = index + step;
  if (to < 0 || to >= messages.length) return;
  [messages[index], messages[to]] = [messages[to], messages[index]];
  renderMessages({ key: messages[to].key, selector: focusOn === "select" ? "select" : "textarea" });
  announce(`Message moved to position ${to + 1} of ${messages.length}.`);
  changed();
}

function removeMessage(index) {
  const [gone] = messages.splice(index, 1);
  const next = messages[Math.min(index, messages.length - 1)];
  renderMessages(next ? { key: next.key, selector: "textarea" } : null);
  if (!next) $("add-message").focus();
  announce(`Message ${index + 1} (${gone.role}) removed.`);
  changed();
}

function addMessage() {
  const last = messages[messages.length - 1]?.role;
  const message = { key: nextKey++, role: last === "user" ? "assistant" : "user", content: "" };
  messages.push(message);
  renderMessages({ key: message.key, selector: "textarea" });
  changed();
}

// ── inputs: declared ones, plus those the messages use (declared for you) ─────────────────
const inputRows = $("inputs");
const refusesUndeclared = data.prompt.undeclared_variables === "refuse";

function isPlainDeclaration(decl, type) {
  const keys = Object.keys(decl).sort().join(",");
  return keys === "required,type" && decl.required === true && decl.type === type;
}

function inputsFrom(spec) {
  const used = detectInputs(spec.messages, spec.template_syntax ?? "default");
  return Object.entries(spec.inputs ?? {}).map(([name, decl]) => ({
    name,
    type: decl.type ?? "string",
    required: decl.required ?? true,
    default: decl.default === undefined || decl.default === null ? "" : typeof decl.default === "string" ? decl.default : JSON.stringify(decl.default),
    description: decl.description ?? "",
    schema: decl.schema,
    // what the server would have declared by itself follows the text again
    auto: !refusesUndeclared && used.has(name) && isPlainDeclaration(decl, used.get(name)),
  }));
}

function syncInputs() {
  const used = detectInputs(
    messages.map((m) => ({ content: contentFor(m.content) })),
    $("f-template_syntax").value,
  );
  inputs = inputs.filter((input) => !input.auto || used.has(input.name));
  for (const [name, type] of used) {
    const known = inputs.find((i) => i.name === name);
    if (known) {
      if (known.auto) known.type = type;
      known.used = true;
    } else {
      inputs.push({ name, type, required: true, default: "", description: "", auto: true, declared: !refusesUndeclared });
    }
  }
  for (const input of inputs) {
    input.used = used.has(input.name);
    if (input.declared === undefined) input.declared = true;
  }
  renderInputs();
}

function renderInputs() {
  const focused = document.activeElement?.closest?.("#inputs [data-input]");
  const focusName = focused?.dataset.input;
  const focusField = document.activeElement?.dataset?.inputField;
  $("inputs-hint").textContent =
    $("f-template_syntax").value === "jinja2"
      ? "Found in the Jinja2 templates as you type (an approximation: saving checks it)."
      : refusesUndeclared
        ? "This prompt refuses undeclared variables: declare each input it uses."
        : "Found in the messages as you type; change a type or add a default to declare it.";
  if (!inputs.length) {
    inputRows.replaceChildren(el("tr", {}, el("td", { colspan: 6, class: "empty", text: "No inputs: write {{ name }} in a message to add one." })));
    return;
  }
  inputRows.replaceChildren(...inputs.map(inputRow));
  if (focusName && focusField) inputRows.querySelector(`[data-input="${CSS.escape(focusName)}"] [data-input-field="${focusField}"]`)?.focus();
}

function inputRow(input) {
  const declare = () => {
    input.auto = false;
    input.declared = true;
    changed({ inputsOnly: true });
  };
  const type = el(
    "select",
    { "aria-label": `Type of input ${input.name}`, "data-input-field": "type" },
    ...data.inputTypes.map((t) => el("option", { value: t, text: t, selected: t === input.type })),
  );
  type.addEventListener("change", () => {
    input.type = type.value;
    declare();
  });
  const required = el("input", { type: "checkbox", checked: input.required, "aria-label": `Input ${input.name} is required`, "data-input-field": "required" });
  required.addEventListener("change", () => {
    input.required = required.checked;
    declare();
  });
  const fallback = el("input", { type: "text", value: input.default, placeholder: "none", "aria-label": `Default of input ${input.name}`, "data-input-field": "default" });
  fallback.addEventListener("input", () => {
    input.default = fallback.value;
    if (fallback.value && input.required) {
      input.required = false; // an input with a default need not be sent
      required.checked = false;
    }
    declare();
  });
  const description = el("input", { type: "text", value: input.description, placeholder: "optional", "aria-label": `Description of input ${input.name}`, "data-input-field": "description" });
  description.addEventListener("input", () => {
    input.description = description.value;
    declare();
  });
  let action = null;
  if (!input.used) {
    action = el("button", { type: "button", class: "btn btn-small btn-quiet", text: "Remove", "aria-label": `Remove input ${input.name}` });
    action.addEventListener("click", () => {
      inputs = inputs.filter((i) => i !== input);
      changed({ inputsOnly: true });
    });
  } else if (!input.declared) {
    action = el("button", { type: "button", class: "btn btn-small", text: "Declare", "aria-label": `Declare input ${input.name}` });
    action.addEventListener("click", declare);
  }
  const status = !input.used
    ? el("span", { class: "badge badge-warn", text: "unused" })
    : !input.declared
      ? el("span", { class: "badge badge-error", text: "not declared" })
      : input.auto
        ? el("span", { class: "badge badge-muted", text: "detected" })
        : null;
  return el(
    "tr",
    { "data-input": input.name },
    el("td", {}, el("code", { text: input.name }), " ", status),
    el("td", {}, type),
    el("td", {}, required),
    el("td", {}, fallback),
    el("td", {}, description),
    el("td", { class: "actions" }, action),
  );
}

// ── parameters, syntax, tools, response format ───────────────────────────────────────────
function setParams(spec) {
  const params = spec.params ?? {};
  for (const name of PARAM_NUMBERS) $(`p-${name}`).value = params[name] ?? "";
  $("p-reasoning_effort").value = params.reasoning_effort ?? "";
  const stop = params.stop;
  $("p-stop").value = stop === undefined ? "" : Array.isArray(stop) ? stop.join("\n") : stop;
  $("f-template_syntax").value = spec.template_syntax ?? "default";
  $("f-extra_inputs").value = spec.extra_inputs ?? "allow";
  setJsonPart("tools", spec.tools);
  setJsonPart("response_format", spec.response_format);
  fillToolChoice(spec.tool_choice);
}

function setJsonPart(part, value) {
  const section = $(part === "tools" ? "tools-section" : "format-section");
  section.hidden = value === undefined || value === null;
  $(`f-${part}`).value = section.hidden ? "" : JSON.stringify(value, null, 2);
  syncOptionalButtons();
}

function syncOptionalButtons() {
  $("add-tools").hidden = !$("tools-section").hidden;
  $("add-format").hidden = !$("format-section").hidden;
  $("optional-parts").hidden = !data.canEdit || ($("add-tools").hidden && $("add-format").hidden);
}

function toolNames() {
  try {
    const tools = JSON.parse($("f-tools").value);
    return Array.isArray(tools) ? tools.map((t) => t?.name).filter((n) => typeof n === "string") : [];
  } catch {
    return [];
  }
}

function fillToolChoice(choice = readToolChoice()) {
  const select = $("f-tool_choice");
  const options = [["", "not set"], ["auto", "auto"], ["none", "none"], ["required", "required"]];
  for (const name of toolNames()) options.push([`name:${name}`, `always ${name}`]);
  const value = choice === undefined || choice === null ? "" : typeof choice === "string" ? choice : `name:${choice.name}`;
  select.replaceChildren(...options.map(([v, label]) => el("option", { value: v, text: label, selected: v === value })));
}

function readToolChoice() {
  const value = $("f-tool_choice")?.value ?? "";
  if (!value) return undefined;
  return value.startsWith("name:") ? { name: value.slice(5) } : value;
}

// ── the draft as a version body, with the problems found before asking the server ─────────
function readSpec() {
  const problems = [];
  const spec = { model: readModel(), messages: messages.map(({ role, content }) => ({ role, content: contentFor(content) })), params: {}, inputs: {} };
  if (!spec.model) problems.push(["model", "Choose a model: a provider and a model name."]);
  if (!spec.messages.length) problems.push(["messages", "A version needs at least one message: add one."]);
  messages.forEach((m, i) => {
    if (isEmpty(m.content)) problems.push([`messages[${i}]`, `Message ${i + 1} is empty: write it or remove it.`]);
    problems.push(...partProblems(m.content, i));
  });
  for (const name of PARAM_NUMBERS) {
    const raw = $(`p-${name}`).value.trim();
    if (!raw) continue;
    const value = Number(raw);
    if (!Number.isFinite(value) || (INTEGER_PARAMS.has(name) && !Number.isInteger(value))) {
      problems.push([`params.${name}`, `params.${name}: expected ${INTEGER_PARAMS.has(name) ? "a whole number" : "a number"}; got ${raw}`]);
    } else spec.params[name] = value;
  }
  if ($("p-reasoning_effort").value) spec.params.reasoning_effort = $("p-reasoning_effort").value;
  const stops = $("p-stop").value.split("\n").filter((s) => s !== "");
  if (stops.length) spec.params.stop = stops.length === 1 ? stops[0] : stops;
  for (const input of inputs) {
    if (!input.declared || (input.auto && !input.used)) continue;
    const decl = { type: input.type, required: input.required };
    if (input.default !== "") {
      if (input.type === "string") decl.default = input.default;
      else {
        try {
          decl.default = JSON.parse(input.default);
        } catch {
          problems.push(["inputs", `inputs.${input.name}.default: a ${input.type} default is written as JSON (e.g. 3, true, {"a": 1}); got ${input.default}`]);
        }
      }
    }
    if (input.description) decl.description = input.description;
    if (input.schema) decl.schema = input.schema;
    spec.inputs[input.name] = decl;
  }
  for (const part of ["tools", "response_format"]) {
    if ($(part === "tools" ? "tools-section" : "format-section").hidden) continue;
    const raw = $(`f-${part}`).value.trim();
    try {
      const value = JSON.parse(raw || "null");
      const shapeOk = part === "tools" ? Array.isArray(value) : value && typeof value === "object" && !Array.isArray(value);
      if (!shapeOk) problems.push([part, part === "tools" ? "Tools: expected a JSON list of {name, description, parameters}." : 'Response format: expected a JSON object such as {"type": "json_object"}.']);
      else spec[part] = value;
    } catch (error) {
      problems.push([part, `${part === "tools" ? "Tools" : "Response format"}: not valid JSON (${error.message}).`]);
    }
  }
  const choice = readToolChoice();
  if (choice !== undefined && !$("tools-section").hidden) spec.tool_choice = choice;
  if ($("f-template_syntax").value !== "default") spec.template_syntax = $("f-template_syntax").value;
  if ($("f-extra_inputs").value !== "allow") spec.extra_inputs = $("f-extra_inputs").value;
  return { spec, problems };
}

// ── loading a spec into the form ──────────────────────────────────────────────────────────
function load(spec) {
  messages = spec.messages.map((m) => ({ key: nextKey++, role: m.role, content: structuredClone(m.content) }));
  setModel(spec.model);
  setParams(spec);
  inputs = inputsFrom(spec);
  renderMessages();
  syncInputs();
}

// ── draft: autosaved per prompt, restored on reload ──────────────────────────────────────
let saveTimer = null;

function changed({ inputsOnly = false } = {}) {
  if (!inputsOnly) syncInputs();
  else renderInputs();
  clearTimeout(saveTimer);
  saveTimer = setTimeout(keepDraft, 250);
  playground?.draftChanged();
}

function keepDraft() {
  if (!data.canEdit) return;
  const { spec } = readSpec();
  const note = $("f-note")?.value ?? "";
  if (latest && sameSpec(spec, latest) && !note) {
    store.clear();
    showDraftBar(null);
  } else {
    store.save({ spec, note, base: baseNumber });
    showDraftBar(store.load());
  }
}

function showDraftBar(draft, restored = false) {
  const bar = $("draft-bar");
  $("editor-base").textContent = baseNumber ? `· based on v${baseNumber}` : "· no version saved yet";
  if (!draft) {
    bar.hidden = true;
    return;
  }
  bar.hidden = false;
  const when = draft.savedAt ? relativeTime(draft.savedAt) : "just now";
  $("draft-text").textContent = restored
    ? `Restored your unsaved draft (kept in this browser ${when}${draft.base ? `, based on v${draft.base}` : ""}).`
    : `Unsaved changes — kept in this browser${draft.base ? ` (based on v${draft.base})` : ""}.`;
}

function discardDraft() {
  store.clear();
  baseNumber = data.latest?.number ?? null;
  load(latest ?? BLANK);
  if ($("f-note")) $("f-note").value = "";
  showDraftBar(null);
  clearErrors();
  announce(latest ? `Draft discarded: showing version ${baseNumber}.` : "Draft discarded.");
  playground?.draftChanged();
}

// ── errors shown where they belong ────────────────────────────────────────────────────────
/** Errors stay until the next save or discard, so they can be read while fixing them. */
function clearErrors() {
  for (const slot of form.querySelectorAll(".field-error")) {
    slot.hidden = true;
    slot.textContent = "";
  }
  for (const field of form.querySelectorAll("[aria-invalid]")) field.removeAttribute("aria-invalid");
  form.querySelectorAll(".has-error").forEach((node) => node.classList.remove("has-error"));
}

function slotFor(field) {
  if (field.startsWith("messages[")) return form.querySelector(`[data-error-slot="${field}"]`);
  if (field.startsWith("params.")) return form.querySelector('[data-error-for="params"]');
  return form.querySelector(`[data-error-for="${field}"]`);
}

function controlFor(field) {
  if (field === "model") return modelInput;
  if (field.startsWith("messages[")) return form.querySelector(`[data-error-for="${field}"] textarea`);
  if (field.startsWith("params.")) return $(`p-${field.slice(7)}`);
  if (field === "tools" || field === "response_format") return $(`f-${field}`);
  if (field === "template_syntax") return $("f-template_syntax");
  if (field === "inputs") return inputRows.querySelector("input, select");
  if (field === "messages") return $("add-message");
  return null;
}

function showProblems(problems) {
  clearErrors();
  const general = [];
  let first = null;
  for (const [field, message] of problems) {
    const slot = field && slotFor(field);
    if (!slot) {
      general.push(message);
      continue;
    }
    slot.hidden = false;
    slot.append(el("span", { text: message }));
    const control = controlFor(field);
    if (control) {
      control.setAttribute("aria-invalid", "true");
      control.closest(".message, .editor-section")?.classList.add("has-error");
      first ??= control;
    }
    if (field.startsWith("params.")) $("params-section").open = true;
  }
  const status = $("save-status");
  status.replaceChildren(
    el("p", { class: "flash flash-error", role: "alert", text: `Not saved: ${problems.length} problem${problems.length === 1 ? "" : "s"}${general.length < problems.length ? " (shown next to the fields)" : ""}.` }),
    ...general.map((text) => el("p", { class: "field-error", text })),
  );
  (first ?? status).focus?.();
}

// ── saving ────────────────────────────────────────────────────────────────────────────────
let saving = false;

async function save() {
  if (!data.canEdit || saving) return;
  clearTimeout(saveTimer);
  keepDraft();
  const { spec, problems } = readSpec();
  if (problems.length) {
    showProblems(problems);
    return;
  }
  const note = $("f-note").value.trim();
  saving = true;
  $("save").disabled = true;
  $("save-status").replaceChildren(el("span", { class: "muted", text: "Saving…" }));
  try {
    const path = `/api/prompts/${encodeURIComponent(slug)}/versions`;
    const version = await withFreshCsrf(() => api("POST", path, { ...spec, note }));
    clearErrors();
    document.getElementById("session-banner").hidden = true;
    data.latest = version;
    latest = specOf(version);
    baseNumber = version.number;
    data.versions.unshift({ number: version.number, note: version.note, author: version.author, model: version.model, created_at: version.created_at });
    store.clear();
    $("f-note").value = "";
    load(latest); // as saved: inputs the server declared now show as declared
    showDraftBar(null);
    document.querySelector('.prompt-tabs a[href$="/versions"] .count').textContent = String(data.versions.length);
    $("save-status").replaceChildren(savedSays(version));
    playground?.versionsChanged(data.versions);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      $("save-status").replaceChildren(
        el(
          "p",
          { class: "flash flash-error", role: "alert" },
          "Not saved: your session expired. Your draft is kept in this browser — ",
          el("a", { href: `/sign-in?next=${encodeURIComponent(location.pathname)}`, target: "_blank", rel: "noopener", text: "sign in in another tab" }),
          ", then press Save again.",
        ),
      );
    } else if (error instanceof ApiError) {
      showProblems(problemsOf(error).map((p) => [fieldOf(p), p]));
    } else {
      $("save-status").replaceChildren(el("p", { class: "flash flash-error", role: "alert", text: `Not saved: ${error.message}. Your draft is kept; try again.` }));
    }
  } finally {
    saving = false;
    $("save").disabled = false;
  }
}

// ── wiring ────────────────────────────────────────────────────────────────────────────────
let playground = null;

function start() {
  fillProviders();
  const stored = data.canEdit ? store.load() : null;
  const opened = data.opened ? specOf(data.opened) : null;
  let restored = null;
  if (opened && data.canEdit) {
    const replace = !stored || sameSpec(stored.spec, opened) || confirm(`Replace your unsaved draft with version ${data.opened.number}?`);
    if (replace) {
      baseNumber = data.opened.number;
      load(opened);
      keepDraft();
    } else {
      restored = stored;
    }
    history.replaceState(null, "", location.pathname); // a reload now restores the draft
  } else if (opened) {
    baseNumber = data.opened.number;
    load(opened);
  } else if (stored?.spec) {
    restored = stored;
  } else {
    load(latest ?? BLANK);
  }
  if (restored) {
    baseNumber = restored.base ?? baseNumber;
    load(restored.spec);
    if ($("f-note")) $("f-note").value = restored.note ?? "";
    showDraftBar(restored, true);
  } else {
    showDraftBar(data.canEdit && store.load() ? store.load() : null);
  }
  if (!data.canEdit) {
    $("optional-parts").hidden = true;
    for (const b of form.querySelectorAll(".message-actions, #add-message, #remove-tools, #remove-format")) b.hidden = true;
  }

  providerSelect.addEventListener("change", () => {
    fillModelList();
    changed();
  });
  modelInput.addEventListener("input", () => changed());
  $("add-message").addEventListener("click", addMessage);
  for (const control of form.querySelectorAll("[data-param], #f-extra_inputs")) control.addEventListener("input", () => changed());
  $("f-template_syntax").addEventListener("change", () => changed());
  $("f-tools").addEventListener("input", () => {
    fillToolChoice();
    validateJson("tools");
    changed();
  });
  $("f-tool_choice").addEventListener("change", () => changed());
  $("f-response_format").addEventListener("input", () => {
    validateJson("response_format");
    changed();
  });
  $("add-tools").addEventListener("click", () => {
    setJsonPart("tools", [{ name: "lookup", description: "What the tool does", parameters: { type: "object", properties: { query: { type: "string" } }, required: ["query"] } }]);
    fillToolChoice();
    $("f-tools").focus();
    changed();
  });
  $("add-format").addEventListener("click", () => {
    setJsonPart("response_format", { type: "json_object" });
    $("f-response_format").focus();
    changed();
  });
  $("remove-tools").addEventListener("click", () => {
    setJsonPart("tools", null);
    fillToolChoice(null);
    $("add-tools").focus();
    changed();
  });
  $("remove-format").addEventListener("click", () => {
    setJsonPart("response_format", null);
    $("add-format").focus();
    changed();
  });
  $("f-note")?.addEventListener("input", () => {
    clearTimeout(saveTimer);
    saveTimer = setTimeout(keepDraft, 250);
  });
  $("discard-draft").addEventListener("click", discardDraft);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    save();
  });
  document.addEventListener("keydown", (event) => {
    if (!(event.ctrlKey || event.metaKey) || event.altKey) return;
    if (event.key === "s" || event.key === "S") {
      event.preventDefault();
      save();
    } else if (event.key === "Enter" && playground) {
      event.preventDefault();
      playground.run();
    }
  });
  window.addEventListener("beforeunload", () => {
    clearTimeout(saveTimer);
    keepDraft();
  });

  if (data.canEdit && $("playground").querySelector("#pg-run")) {
    playground = new Playground({
      slug,
      versions: data.versions,
      latest: data.latest,
      store,
      draft: () => readSpec(),
    });
  }
}

/** Live JSON check of the tools / response format editors, before any save. */
function validateJson(part) {
  const slot = form.querySelector(`[data-error-for="${part}"]`);
  const area = $(`f-${part}`);
  try {
    JSON.parse(area.value);
    slot.hidden = true;
    slot.textContent = "";
    area.removeAttribute("aria-invalid");
  } catch (error) {
    slot.hidden = false;
    slot.textContent = `Not valid JSON yet: ${error.message}`;
    area.setAttribute("aria-invalid", "true");
  }
}

start();

// What a save did for callers: saving deploys nothing, except to variants that follow `latest`
// and pass the release check (`serving` in the answer: every variant of every deployment of this
// prompt, after the save; `held`: each follower the check left where it was). Deploying is its
// own step (release_step.js), opened by Deploy….
function savedSays(version) {
  const n = version.number;
  const serving = version.serving || [];
  const live = serving.filter((s) => s.version === n);
  const kept = serving.filter((s) => s.version !== n && s.default);
  const said = [`Saved as v${n}`];
  said.push(kept.length ? ` — ${kept.map((s) => `${s.deployment} still serves v${s.version}`).join(", ")}.` : ".");
  for (const s of live) said.push(` ${s.deployment}/${s.variant} follows latest and serves it now.`);
  for (const h of version.held || []) {
    said.push(` ${h.deployment}/${h.variant} follows latest, but the release check kept it at v${h.from_version}: ${reportProblems(h).join(" ")}`);
  }
  if (!serving.length) said.push(" No deployment serves this prompt yet.");
  const links = [];
  if (serving.some((s) => s.version !== n)) {
    const open = el("button", { type: "button", class: "btn btn-small", id: "deploy-open", text: "Deploy…" });
    open.addEventListener("click", () => {
      $("deploy-step")?.remove();
      $("save-status").append(deployStep(n, serving));
      $("deploy-target")?.focus();
    });
    links.push(open, " · ");
  }
  links.push(el("a", { href: `/prompts/${slug}/versions`, text: "Version history" }));
  return el("p", { class: "flash flash-ok", role: "status", id: "saved-says" }, said.join("") + " ", ...links);
}
