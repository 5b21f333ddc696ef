// Usage and Users screens: tooltips with exact values on the server-drawn SVG charts, and the
// usage controls (show the fields that apply, apply a choice at once). Without this script the
// charts keep their native <title> tooltips and the controls a "Show" button.

const DEFAULT_BUCKET = { "24h": "hour", "7d": "day", "30d": "day" };

function wireControls(form) {
  const range = form.querySelector("#range");
  const groupBy = form.querySelector("#group_by");
  const bucket = form.querySelector("#bucket");
  const metaKey = form.querySelector("#meta-key");
  const sync = () => {
    for (const field of form.querySelectorAll(".custom-range")) {
      field.classList.toggle("js-hidden", range.value !== "custom");
    }
    form.querySelector("[data-meta-key]")?.classList.toggle("js-hidden", groupBy.value !== "metadata");
  };
  const submit = () => (form.requestSubmit ? form.requestSubmit() : form.submit());
  for (const field of form.querySelectorAll("[data-hidden-unless-custom], [data-hidden-unless-meta]")) {
    field.classList.add("js-hidden");
  }
  sync();
  range.addEventListener("change", () => {
    sync();
    if (range.value === "custom") return form.querySelector("#from").focus();
    bucket.value = DEFAULT_BUCKET[range.value] ?? bucket.value;
    submit();
  });
  bucket.addEventListener("change", submit);
  groupBy.addEventListener("change", () => {
    sync();
    if (groupBy.value === "metadata") return metaKey.focus();
    metaKey.value = "";
    submit();
  });
}

function wireChart(chart) {
  const tip = document.createElement("div");
  tip.className = "chart-tip";
  tip.hidden = true;
  tip.setAttribute("role", "status");
  chart.append(tip);

  // Our tooltip replaces the native one (a bucket's <title>); the text stays as the link's
  // accessible name.
  for (const element of chart.querySelectorAll("[data-col]")) {
    const title = element.querySelector(":scope > title");
    if (!title) continue;
    if (element.classList.contains("hit")) element.dataset.tip = title.textContent;
    element.setAttribute("aria-label", title.textContent.replace(/\n/g, ", "));
    title.remove();
  }

  let active = null;
  const show = (element, x, y) => {
    const svg = element.closest("svg");
    const column = svg.querySelector(`.hit[data-col="${element.dataset.col}"]`);
    if (!column?.dataset.tip) return;
    active?.classList.remove("active");
    active = column;
    column.classList.add("active");
    const [first, ...rest] = column.dataset.tip.split("\n");
    const heading = document.createElement("strong");
    heading.textContent = first;
    tip.replaceChildren(heading, document.createTextNode(rest.join("\n")));
    tip.hidden = false;
    const box = chart.getBoundingClientRect();
    const left = Math.min(Math.max(0, x - box.left + 14), box.width - tip.offsetWidth);
    const top = Math.max(0, y - box.top - tip.offsetHeight - 10);
    tip.style.left = `${left}px`;
    tip.style.top = `${top}px`;
  };
  const hide = () => {
    tip.hidden = true;
    active?.classList.remove("active");
    active = null;
  };
  chart.addEventListener("pointermove", (event) => {
    const element = event.target.closest?.("[data-col]");
    if (element) show(element, event.clientX, event.clientY);
    else hide();
  });
  chart.addEventListener("pointerleave", hide);
  chart.addEventListener("focusin", (event) => {
    const element = event.target.closest?.("[data-col]");
    if (!element) return;
    const rect = element.getBoundingClientRect();
    show(element, rect.left + rect.width / 2, rect.top + rect.height / 3);
  });
  chart.addEventListener("focusout", hide);
  chart.addEventListener("keydown", (event) => {
    if (event.key === "Escape") hide();
  });
}

function wire() {
  const form = document.querySelector("[data-usage-controls]");
  if (form) wireControls(form);
  for (const chart of document.querySelectorAll("[data-chart]")) wireChart(chart);
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", wire);
else wire();
