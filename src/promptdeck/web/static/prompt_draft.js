// A prompt draft without the page: which inputs its messages use, how it compares with a
// saved version, where it is kept between visits, and how a server error names its field.
// The server stays the judge: these mirror its rules (domain/templating.py, domain/prompts.py)
// closely enough to help while typing.

// domain/templating.py PLACEHOLDER, and WHOLE_PLACEHOLDER (a message that is only `{{ name }}`).
export const PLACEHOLDER = /\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\s*\}\}/g;
const WHOLE_PLACEHOLDER = /^\s*\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}\s*$/;

const JINJA_TAG = /\{\{([\s\S]*?)\}\}|\{%-?([\s\S]*?)-?%\}/g;
const JINJA_WORDS = new Set([
  "and", "or", "not", "in", "is", "if", "else", "elif", "endif", "for", "endfor", "set", "endset",
  "true", "false", "none", "True", "False", "None", "loop", "range", "dict", "lipsum", "cycler",
  "joiner", "namespace", "macro", "endmacro", "call", "endcall", "filter", "endfilter", "raw",
  "endraw", "with", "endwith", "without", "context", "ignore", "missing", "recursive", "block",
  "endblock", "super", "self", "varargs", "kwargs", "caller",
]);

/** The templates of a message's content: itself, or its text parts (content_parts.texts_of). */
export function textsOf(content) {
  if (!Array.isArray(content)) return [content ?? ""];
  return content.filter((p) => p?.type === "text").map((p) => p.text ?? "");
}

/** Input name -> "image" or "document", for each part whose source is `{{ name }}`. */
export function boundInputs(messages) {
  const bound = new Map();
  for (const m of messages) {
    if (!Array.isArray(m.content)) continue;
    for (const part of m.content) {
      const whole = part?.type !== "text" && WHOLE_PLACEHOLDER.exec(part?.source ?? "");
      if (whole && !bound.has(whole[1])) bound.set(whole[1], part.type);
    }
  }
  return bound;
}

/**
 * The inputs the messages use, in order of first appearance: name -> "string" or "json"
 * (read with a dotted path, or from a Jinja2 template: the server declares those as json),
 * or "image" / "document" for the source of an image or document part.
 */
export function detectInputs(messages, syntax) {
  const found = new Map();
  const texts = messages.flatMap((m) => textsOf(m.content));
  if (syntax === "jinja2") {
    for (const text of texts) for (const name of jinjaNames(text)) if (!found.has(name)) found.set(name, "json");
  } else {
    for (const text of texts) {
      for (const match of text.matchAll(PLACEHOLDER)) {
        const [name, ...steps] = match[1].split(".");
        if (steps.length) found.set(name, "json");
        else if (!found.has(name)) found.set(name, "string");
      }
    }
  }
  for (const text of texts) {
    const whole = WHOLE_PLACEHOLDER.exec(text);
    if (whole && !found.has(whole[1])) found.set(whole[1], "string");
  }
  for (const [name, kind] of boundInputs(messages)) found.set(name, kind);
  return found;
}

/** Names a Jinja2 template reads from its context (an approximation of jinja2.meta). */
function jinjaNames(text) {
  const local = new Set();
  const names = [];
  for (const match of text.matchAll(JINJA_TAG)) {
    let code = (match[1] ?? match[2] ?? "").replace(/^[-+]|[-+]$/g, "");
    code = code.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '""'); // no names inside strings
    code = code.replace(/\|\s*[A-Za-z_]\w*/g, "").replace(/\bis\s+(not\s+)?[A-Za-z_]\w*/g, ""); // filters, tests
    const statement = /^\s*(for|set|macro)\s+([\s\S]*)$/.exec(code);
    if (statement?.[1] === "for") {
      const [targets, rest = ""] = statement[2].split(/\s+in\s+/, 2);
      for (const t of targets.split(",")) local.add(t.trim());
      code = rest;
    } else if (statement?.[1] === "set") {
      const [target, rest = ""] = statement[2].split("=", 2);
      for (const t of target.split(",")) local.add(t.trim());
      code = rest;
    } else if (statement?.[1] === "macro") {
      continue;
    }
    for (const word of code.matchAll(/(^|[^.\w|])\s*([A-Za-z_]\w*)(?!\s*=[^=])/g)) {
      const name = word[2];
      if (!JINJA_WORDS.has(name) && !local.has(name) && !/^\d/.test(name)) names.push(name);
    }
  }
  return [...new Set(names)];
}

/** A version's content as the admin API takes it, with the optional parts only when set. */
export function specOf(version) {
  const spec = {
    model: version.model,
    messages: version.messages.map((m) => ({ role: m.role, content: structuredClone(m.content) })),
    params: { ...(version.params ?? {}) },
    inputs: structuredClone(version.inputs ?? {}),
  };
  for (const part of ["tools", "tool_choice", "response_format"]) {
    if (version[part] !== undefined && version[part] !== null) spec[part] = structuredClone(version[part]);
  }
  if (version.template_syntax && version.template_syntax !== "default") spec.template_syntax = version.template_syntax;
  if (version.extra_inputs && version.extra_inputs !== "allow") spec.extra_inputs = version.extra_inputs;
  return spec;
}

/** JSON with sorted keys: two specs are the same content when these strings are equal. */
export function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value && typeof value === "object") {
    return `{${Object.keys(value)
      .sort()
      .filter((k) => value[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(value);
}

export function sameSpec(a, b) {
  return canonical(a) === canonical(b);
}

/** Unsaved drafts in localStorage, one per prompt (and workspace) in this browser. */
export class DraftStore {
  constructor(workspace, slug) {
    this.key = `promptdeck.draft.${workspace}.${slug}`;
    this.inputsKey = `promptdeck.inputs.${workspace}.${slug}`;
  }

  load() {
    try {
      const raw = localStorage.getItem(this.key);
      return raw ? JSON.parse(raw) : null;
    } catch {
      return null;
    }
  }

  save(draft) {
    try {
      localStorage.setItem(this.key, JSON.stringify({ ...draft, savedAt: new Date().toISOString() }));
      return true;
    } catch {
      return false; // storage full or disabled: the page still holds the draft
    }
  }

  clear() {
    localStorage.removeItem(this.key);
  }

  loadInputs() {
    try {
      return JSON.parse(localStorage.getItem(this.inputsKey) ?? "{}") ?? {};
    } catch {
      return {};
    }
  }

  saveInputs(values) {
    try {
      localStorage.setItem(this.inputsKey, JSON.stringify(values));
    } catch {
      /* not kept: fine */
    }
  }
}

/**
 * Where a server problem belongs: "model: expected…" -> "model", "messages[1].content: …" ->
 * "messages[1]", "params.temperature: …" -> "params.temperature", "inputs.x.default" -> "inputs".
 * Pydantic's paths (`messages.0.role`) are read the same way.
 */
export function fieldOf(problem) {
  const path = String(problem).split(": ", 1)[0].replace(/^invalid (prompt version|request): /, "");
  let found = /^messages(?:\[(\d+)\]|\.(\d+))/.exec(path);
  if (found) return `messages[${found[1] ?? found[2]}]`;
  found = /^params\.(\w+)/.exec(path);
  if (found) return `params.${found[1]}`;
  for (const part of ["model", "messages", "params", "inputs", "tools", "tool_choice", "response_format", "template_syntax", "extra_inputs"]) {
    if (path === part || path.startsWith(part + ".") || path.startsWith(part + "[")) {
      return part === "tool_choice" ? "tools" : part === "extra_inputs" ? "template_syntax" : part;
    }
  }
  return "";
}

/** Each problem of an ApiError (its `details` list, else its message split at "; "). */
export function problemsOf(error) {
  if (Array.isArray(error.details) && error.details.length) return error.details.map(String);
  const message = String(error.message ?? error).replace(/^invalid (prompt version|request): /, "");
  return message.split("; ");
}
