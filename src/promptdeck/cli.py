"""The `promptdeck` command: init, serve, quickstart, push, invoke."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.markup import escape

from promptdeck.config import Settings
from promptdeck.domain.errors import PromptdeckError
from promptdeck.domain.promptfile import load_prompt_file

app = typer.Typer(help="promptdeck: store, version, deploy and invoke prompts.", no_args_is_help=True)
# No wrapping: a `file:line:` error or a key must stay on one line in logs and pipes.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _fail(message: str) -> None:
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    raise typer.Exit(1)


async def _bootstrap(settings: Settings, key_file: Path | None = None) -> tuple[str, str]:
    """Migrate, make sure a workspace exists, and return (workspace id, admin key).
    With `key_file`, a still-valid key saved there is reused instead of creating one."""
    from promptdeck.domain.keys import hash_key
    from promptdeck.store.access import AccessStore
    from promptdeck.store.database import create_engine, migrate

    await asyncio.to_thread(migrate, settings.database_url)
    db = create_engine(settings.database_url)
    try:
        access = AccessStore(db)
        workspace_id = await access.first_workspace()
        if key_file is not None and key_file.exists():
            saved = key_file.read_text().strip()
            found = await access.find_by_hash(hash_key(saved))
            if found is not None and found.revoked_at is None:
                return workspace_id, saved
        _, secret = await access.create_key(workspace_id, "admin", ["admin"])
        if key_file is not None:
            key_file.parent.mkdir(parents=True, exist_ok=True)
            key_file.write_text(secret + "\n")
            key_file.chmod(0o600)
        return workspace_id, secret
    finally:
        await db.dispose()


@app.command()
def init(as_json: bool = typer.Option(False, "--json", help='Print {"api_key": ...} only.')) -> None:
    """Migrate the database, create the first workspace if none, and print a new admin key."""
    settings = Settings()
    _, secret = asyncio.run(_bootstrap(settings))
    if as_json:
        print(json.dumps({"api_key": secret}))
    else:
        out.print(f"Database ready: {settings.database_url}")
        out.print(f"Admin API key (shown once): [bold]{secret}[/bold]")


@app.command()
def serve(
    host: str = typer.Option(None, help="Address to listen on (default PROMPTDECK_HOST or 127.0.0.1)."),
    port: int = typer.Option(None, help="Port (default PROMPTDECK_PORT or 8400)."),
) -> None:
    """Serve the API (migrating the database first)."""
    from promptdeck.store.database import migrate

    settings = Settings()
    migrate(settings.database_url)
    _serve(settings, host or settings.host, port or settings.port)


@app.command()
def prune(
    batch_size: int = typer.Option(1000, min=1, help="Runs deleted per transaction."),
    as_json: bool = typer.Option(False, "--json", help='Print {"deleted": {workspace id: runs}} only.'),
) -> None:
    """Delete runs older than each workspace's retention period (PUT /api/settings/retention),
    with their metadata and feedback, in batches. The server also does this hourly."""
    deleted = asyncio.run(_prune(Settings(), batch_size))
    if as_json:
        print(json.dumps({"deleted": deleted}))
        return
    total = sum(deleted.values())
    out.print(f"pruned {total} run(s) in {len(deleted)} workspace(s) with a retention period")


async def _prune(settings: Settings, batch_size: int) -> dict[str, int]:
    from promptdeck.store.database import create_engine, migrate
    from promptdeck.store.retention import RetentionStore

    await asyncio.to_thread(migrate, settings.database_url)
    db = create_engine(settings.database_url)
    try:
        return await RetentionStore(db).prune(batch_size=batch_size)
    finally:
        await db.dispose()


def _serve(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    from promptdeck.app import create_app

    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        http="httptools",
        access_log=False,
        log_level=os.environ.get("PROMPTDECK_LOG_LEVEL", "info"),
        timeout_graceful_shutdown=30,
    )


@app.command()
def quickstart(
    example: Path = typer.Option(Path("examples/summarize.yaml"), help="Prompt file to seed."),
    host: str = typer.Option(None),
    port: int = typer.Option(None),
) -> None:
    """Set everything up for a first look (database, workspace, key, example prompt) and serve."""
    settings = Settings()
    host, port = host or settings.host, port or settings.port
    if not example.is_file():
        _fail(f"no prompt file at {example}; run from the repository root or pass --example FILE")
    key = asyncio.run(_seed(settings, example))
    url = f"http://{host}:{port}"
    body = '{"deployment": "summarize", "inputs": {"text": "The quick brown fox jumps over the lazy dog."}}'
    out.print(
        f"""
[bold green]promptdeck is starting at {url}[/bold green]
  admin API key : [bold]{key}[/bold]  (saved in {settings.data_dir / "dev-admin-key"})
  API docs      : {url}/docs

Try it:
  curl -s {url}/v1/prompt/invoke -H 'Authorization: Bearer {key}' \\
       -H 'Content-Type: application/json' -d '{body}'

  python -c "from fetch_hive_sdk import FetchHive; \\
print(FetchHive(api_key='{key}', base_url='{url}/v1').invoke_prompt(deployment='summarize', \\
inputs={{'text': 'The quick brown fox jumps over the lazy dog.'}})['response'])"
""",
        highlight=False,
        soft_wrap=True,
    )
    _serve(settings, host, port)


async def _seed(settings: Settings, example: Path) -> str:
    from promptdeck.store.catalog import CatalogStore
    from promptdeck.store.database import create_engine

    workspace_id, key = await _bootstrap(settings, settings.data_dir / "dev-admin-key")
    document = load_prompt_file(example.read_text(), str(example))
    db = create_engine(settings.database_url)
    try:
        await CatalogStore(db).push(workspace_id, document, actor="quickstart")
    finally:
        await db.dispose()
    return key


def _client() -> httpx.Client:
    url = os.environ.get("PROMPTDECK_URL", "http://127.0.0.1:8400")
    key = os.environ.get("PROMPTDECK_API_KEY", "")
    if not key:
        _fail("set PROMPTDECK_API_KEY to an API key (promptdeck init prints one)")
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=300)


def _check(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            body = response.json()
            error = body.get("error")
            message = error.get("message") if isinstance(error, dict) else body.get("message", error)
        except ValueError:
            message = response.text
        _fail(f"the server answered {response.status_code}: {message}")
    return response.json()


@app.command()
def push(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="A prompt file (YAML)."),
    as_json: bool = typer.Option(False, "--json", help="Print the server's report as JSON."),
) -> None:
    """Create or update a prompt from a file: a new version only if the content changed,
    then move the named variants. Safe to run again."""
    try:
        document = load_prompt_file(file.read_text(), str(file))
    except PromptdeckError as exc:
        _fail(exc.message)
    try:
        with _client() as client:
            report = _check(client.post("/api/push", json=document))
    except httpx.HTTPError as exc:
        _fail(f"cannot reach the server: {exc}")
    if as_json:
        print(json.dumps(report))
        return
    prompt = report["prompt"]
    out.print(f"prompt {prompt}: " + ("created" if report["prompt_created"] else "exists"))
    out.print(f"version {report['version']}: " + ("created" if report["version_created"] else "unchanged"))
    for move in report["variants"]:
        state = "moved" if move["changed"] else "unchanged"
        out.print(f"{move['deployment']}@{move['variant']} -> version {move['version']}: {state}")


@app.command()
def invoke(
    deployment: str = typer.Argument(...),
    variant: str = typer.Option(None, help="Variant to run (default: the deployment's default)."),
    inputs: list[str] = typer.Option([], "--input", "-i", help="A text input as name=value (repeatable)."),
    json_inputs: list[str] = typer.Option(
        [], "--json-input", "-j", help="An input whose value is JSON, e.g. -j count=3 (repeatable)."
    ),
    stream: bool = typer.Option(False, "--stream", help="Print the answer as it is generated."),
) -> None:
    """Invoke a deployment over the Fetch Hive API and print the answer."""
    values: dict[str, Any] = {}
    for item, is_json in [(i, False) for i in inputs] + [(j, True) for j in json_inputs]:
        name, sep, value = item.partition("=")
        if not sep:
            _fail(f"an input is name=value; got {item!r}")
        try:
            values[name] = json.loads(value) if is_json else value
        except json.JSONDecodeError as exc:
            _fail(f"the value of {name!r} is not JSON: {exc}")
    body: dict[str, Any] = {"deployment": deployment, "inputs": values, "streaming": stream}
    if variant:
        body["variant"] = variant
    try:
        with _client() as client:
            if not stream:
                print(_check(client.post("/v1/prompt/invoke", json=body))["response"])
                return
            with client.stream("POST", "/v1/prompt/invoke", json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    _check(response)
                _print_stream(response)
    except httpx.HTTPError as exc:
        _fail(f"cannot reach the server: {exc}")


def _print_stream(response: httpx.Response) -> None:
    for line in response.iter_lines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        event = json.loads(line[6:])
        if event["type"] == "response":
            sys.stdout.write(event["response"])
            sys.stdout.flush()
        elif event["type"] == "error":
            print()
            _fail(event["message"])
    print()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
