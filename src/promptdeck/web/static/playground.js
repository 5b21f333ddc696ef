// The editor's playground: fill the inputs, run the unsaved draft or a saved version through
// `POST /api/playground/run` (Server-Sent Events: started, reasoning, text, tool_call, usage,
// finished | error), and watch the answer stream in — one column, or two side by side on the
// same inputs, each its own run in the logs.

import { ApiError, api, el, formatCost, formatMs, formatTokens, stream } from "/static/console.js";
import { withFreshCsrf } from "/static/fresh_csrf.js";
import { specOf } from "/static/prompt_draft.js";

const DRAFT = "draft";
const $ = (id) => document.getElementById(id);
const EXAMPLES = { json: '{"key": "value"}', chat_history: '[{"role": "user", "content": "Hi"}]' };
// image and document inputs: a URL, or a file read here and sent as a data: URL
const MEDIA = { image: "image/png,image/jpeg,image/gif,image/webp", document: "application/pdf" };

export class Playground {
  /**
   * `draft()` returns the editor's `{spec, problems}`; `versions` are the saved ones, newest
   * first; `store` keeps the typed input values per prompt.
   */
  constructor({ slug, versions, latest, store, draft }) {
    this.slug = slug;
    this.draft = draft;
    this.store = store;
    this.values = store.loadInputs();
    this.specs = new Map(latest ? [[latest.number, specOf(latest)]] : []);
    this.fieldsShown = "";
    this.runs = [];
    this.a = $("pg-a");
    this.b = $("pg-b");
    this.compare = $("pg-compare");
    this.versionsChanged(versions);
    this.a.addEventListener("change", () => this.subjectsChanged());
    this.b.addEventListener("change", () => this.subjectsChanged());
    this.compare.addEventListener("change", () => this.subjectsChanged());
    $("pg-run").addEventListener("click", () => this.run());
    $("pg-stop").addEventListener("click", () => this.stop());
    this.subjectsChanged();
  }

  /** The run choices: the draft, then every saved version (newest first). */
  versionsChanged(versions) {
    const options = (selected) => [
      el("option", { value: DRAFT, text: "Unsaved draft", selected: selected === DRAFT }),
      ...versions.map((v) =>
        el("option", { value: String(v.number), text: `v${v.number}${v.note ? ` — ${v.note.slice(0, 40)}` : ""}`, selected: String(v.number) === selected }),
      ),
    ];
    const a = this.a.value || DRAFT;
    const b = this.b.value || (versions[0] ? String(versions[0].number) : DRAFT);
    this.a.replaceChildren(...options(a));
    this.b.replaceChildren(...options(b));
    this.renderFields();
  }

  subjects() {
    const chosen = [this.a.value || DRAFT];
    if (this.compare.checked) chosen.push(this.b.value || DRAFT);
    return chosen;
  }

  subjectsChanged() {
    $("pg-b-field").hidden = !this.compare.checked;
    $("workspace").classList.toggle("comparing", this.compare.checked);
    this.renderFields();
  }

  /** The editor changed: the draft's inputs may have too. */
  draftChanged() {
    if (this.subjects().includes(DRAFT)) this.renderFields();
  }

  async specOf(subject) {
    if (subject === DRAFT) return this.draft().spec;
    const number = Number(subject);
    if (!this.specs.has(number)) {
      const version = await api("GET", `/api/prompts/${encodeURIComponent(this.slug)}/versions/${number}`);
      this.specs.set(number, specOf(version));
    }
    return this.specs.get(number);
  }

  /** Input fields for the union of the chosen subjects' inputs; typed values are kept. */
  async renderFields() {
    let declared = {};
    try {
      for (const subject of this.subjects()) declared = { ...(await this.specOf(subject)).inputs, ...declared };
    } catch (error) {
      this.showFieldsError(error);
      return;
    }
    const shape = JSON.stringify(Object.entries(declared).map(([n, d]) => [n, d.type, d.required, d.default, d.description]));
    if (shape === this.fieldsShown) return; // unchanged: leave the fields (and focus) alone
    this.fieldsShown = shape;
    this.declared = declared;
    const names = Object.keys(declared);
    $("pg-no-inputs").hidden = names.length > 0;
    $("pg-inputs").replaceChildren(...names.map((name) => this.field(name, declared[name])));
  }

  showFieldsError(error) {
    $("pg-inputs").replaceChildren(el("p", { class: "field-error", role: "alert", text: `Could not load that version: ${error.message}` }));
    this.fieldsShown = "";
  }

  field(name, decl) {
    const id = `pg-in-${name}`;
    const type = decl.type ?? "string";
    const value = this.values[name] ?? "";
    let control;
    let media = null;
    if (MEDIA[type]) {
      control = el("input", { id, type: "url", value: value.startsWith("data:") ? "" : value, placeholder: "https://…", spellcheck: "false", autocomplete: "off" });
      media = mediaInput(name, type, control, this);
    } else if (type === "boolean") {
      control = el("select", { id }, ...["", "true", "false"].map((v) => el("option", { value: v, text: v || "—", selected: v === value })));
    } else if (type === "number" || type === "integer") {
      control = el("input", { id, type: "number", step: type === "integer" ? "1" : "any", value, inputmode: "decimal" });
    } else {
      control = el("textarea", { id, rows: type === "string" ? 2 : 3, spellcheck: type === "string" ? "true" : "false", class: type === "string" ? "" : "json-editor" });
      control.value = value;
      if (EXAMPLES[type]) control.placeholder = EXAMPLES[type];
    }
    control.dataset.input = name;
    control.setAttribute("aria-describedby", `${id}-error`);
    control.addEventListener("input", () => {
      this.values[name] = control.value;
      this.keepValues();
      control.removeAttribute("aria-invalid");
      $(`${id}-error`).hidden = true;
      media?.typed();
    });
    const hint = [type, decl.required === false || decl.default !== undefined ? "optional" : "required"];
    if (decl.default !== undefined) hint.push(`default ${JSON.stringify(decl.default)}`);
    return el(
      "div",
      { class: "field pg-field" },
      el("label", { for: id }, el("code", { text: name }), " ", el("span", { class: "hint", text: hint.join(" · ") })),
      decl.description ? el("span", { class: "hint", text: decl.description }) : null,
      media ? media.node : control,
      el("p", { class: "field-error", id: `${id}-error`, hidden: true }),
    );
  }

  /** Typed values kept in this browser; a file's data: URL only in the page (it may be large). */
  keepValues() {
    this.store.saveInputs(Object.fromEntries(Object.entries(this.values).filter(([, v]) => !String(v).startsWith("data:"))));
  }

  /** Typed values as the API takes them; empty fields are left out (defaults apply). */
  inputs() {
    const values = {};
    const problems = [];
    for (const [name, decl] of Object.entries(this.declared ?? {})) {
      const raw = this.values[name] ?? "";
      if (raw === "") continue;
      const type = decl.type ?? "string";
      if (type === "string" || MEDIA[type]) values[name] = raw; // media: a URL or a data: URL
      else if (type === "boolean") values[name] = raw === "true";
      else if (type === "number" || type === "integer") {
        const number = Number(raw);
        if (!Number.isFinite(number) || (type === "integer" && !Number.isInteger(number))) problems.push([name, `expected ${type === "integer" ? "a whole number" : "a number"}`]);
        else values[name] = number;
      } else {
        try {
          values[name] = JSON.parse(raw);
        } catch (error) {
          problems.push([name, `not valid JSON: ${error.message}`]);
        }
      }
    }
    return { values, problems };
  }

  markInputs(problems) {
    for (const [name, message] of problems) {
      const slot = $(`pg-in-${name}-error`);
      if (!slot) continue;
      slot.textContent = message;
      slot.hidden = false;
      $(`pg-in-${name}`).setAttribute("aria-invalid", "true");
    }
  }

  stop() {
    for (const run of this.runs) run.abort();
  }

  async run() {
    await this.renderFields();
    const { values, problems } = this.inputs();
    if (problems.length) {
      this.markInputs(problems);
      $(`pg-in-${problems[0][0]}`)?.focus();
      return;
    }
    this.stop();
    const subjects = this.subjects();
    const results = $("pg-results");
    const columns = subjects.map((subject) => {
      const column = $("pg-column").content.firstElementChild.cloneNode(true);
      column.querySelector(".pg-subject").textContent = subject === DRAFT ? "Unsaved draft" : `Version ${subject}`;
      return column;
    });
    results.replaceChildren(...columns);
    results.classList.toggle("side-by-side", columns.length > 1);
    this.runs = subjects.map(() => new AbortController());
    $("pg-run").disabled = true;
    $("pg-stop").hidden = false;
    if (window.matchMedia("(max-width: 760px)").matches || columns.length > 1) results.scrollIntoView({ block: "nearest" });
    await Promise.all(subjects.map((subject, i) => this.runOne(subject, values, columns[i], this.runs[i].signal)));
    $("pg-run").disabled = false;
    $("pg-stop").hidden = true;
  }

  async runOne(subject, inputs, column, signal) {
    const show = new Column(column);
    let body;
    if (subject === DRAFT) {
      const { spec, problems } = this.draft();
      const blocking = problems.filter(([field]) => !field.startsWith("messages["));
      if (blocking.length) {
        show.fail(`The draft cannot run yet: ${blocking.map(([, m]) => m).join(" ")} Fix it in the editor.`);
        return;
      }
      body = { prompt: this.slug, draft: spec, inputs };
    } else {
      body = { prompt: this.slug, version: Number(subject), inputs };
    }
    show.status("starting", "");
    try {
      await withFreshCsrf(() => stream("/api/playground/run", body, (event) => show.event(event), { signal }));
      if (show.state === "streaming") show.status("ended", "badge-warn"); // closed without finished/error
    } catch (error) {
      if (error.name === "AbortError") show.status("stopped", "badge-muted");
      else if (error instanceof ApiError && error.status === 401) show.fail("Your session expired: sign in again in another tab, then run again. Nothing here is lost.");
      else if (error instanceof ApiError) {
        const details = error.details && !Array.isArray(error.details) ? error.details : {};
        const named = [...(details.missing ?? []).map((n) => [n, "required"]), ...(details.wrong_type ?? []).map((w) => [w.split(" ")[0], w])];
        this.markInputs(named);
        show.fail(error.message, Array.isArray(error.details) ? error.details : []);
      } else show.fail(`The run stopped: ${error.message}`);
    }
  }
}

/**
 * An image or document input's controls: the URL field, a file chooser (the file is read in
 * the browser and sent as a data: URL), and a preview — an image's thumbnail, a PDF's name and
 * size. `typed()` after the URL changes.
 */
function mediaInput(name, type, url, playground) {
  const fileId = `pg-file-${name}`;
  const file = el("input", { id: fileId, type: "file", accept: MEDIA[type] });
  const preview = el("div", { class: "media-preview", id: `pg-preview-${name}`, "aria-live": "polite" });
  const clear = el("button", { type: "button", class: "btn btn-small btn-quiet", text: "Clear", "aria-label": `Clear ${name}`, hidden: true });
  const chosen = playground.files ??= {};
  const show = () => {
    const value = playground.values[name] ?? "";
    const picked = chosen[name];
    clear.hidden = !value;
    if (!value) return preview.replaceChildren();
    const label = picked ? `${picked.name} · ${formatBytes(picked.size)}` : value.startsWith("data:") ? "a file (choose it again to see its name)" : decodeURIComponent(value.split(/[?#]/)[0].split("/").pop() || value);
    const thumb = type === "image" && (value.startsWith("data:image/") || value.startsWith("https://"))
      ? el("img", { class: "media-thumb", src: value, alt: `Preview of ${name}`, referrerpolicy: "no-referrer" })
      : null;
    preview.replaceChildren(...(thumb ? [thumb] : []), el("span", { class: "media-name", text: label }));
  };
  file.addEventListener("change", () => {
    const picked = file.files?.[0];
    if (!picked) return;
    const reader = new FileReader();
    reader.addEventListener("load", () => {
      chosen[name] = { name: picked.name, size: picked.size };
      playground.values[name] = String(reader.result);
      url.value = "";
      url.removeAttribute("aria-invalid");
      $(`pg-in-${name}-error`).hidden = true;
      playground.keepValues();
      show();
    });
    reader.readAsDataURL(picked);
  });
  clear.addEventListener("click", () => {
    delete chosen[name];
    playground.values[name] = "";
    url.value = "";
    file.value = "";
    playground.keepValues();
    show();
    url.focus();
  });
  show();
  const node = el(
    "div",
    { class: "pg-media" },
    url,
    el("div", { class: "pg-media-file" }, el("label", { for: fileId, text: `or a ${type === "image" ? "picture" : "PDF"} from this computer:` }), file, clear),
    preview,
  );
  url.addEventListener("change", show); // a thumbnail once the URL is typed, not per keystroke
  return {
    node,
    typed() {
      delete chosen[name];
      file.value = "";
      preview.replaceChildren();
      clear.hidden = !url.value;
    },
  };
}

function formatBytes(size) {
  if (size < 1024) return `${size} bytes`;
  if (size < 1024 * 1024) return `${(size / 1024).toFixed(1)} KB`;
  return `${(size / 1024 / 1024).toFixed(1)} MB`;
}

/** One result column: the answer and reasoning as they stream, then usage, cost and timing. */
class Column {
  constructor(root) {
    this.root = root;
    this.state = "waiting";
    this.tools = [];
    this.part = (selector) => root.querySelector(selector);
  }

  status(text, kind) {
    this.state = text;
    const badge = this.part(".pg-status");
    badge.textContent = text;
    badge.className = `badge pg-status ${kind}`;
  }

  event(event) {
    switch (event.type) {
      case "started":
        this.status("streaming", "badge-editor");
        this.part(".pg-model").textContent = event.model;
        this.link(event.run_id);
        break;
      case "reasoning":
        this.part(".pg-reasoning").hidden = false;
        this.part(".pg-reasoning-text").append(event.text);
        break;
      case "text":
        this.part(".pg-answer").append(event.text);
        break;
      case "tool_call":
        this.toolCall(event);
        break;
      case "usage":
        this.usage(event);
        break;
      case "finished":
        this.finished(event);
        break;
      case "error":
        this.fail(`${event.message} (${event.code})`);
        this.link(event.run_id);
        break;
    }
  }

  link(runId) {
    if (!runId) return;
    const link = this.part(".pg-run-link");
    link.hidden = false;
    link.querySelector("a").href = `/logs/${encodeURIComponent(runId)}`;
  }

  toolCall(event) {
    const call = (this.tools[event.index] ??= { id: event.id, name: event.name, arguments: "" });
    call.name ||= event.name;
    call.arguments += event.arguments_delta ?? "";
    const box = this.part(".pg-tools");
    box.hidden = false;
    box.replaceChildren(
      el("h4", { text: "Tool calls" }),
      ...this.tools.filter(Boolean).map((c) => el("pre", { class: "code-block", text: `${c.name}(${c.arguments})` })),
    );
  }

  usage(event) {
    const stats = this.part(".pg-stats");
    stats.hidden = false;
    const mark = event.estimated ? " (estimated)" : "";
    this.part(".s-in").textContent = formatTokens(event.input_tokens) + mark;
    this.part(".s-cached").textContent = formatTokens(event.cached_input_tokens);
    this.part(".s-out").textContent = formatTokens(event.output_tokens) + mark;
    this.part(".s-reasoning").textContent = formatTokens(event.reasoning_tokens);
  }

  finished(event) {
    this.status("done", "badge-ok");
    this.part(".pg-stats").hidden = false;
    this.part(".s-cost").textContent = event.price_known ? formatCost(event.cost) : "unknown price";
    this.part(".s-ttft").textContent = formatMs(event.ttft_ms);
    this.part(".s-total").textContent = formatMs(event.duration_ms);
    this.part(".s-stop").textContent = event.stop_reason ?? "—";
    this.part(".pg-model").textContent = `${event.model} · ${event.provider}`;
    if (!this.part(".pg-answer").textContent && !this.tools.length) this.part(".pg-answer").append(el("span", { class: "muted", text: "(no text)" }));
    this.link(event.run_id);
  }

  fail(message, problems = []) {
    this.status("failed", "badge-error");
    const box = this.part(".pg-error");
    box.hidden = false;
    box.replaceChildren(message, ...(problems.length > 1 ? [el("ul", {}, ...problems.map((p) => el("li", { text: p })))] : []));
  }
}
