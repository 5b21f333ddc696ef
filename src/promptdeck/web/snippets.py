"""Copy-paste code that calls one deployment variant, for the console's Code snippet panel.

Pure functions: given this server's URL, the deployment, the variant and example inputs, each
snippet is complete and runnable as shown — it reads the API key from the environment (the
browser's JavaScript from a constant to fill in), names the deployment's real inputs, and sends
an end user and metadata wherever its dialect carries them, so a reader sees how to attach them.
tests/web/test_snippets_run.py runs every one against a live server.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from promptdeck.domain.prompts import InputSpec

EXAMPLE_END_USER = "user-123"
EXAMPLE_METADATA: Mapping[str, Any] = {"environment": "development"}
KEY_TO_FILL_IN = "pd_..."  # the JavaScript snippet's key constant, until someone fills it in
ENV_REFERENCE = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)$")


@dataclass(frozen=True, slots=True)
class Snippet:
    id: str  # curl, python-fetch-hive, python-vellum, python-openai, js-fetch
    title: str
    language: str  # shell, python, javascript (for the highlighter)
    code: str


def example_inputs(declared: Mapping[str, InputSpec]) -> dict[str, Any]:
    """An example value for each declared input: its default, else its JSON Schema's first
    example or default, else a placeholder of the right type that names the input."""
    examples: dict[str, Any] = {}
    for name, spec in declared.items():
        schema = spec.schema or {}
        if spec.default is not None:
            examples[name] = spec.default
        elif isinstance(schema.get("examples"), list) and schema["examples"]:
            examples[name] = schema["examples"][0]
        elif "default" in schema:
            examples[name] = schema["default"]
        else:
            examples[name] = _placeholder(name, spec.type)
    return examples


def _placeholder(name: str, kind: str) -> Any:
    """A value the input's type check accepts, and that says which input it stands for."""
    text = f"<{name}>"
    return {
        "number": 1.0,
        "integer": 1,
        "boolean": True,
        "json": {"example": text},
        "chat_history": [{"role": "user", "content": text}],
    }.get(kind, text)


def snippets(
    base_url: str,
    deployment: str,
    variant: str | None,
    inputs: dict[str, Any],
    api_key_placeholder: str = "$PROMPTDECK_API_KEY",
    *,
    default_variant: str | None = None,
    end_user: str = EXAMPLE_END_USER,
    metadata: Mapping[str, Any] = EXAMPLE_METADATA,
) -> list[Snippet]:
    """Every snippet for `deployment` at `variant` (None: the default variant, whose name
    `default_variant` gives when known: Vellum's snippet names it as its release tag, so the
    code says which variant it calls). `api_key_placeholder` is an environment variable reference, `$NAME`."""
    found = ENV_REFERENCE.match(api_key_placeholder)
    if found is None:
        raise ValueError(
            f"api_key_placeholder: expected $NAME of an environment variable; got {api_key_placeholder!r}"
        )
    call = _Call(
        base_url.rstrip("/"),
        deployment,
        variant if variant != default_variant else None,
        variant or default_variant,
        inputs,
        found.group(1),
        end_user,
        dict(metadata),
    )
    return [
        Snippet("curl", "curl", "shell", call.curl()),
        Snippet("python-fetch-hive", "Python · fetch-hive-sdk", "python", call.python_fetch_hive()),
        Snippet("python-vellum", "Python · vellum-ai", "python", call.python_vellum()),
        Snippet("python-openai", "Python · openai", "python", call.python_openai()),
        Snippet("js-fetch", "JavaScript · fetch, streaming", "javascript", call.js_fetch()),
    ]


CURL = """\
curl -sS --fail-with-body %(url)s \\
  -H "Authorization: Bearer $%(key)s" \\
  -H "Content-Type: application/json" \\
  -d %(body)s

# Streamed: add "streaming": true to the body (and -N to curl). The answer is then
# Server-Sent Events: data: {"type": "response", "response": "<text>", ...} per piece,
# one "usage" (or "error") event, then data: [DONE].
"""

PYTHON_FETCH_HIVE = """\
# pip install fetch-hive-sdk
import os

from fetch_hive_sdk import FetchHive

inputs = %(inputs)s

client = FetchHive(api_key=os.environ["%(key)s"], base_url=%(url)s)
result = client.invoke_prompt(
    deployment=%(deployment)s,
%(variant)s    inputs=inputs,
    user=%(user)s,  # the end user, shown in the run log
    metadata=%(metadata)s,  # flat: string, number, boolean or null values
)
print(result["response"])
"""

PYTHON_VELLUM = """\
# pip install vellum-ai
import os

from vellum import %(imports)s

URL = %(url)s  # promptdeck's root serves every Vellum environment
inputs = %(inputs)s

client = Vellum(
    api_key=os.environ["%(key)s"],
    environment=VellumEnvironment(default=URL, predict=URL, documents=URL),
)
result = client.execute_prompt(
    prompt_deployment_name=%(deployment)s,
%(release_tag)s    inputs=inputs,
    metadata=%(metadata)s,  # stored with the run (Vellum has no end-user field)
)
if result.state == "REJECTED":
    raise RuntimeError(result.error.message)
print("".join(output.value for output in result.outputs if output.type == "STRING"))
"""

PYTHON_OPENAI = """\
# pip install openai
import os

from openai import OpenAI

inputs = %(inputs)s

client = OpenAI(base_url=%(url)s, api_key=os.environ["%(key)s"])
completion = client.chat.completions.create(
    model=%(model)s,  # the deployment, @variant when not the default
    messages=[],  # messages to add after the prompt's own
    extra_body={"variables": inputs},  # the prompt's inputs
    user=%(user)s,  # the end user, shown in the run log
    metadata=%(metadata)s,  # flat, stored with the run
)
print(completion.choices[0].message.content)
"""

JS_FETCH = """\
// Streams %(deployment)s and prints the answer as it arrives. Runs as an ES module
// (Node.js 18+: save as invoke.mjs) or in a browser's console. Never put an API key
// in a page your users load: call promptdeck from your server.
const %(key)s = "%(fill_in)s"; // a key with the invoke scope (Node.js: process.env.%(key)s)

const response = await fetch(%(url)s, {
  method: "POST",
  headers: { Authorization: `Bearer ${%(key)s}`, "Content-Type": "application/json" },
  body: JSON.stringify(%(body)s),
});
if (!response.ok) {
  throw new Error(`promptdeck answered ${response.status}: ${await response.text()}`);
}

const write = typeof process === "object"
  ? (text) => process.stdout.write(text) // Node.js
  : (text) => console.log(text); // a browser
const reader = response.body.getReader();
const decoder = new TextDecoder();
let buffer = "";
stream: while (true) {
  const { done, value } = await reader.read();
  if (done) break;
  buffer += decoder.decode(value, { stream: true });
  let end;
  while ((end = buffer.indexOf("\\n\\n")) !== -1) {
    const line = buffer.slice(0, end);
    buffer = buffer.slice(end + 2);
    if (!line.startsWith("data: ")) continue; // ": ping" keep-alives
    if (line === "data: [DONE]") break stream;
    const event = JSON.parse(line.slice(6));
    if (event.type === "response") write(event.response);
    else if (event.type === "usage") console.log(`\\n[${event.usage.total_tokens} tokens]`);
    else if (event.type === "error") throw new Error(event.message);
  }
}
"""


@dataclass(frozen=True, slots=True)
class _Call:
    """One call, rendered in each client's words (the templates above, filled with %)."""

    base_url: str
    deployment: str
    variant: str | None  # named only when it is not the default variant
    release_tag: str | None  # what Vellum is told: the variant, the default included
    inputs: dict[str, Any]
    key: str  # the environment variable holding the API key
    end_user: str
    metadata: dict[str, Any]

    def fetch_hive_body(self, streaming: bool) -> dict[str, Any]:
        """The Fetch Hive invoke body (WIRE.md §1)."""
        body: dict[str, Any] = {"deployment": self.deployment}
        if self.variant is not None:
            body["variant"] = self.variant
        body["inputs"] = self.inputs
        if streaming:
            body["streaming"] = True
        return body | {"user": self.end_user, "metadata": self.metadata}

    def curl(self) -> str:
        body = json.dumps(self.fetch_hive_body(streaming=False), indent=2, ensure_ascii=False)
        url = _shell_quote(self.base_url + "/v1/prompt/invoke")
        return CURL % {"url": url, "key": self.key, "body": _shell_quote(body)}

    def python_fetch_hive(self) -> str:
        variant = f"    variant={_py(self.variant)},\n" if self.variant is not None else ""
        return PYTHON_FETCH_HIVE % {
            **self._python_common(),
            "url": _py(self.base_url + "/v1"),
            "variant": variant,
        }

    def python_vellum(self) -> str:
        def kind(value: Any) -> str:
            return "StringInputRequest" if isinstance(value, str) else "JsonInputRequest"

        kinds = {kind(value) for value in self.inputs.values()}
        typed = "".join(
            f"    {kind(value)}(name={_py(name)}, value={_py(value)}),\n"
            for name, value in self.inputs.items()
        )
        if self.release_tag is not None:
            tag = f"    release_tag={_py(self.release_tag)},  # the variant\n"
        else:
            tag = "    # no release_tag: the deployment's current release, its default variant (LATEST)\n"
        return PYTHON_VELLUM % {
            **self._python_common(),
            "imports": ", ".join(sorted(kinds | {"Vellum", "VellumEnvironment"})),
            "url": _py(self.base_url),
            "inputs": f"[\n{typed}]" if typed else "[]",
            "release_tag": tag,
        }

    def python_openai(self) -> str:
        model = self.deployment + (f"@{self.variant}" if self.variant is not None else "")
        return PYTHON_OPENAI % {
            **self._python_common(),
            "url": _py(self.base_url + "/v1"),
            "model": _py(model),
        }

    def _python_common(self) -> dict[str, str]:
        return {
            "key": self.key,
            "inputs": _py_block(self.inputs),
            "deployment": _py(self.deployment),
            "user": _py(self.end_user),
            "metadata": _py(self.metadata),
        }

    def js_fetch(self) -> str:
        body = json.dumps(self.fetch_hive_body(streaming=True), indent=2, ensure_ascii=False)
        return JS_FETCH % {
            "deployment": self.deployment,
            "key": self.key,
            "fill_in": KEY_TO_FILL_IN,
            "url": json.dumps(self.base_url + "/v1/prompt/invoke"),
            "body": body.replace("\n", "\n  "),
        }


def _shell_quote(text: str) -> str:
    """Single quotes for a shell; a single quote inside becomes '\\''."""
    return "'" + text.replace("'", "'\\''") + "'"


def _py(value: Any) -> str:
    """A Python literal for a JSON value (JSON's string escapes are Python's too)."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_py(str(k))}: {_py(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_py(v) for v in value) + "]"
    return _py(str(value))


def _py_block(values: Mapping[str, Any]) -> str:
    """A dict literal with one key a line, for the values a reader is meant to edit."""
    if not values:
        return "{}"
    return "{\n" + "".join(f"    {_py(name)}: {_py(value)},\n" for name, value in values.items()) + "}"
