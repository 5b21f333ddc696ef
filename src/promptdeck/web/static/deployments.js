// Deployments: create a deployment, move / roll back / add a variant, edit a traffic split,
// load a variant's per-version statistics, and switch the code snippet tabs. Every change goes
// through the admin API (the session is accepted there); errors are shown next to the form and
// nothing typed is lost. After a change the page is loaded again, with a notice.
import { api, formatCost, formatMs, formatTokens, wireRowList } from "/static/console.js";

const NOTICE_KEY = "promptdeck.deployments.notice";
const path = (...parts) => parts.map(encodeURIComponent).join("/");

function showError(form, error) {
  const box = form.querySelector(".form-error");
  box.textContent = error.message;
  box.hidden = false;
}

function clearError(form) {
  const box = form.querySelector(".form-error");
  box.hidden = true;
  box.textContent = "";
}

/** Runs `action(form)` (a change through the API) and loads the page it names with its
notice; an error is shown in the form. An action that returns null was cancelled. */
async function perform(form, action) {
  clearError(form);
  const buttons = form.querySelectorAll("button");
  buttons.forEach((b) => (b.disabled = true));
  try {
    const done = await action(form);
    if (done) {
      sessionStorage.setItem(NOTICE_KEY, done.notice);
      if (done.next === location.pathname + location.search) location.reload();
      else location.assign(done.next);
      return;
    }
  } catch (error) {
    showError(form, error);
    if (error.code === "unsafe_promotion") {
      const force = form.querySelector(".force-fields");
      if (force) {
        force.hidden = false;
        force.querySelector("input").focus();
      }
    }
  }
  buttons.forEach((b) => (b.disabled = false));
}

function onSubmit(form, action) {
  form?.addEventListener("submit", (event) => {
    event.preventDefault();
    perform(form, action);
  });
}

function versionValue(text) {
  return text === "latest" ? "latest" : Number(text);
}

function variantPage(deployment, variant) {
  return `/deployments/${encodeURIComponent(deployment)}?variant=${encodeURIComponent(variant)}`;
}

// ── the list: create a deployment ────────────────────────────────────────────

function wireCreate() {
  const form = document.getElementById("create-deployment");
  if (!form) return;
  const prompt = form.elements.prompt;
  const version = form.elements.version;
  prompt.addEventListener("change", () => {
    const latest = Number(prompt.selectedOptions[0]?.dataset.latest ?? 0);
    // The newest version first, pinned; following `latest` is an explicit, labelled choice.
    const options = [];
    for (let n = latest; n >= 1; n--) options.push(new Option(`v${n}`, String(n)));
    options.push(new Option("latest: follow each new version", "latest"));
    version.replaceChildren(...options);
  });
  onSubmit(form, async () => {
    const name = form.elements.name.value.trim();
    const variant = form.elements.variant.value.trim();
    if (!name) throw new Error("name: give the deployment a name, e.g. support-reply");
    if (!variant) throw new Error("default variant: give it a name, e.g. default");
    await api("POST", "/api/deployments", {
      name,
      prompt: prompt.value,
      variants: { [variant]: versionValue(version.value) },
      default_variant: variant,
    });
    return { notice: `Deployment ${name} created.`, next: `/deployments/${encodeURIComponent(name)}` };
  });
}

// ── one deployment: move, roll back, add a variant, split ───────────────────

function wireMoves() {
  onSubmit(document.getElementById("move-form"), async (form) => {
    const { deployment, variant } = form.dataset;
    const reason = form.elements.reason.value.trim();
    const body = { version: versionValue(form.elements.version.value), note: form.elements.note.value.trim() };
    if (!form.querySelector(".force-fields").hidden && reason) Object.assign(body, { force: true, reason });
    const answer = await api("PUT", `/api/deployments/${path(deployment, "variants", variant)}`, body);
    const now = answer.variants[variant].version;
    return { notice: `${variant} now serves v${now}.`, next: variantPage(deployment, variant) };
  });

  onSubmit(document.getElementById("rollback-form"), async (form) => {
    const { deployment, variant } = form.dataset;
    const forcing = !form.querySelector(".force-fields").hidden;
    if (!forcing && !confirm(`Roll ${variant} back to the version it served before its last move?`)) return null;
    const body = { note: form.elements.note.value.trim() };
    const reason = form.elements.reason.value.trim();
    if (forcing && reason) Object.assign(body, { force: true, reason });
    const answer = await api("POST", `/api/deployments/${path(deployment, "variants", variant)}/rollback`, body);
    const now = answer.variants[variant].version;
    return { notice: `${variant} was rolled back to v${now}.`, next: variantPage(deployment, variant) };
  });

  onSubmit(document.getElementById("add-variant"), async (form) => {
    const { deployment } = form.dataset;
    const variant = form.elements.variant.value.trim();
    if (!variant) throw new Error("name: give the variant a name, e.g. canary");
    const body = { version: versionValue(form.elements.version.value), note: form.elements.note.value.trim() };
    await api("PUT", `/api/deployments/${path(deployment, "variants", variant)}`, body);
    return { notice: `Variant ${variant} added.`, next: variantPage(deployment, variant) };
  });
}

function wireSplit() {
  const form = document.getElementById("split-form");
  if (!form) return;
  const arms = form.querySelector(".split-arms");
  wireRowList(arms, form.querySelector(".add-arm"), { remove: ".remove-arm", blank: "0", focus: "select" });

  const save = async (split) => {
    const { deployment, variant } = form.dataset;
    const current = JSON.parse(form.dataset.config || "{}");
    const kept = Object.fromEntries(
      Object.entries(current).filter(([key]) => ["timeouts", "retries", "fallbacks", "cache", "gates"].includes(key)),
    );
    // A version the split adds passes the release check; refused, the form asks for a reason.
    const reason = form.elements.reason.value.trim();
    const forced = !form.querySelector(".force-fields").hidden && reason ? `?${new URLSearchParams({ force: "true", reason })}` : "";
    await api("PUT", `/api/deployments/${path(deployment, "variants", variant)}/config${forced}`, { ...kept, split });
    const notice = split.length ? `${variant}'s traffic is split.` : `${variant} no longer splits its traffic.`;
    return { notice, next: variantPage(deployment, variant) };
  };
  onSubmit(form, () => {
    const split = [...arms.querySelectorAll(".split-arm")].map((arm) => ({
      version: Number(arm.querySelector("select").value),
      weight: Number(arm.querySelector("input").value),
    }));
    return save(split);
  });
  form.querySelector(".stop-split")?.addEventListener("click", () => perform(form, () => save([])));
}

// ── per-version statistics (loaded after the page: they read the variant's runs) ──

async function loadStats() {
  const box = document.getElementById("variant-stats");
  if (!box) return;
  const { deployment, variant } = box.dataset;
  try {
    const answer = await api("GET", `/api/deployments/${path(deployment, "variants", variant)}/stats`);
    if (!answer.data.length) {
      box.innerHTML = '<p class="muted">No runs yet.</p>';
      return;
    }
    const table = document.createElement("table");
    table.className = "data";
    table.innerHTML =
      "<thead><tr><th>Version</th><th class=num>Runs</th><th class=num>Errors</th>" +
      "<th class=num>Mean latency</th><th class=num>Tokens</th><th class=num>Cost</th><th class=num>Score</th></tr></thead>";
    const body = table.createTBody();
    for (const row of answer.data) {
      const tr = body.insertRow();
      const logs = new URLSearchParams({ deployment, variant, version: row.version ?? "" });
      const cells = [
        `v${row.version ?? "?"}`,
        row.runs.toLocaleString("en-US"),
        `${(row.error_rate * 100).toFixed(1)} %`,
        formatMs(row.mean_latency_ms),
        formatTokens(row.input_tokens + row.output_tokens),
        formatCost(row.cost),
        row.mean_feedback_score === null ? "—" : row.mean_feedback_score.toFixed(2),
      ];
      cells.forEach((text, i) => {
        const td = tr.insertCell();
        if (i > 0) td.className = "num";
        if (i === 1) {
          const link = document.createElement("a");
          link.href = `/logs?${logs}`;
          link.textContent = text;
          td.append(link);
        } else td.textContent = text;
      });
    }
    const wrap = document.createElement("div");
    wrap.className = "table-wrap";
    wrap.append(table);
    box.replaceChildren(wrap);
  } catch (error) {
    box.replaceChildren(Object.assign(document.createElement("p"), { className: "muted", textContent: error.message }));
  }
}

// ── snippet tabs (WAI-ARIA tabs: arrows move between them) ──────────────────

function wireTabs() {
  const list = document.querySelector(".tabs[role=tablist]");
  if (!list) return;
  const tabs = [...list.querySelectorAll("[role=tab]")];
  const select = (tab) => {
    for (const other of tabs) {
      const chosen = other === tab;
      other.setAttribute("aria-selected", String(chosen));
      other.tabIndex = chosen ? 0 : -1;
      document.getElementById(other.getAttribute("aria-controls")).hidden = !chosen;
    }
  };
  list.addEventListener("click", (event) => {
    const tab = event.target.closest("[role=tab]");
    if (tab) select(tab);
  });
  list.addEventListener("keydown", (event) => {
    const at = tabs.indexOf(document.activeElement);
    if (at < 0) return;
    const moves = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: tabs.length - 1 };
    if (!(event.key in moves)) return;
    event.preventDefault();
    const tab = tabs[(moves[event.key] + tabs.length) % tabs.length];
    tab.focus();
    select(tab);
  });
}

function showNotice() {
  const notice = sessionStorage.getItem(NOTICE_KEY);
  if (!notice) return;
  sessionStorage.removeItem(NOTICE_KEY);
  const flash = Object.assign(document.createElement("p"), { className: "flash flash-ok", textContent: notice });
  flash.setAttribute("role", "status");
  document.querySelector(".messages")?.append(flash);
}

showNotice();
wireCreate();
wireMoves();
wireSplit();
wireTabs();
loadStats();
