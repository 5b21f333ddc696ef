// The Deploy… step after a save: saving deploys nothing, so deploying is its own step. Choose a
// deployment and variant, read the release check's report for the saved version (the preview,
// `POST /api/deployments/{name}/variants/{variant}/check`), then confirm. A refused deploy shows
// the report and asks for a reason to deploy anyway (kept in the variant's history).

import { ApiError, api, el } from "/static/console.js";

const variantPath = (s) => `/api/deployments/${encodeURIComponent(s.deployment)}/variants/${encodeURIComponent(s.variant)}`;

/** One sentence per problem of a release report: an input callers do not send, a failed gate. */
export function reportProblems(report) {
  const said = (report.inputs || []).map((r) =>
    r.problem === "missing"
      ? `${r.input} is required, but ${r.runs_affected} of the last ${r.runs_checked} runs did not send it.`
      : `${r.input} changes type from ${r.from} to ${r.to} (${r.runs_affected} of the last ${r.runs_checked} runs sent a value that no longer fits).`,
  );
  for (const g of report.gates || []) said.push(`Gate ${g.gate} failed: ${g.problem}`);
  return said;
}

/** The step for `number` (just saved): `serving` is every variant of the prompt's deployments. */
export function deployStep(number, serving) {
  const targets = serving.filter((s) => s.version !== number);
  const select = el("select", { name: "target", id: "deploy-target" });
  targets.forEach((s, i) =>
    select.append(el("option", { value: String(i), text: `${s.deployment} / ${s.variant} — serves v${s.version}${s.follows_latest ? " (follows latest)" : ""}` })),
  );
  const report = el("div", { class: "deploy-report", id: "deploy-report", role: "status", "aria-live": "polite" });
  const reason = el("input", { type: "text", name: "reason", id: "deploy-reason", maxlength: "500", placeholder: "e.g. every caller sends audience since today's release" });
  const force = el("div", { class: "force-fields", hidden: true }, el("label", { class: "field" }, "Reason to deploy anyway (kept in the variant's history)", reason));
  const confirm = el("button", { type: "submit", class: "btn btn-primary", id: "deploy-confirm", disabled: true, text: `Deploy v${number}` });
  const cancel = el("button", { type: "button", class: "btn", id: "deploy-cancel", text: "Cancel" });
  const form = el(
    "form",
    { class: "deploy-step card", id: "deploy-step", "aria-labelledby": "deploy-title" },
    el("h3", { id: "deploy-title", text: `Deploy version ${number}` }),
    el("label", { class: "field" }, "Deployment and variant", select),
    report,
    force,
    el("div", { class: "deploy-actions" }, confirm, " ", cancel),
  );
  let refused = false;
  const chosen = () => targets[Number(select.value)];

  function show(answer) {
    refused = !answer.safe;
    const problems = reportProblems(answer);
    const heading = answer.safe
      ? el("p", { class: "check-ok", text: `The release check passes: no recent caller of ${answer.deployment}/${answer.variant} would break, and no gate fails.` })
      : el("p", { class: "check-refused", text: `The release check refuses moving ${answer.deployment}/${answer.variant} from v${answer.from_version} to v${answer.version}:` });
    report.replaceChildren(heading, problems.length ? el("ul", {}, ...problems.map((p) => el("li", { text: p }))) : "");
    force.hidden = answer.safe;
    confirm.textContent = answer.safe ? `Deploy v${number}` : `Deploy v${number} anyway`;
    confirm.disabled = refused && !reason.value.trim();
  }

  async function check() {
    const target = chosen();
    if (!target) return;
    confirm.disabled = true;
    report.replaceChildren(el("p", { class: "muted", text: "Checking…" }));
    try {
      show(await api("POST", `${variantPath(target)}/check`, { version: number }));
    } catch (error) {
      report.replaceChildren(el("p", { class: "flash flash-error", text: error.message }));
    }
  }

  select.addEventListener("change", check);
  reason.addEventListener("input", () => {
    confirm.disabled = refused && !reason.value.trim();
  });
  cancel.addEventListener("click", () => form.remove());
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const target = chosen();
    const body = { version: number, note: "deployed from the editor" };
    if (refused) Object.assign(body, { force: true, reason: reason.value.trim() });
    confirm.disabled = true;
    try {
      await api("PUT", variantPath(target), body);
      form.replaceChildren(
        el("p", { class: "flash flash-ok", role: "status", id: "deploy-done" }, `${target.deployment}/${target.variant} now serves v${number}. `, el("a", { href: `/deployments/${encodeURIComponent(target.deployment)}?variant=${encodeURIComponent(target.variant)}`, text: "Its history" })),
      );
    } catch (error) {
      if (error instanceof ApiError && error.code === "unsafe_promotion" && error.details) show(error.details);
      else report.replaceChildren(el("p", { class: "flash flash-error", text: error.message }));
    }
  });
  if (!targets.length) {
    report.replaceChildren(el("p", { class: "muted", text: "Every variant serves this version already." }));
  } else {
    check();
  }
  return form;
}
