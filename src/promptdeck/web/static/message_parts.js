// A message's content in the prompt editor: a text (as always), or a list of parts — text,
// image and document (domain/content_parts.py). The editor shows one textarea per text part
// and a row per image or document part: its source (an https URL, a data: URL, or
// `{{ name }}`, which binds the part to an input of that type), an image's detail, a
// document's file name. A message becomes a list when the first image or document is added,
// and a text again when the last one is removed; a message nobody touches saves as it was.

const KINDS = { image: "Image", document: "Document" };
const DETAILS = ["", "auto", "low", "high"];

/** The content as the admin API takes it: empty text parts and unset fields left out. */
export function contentFor(content) {
  if (!Array.isArray(content)) return content;
  const media = content.some((p) => p.type !== "text");
  const parts = [];
  for (const part of content) {
    if (part.type === "text") {
      if (part.text !== "" || !media) parts.push({ type: "text", text: part.text });
      continue;
    }
    const out = { type: part.type, source: part.source.trim() };
    if (part.type === "image" && part.detail) out.detail = part.detail;
    if (part.type === "document" && part.media_type) out.media_type = part.media_type;
    if (part.type === "document" && part.name?.trim()) out.name = part.name.trim();
    parts.push(out);
  }
  return parts;
}

/** Whether a message says nothing: no text and no image or document. */
export function isEmpty(content) {
  if (!Array.isArray(content)) return !content.trim();
  return content.every((p) => p.type === "text" && !p.text.trim());
}

/** Problems of the image and document parts of message `index` (a missing source). */
export function partProblems(content, index) {
  if (!Array.isArray(content)) return [];
  const problems = [];
  const counts = { image: 0, document: 0 };
  for (const part of content) {
    if (part.type === "text") continue;
    counts[part.type] += 1;
    if (!part.source.trim()) {
      problems.push([
        `messages[${index}]`,
        `${KINDS[part.type]} ${counts[part.type]} of message ${index + 1} has no source: give an https URL, a data: URL, or {{ name }} for an input.`,
      ]);
    }
  }
  return problems;
}

/**
 * The editors of message `message` (number `n`): its textareas and part rows, then the add
 * buttons (on user messages: the APIs take images and documents from the user only). `textarea(part, label, first)` makes a text editor (the editor's own, so keys and
 * focus work as for a plain message); `changed()` after an edit; `rerender(selector)` after
 * a part is added or removed (focusing `selector` in the message).
 */
export function partEditors(message, n, { el, textarea, changed, rerender, canEdit }) {
  const nodes = [];
  if (!Array.isArray(message.content)) {
    nodes.push(textarea(message, "content", `Message ${n} (${message.role})`));
  } else {
    const counts = { text: 0, image: 0, document: 0 };
    for (const part of message.content) {
      counts[part.type] += 1;
      if (part.type === "text") {
        const label = counts.text === 1 ? `Message ${n} (${message.role})` : `Message ${n} text ${counts.text}`;
        nodes.push(textarea(part, "text", label));
      } else {
        nodes.push(mediaRow(message, part, n, counts[part.type], { el, changed, rerender }));
      }
    }
  }
  if (canEdit && message.role === "user") {
    const add = (kind) => {
      const b = el("button", { type: "button", class: "btn btn-small btn-quiet", text: `+ ${KINDS[kind]}`, "aria-label": `Add ${kind === "image" ? "an image" : "a document"} to message ${n}` });
      b.addEventListener("click", () => {
        if (!Array.isArray(message.content)) message.content = [{ type: "text", text: message.content }];
        message.content.push(kind === "image" ? { type: "image", source: "", detail: "" } : { type: "document", source: "", name: "" });
        rerender(".part-source");
        changed();
      });
      return b;
    };
    nodes.push(el("div", { class: "part-add" }, add("image"), add("document")));
  }
  return nodes;
}

function mediaRow(message, part, n, k, { el, changed, rerender }) {
  const what = `${part.type} ${k} of message ${n}`;
  const source = el("input", {
    type: "text",
    class: "part-source",
    value: part.source,
    spellcheck: "false",
    autocomplete: "off",
    "aria-label": `Source of ${what}`,
    placeholder: "https://… , data:… , or {{ name }} for an input",
  });
  source.addEventListener("input", () => {
    part.source = source.value;
    changed();
  });
  let option;
  if (part.type === "image") {
    option = el(
      "select",
      { "aria-label": `Detail of ${what}`, class: "part-detail" },
      ...DETAILS.map((d) => el("option", { value: d, text: d ? `detail: ${d}` : "detail: not set", selected: d === (part.detail ?? "") })),
    );
    option.addEventListener("change", () => {
      part.detail = option.value;
      changed();
    });
  } else {
    option = el("input", { type: "text", class: "part-name", value: part.name ?? "", placeholder: "file name (optional)", "aria-label": `File name of ${what}` });
    option.addEventListener("input", () => {
      part.name = option.value;
      changed();
    });
  }
  const remove = el("button", { type: "button", class: "btn btn-small btn-quiet", text: "✕", title: `Remove ${part.type}`, "aria-label": `Remove ${what}` });
  remove.addEventListener("click", () => {
    message.content = message.content.filter((p) => p !== part);
    const texts = message.content.filter((p) => p.type === "text");
    if (texts.length === message.content.length && texts.length <= 1) {
      message.content = texts[0]?.text ?? ""; // no image or document left: a text again
    }
    rerender("textarea");
    changed();
  });
  return el("div", { class: `media-part media-${part.type}` }, el("span", { class: "badge badge-muted part-kind", text: part.type }), source, option, remove);
}
