// The prompts list: filters the rows as you type (the form's `q` does the same on the server).

const search = document.querySelector("[data-filter-rows]");
const rows = search ? document.querySelector(search.dataset.filterRows) : null;

function filter() {
  const needle = search.value.trim().toLowerCase();
  let shown = 0;
  let total = 0;
  for (const row of rows.querySelectorAll("tr[data-filter-text]")) {
    const match = !needle || row.dataset.filterText.includes(needle);
    row.hidden = !match;
    total += 1;
    if (match) shown += 1;
  }
  const empty = rows.querySelector(".filter-empty");
  if (empty) empty.hidden = shown > 0 || total === 0;
  const count = document.getElementById("prompt-count");
  if (count && total) count.textContent = `${shown} of ${total}`;
}

if (search && rows) {
  search.addEventListener("input", filter);
  search.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      search.value = "";
      filter();
    } else if (event.key === "Enter") {
      // Enter opens the only match instead of reloading the list.
      const visible = [...rows.querySelectorAll("tr[data-filter-text]")].filter((r) => !r.hidden);
      if (visible.length === 1) {
        event.preventDefault();
        visible[0].querySelector("a.prompt-link")?.click();
      }
    }
  });
}
