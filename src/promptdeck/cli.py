"""The `promptdeck` command: init, serve, quickstart, push, pull, export, import, invoke.

Every command starts a new process, so this module imports only what building the command
line needs: the server, the settings (pydantic), httpx, the database and the prompt-file
parser are imported inside the commands that use them (tests/test_cli.py checks `--help`)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape

from promptdeck.cli_audit import register as register_audit
from promptdeck.cli_datasets import register as register_datasets
from promptdeck.cli_evaluations import register as register_evaluations
from promptdeck.cli_keys import register as register_keys
from promptdeck.cli_lifecycle import register as register_lifecycle
from promptdeck.cli_quotas import register as register_quotas
from promptdeck.cli_webhooks import register as register_webhooks
from promptdeck.cli_workspaces import register as register_workspaces
from promptdeck.domain.errors import PromptdeckError

if TYPE_CHECKING:
    import httpx

    from promptdeck.config import Settings

app = typer.Typer(help="promptdeck: store, version, deploy and invoke prompts.", no_args_is_help=True)
# No wrapping: a `file:line:` error or a key must stay on one line in logs and pipes.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _fail(message: str) -> None:
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    raise typer.Exit(1)


def _settings() -> Settings:
    """The settings from the environment; a value they cannot use ends the command (status 2)."""
    from promptdeck.config import Settings, SettingsError

    try:
        return Settings()
    except SettingsError as exc:
        for problem in exc.problems:
            err.print(f"[red]error:[/red] {escape(problem)}", highlight=False)
        raise typer.Exit(2) from None


@app.command()
def init(
    as_json: bool = typer.Option(
        False, "--json", help='Print {"api_key": ..., "email": ..., "password": ...} only.'
    ),
    email: str = typer.Option(
        None, help="The first console owner's email (default PROMPTDECK_OWNER_EMAIL or owner@localhost)."
    ),
) -> None:
    """Migrate the database, create the first workspace if none, print a new admin key, and
    create the console's first owner (with a one-time password) if there is no member."""
    import asyncio

    from promptdeck.workspace_setup import bootstrap, ensure_owner, owner_email_default

    settings = _settings()

    async def go() -> tuple[str, str, str | None]:
        workspace_id, secret = await bootstrap(settings)
        owner, password = await ensure_owner(settings, workspace_id, email or owner_email_default())
        return secret, owner, password

    try:
        secret, owner, password = asyncio.run(go())
    except PromptdeckError as exc:
        _fail(exc.message)
    if as_json:
        print(json.dumps({"api_key": secret, "email": owner, "password": password}))
        return
    out.print(f"Database ready: {settings.database_url}")
    out.print(f"Admin API key (shown once): [bold]{secret}[/bold]")
    if password is None:
        out.print(f"Console owner: {owner} (already exists; their password is unchanged)")
    else:
        out.print(
            f"Console owner: {owner}, one-time password: [bold]{password}[/bold] (change it at first sign-in)"
        )


@app.command()
def serve(
    host: str = typer.Option(None, help="Address to listen on (default PROMPTDECK_HOST or 127.0.0.1)."),
    port: int = typer.Option(None, help="Port (default PROMPTDECK_PORT or 8400)."),
    workers: int = typer.Option(
        None, min=1, help="Server processes sharing the port (default PROMPTDECK_WORKERS or 1)."
    ),
) -> None:
    """Serve the API (migrating the database first, once)."""
    from promptdeck.store.database import migrate_apart

    settings = _settings()
    migrate_apart(settings.database_url)  # in a child: alembic stays out of the server's memory
    _serve(settings, host or settings.host, port or settings.port, workers or settings.workers)


@app.command()
def prune(
    batch_size: int = typer.Option(1000, min=1, help="Runs deleted per transaction."),
    as_json: bool = typer.Option(False, "--json", help='Print {"deleted": {workspace id: runs}} only.'),
) -> None:
    """Delete runs older than each workspace's retention period (PUT /api/settings/retention),
    with their metadata and feedback, in batches. The server also does this hourly."""
    import asyncio

    deleted = asyncio.run(_prune(_settings(), batch_size))
    if as_json:
        print(json.dumps({"deleted": deleted}))
        return
    total = sum(deleted.values())
    out.print(f"pruned {total} run(s) in {len(deleted)} workspace(s) with a retention period")


async def _prune(settings: Settings, batch_size: int) -> dict[str, int]:
    import asyncio

    from promptdeck.store.database import create_engine, migrate
    from promptdeck.store.retention import RetentionStore

    await asyncio.to_thread(migrate, settings.database_url)
    db = create_engine(settings.database_url)
    try:
        return await RetentionStore(db).prune(batch_size=batch_size)
    finally:
        await db.dispose()


def _serve(settings: Settings, host: str, port: int, workers: int = 1) -> None:
    """Serve in this process, or in `workers` processes on one port (serving_workers.py): each
    builds its own app from the modules imported here, before the fork."""
    import socket

    from promptdeck.app import create_app
    from promptdeck.services import Services
    from promptdeck.serving import logging_config, raise_open_file_limit, run, server_config
    from promptdeck.serving_workers import serve_workers

    log_config = logging_config(settings.log_level, settings.log_format)

    def serve_one(sock: socket.socket | None, worker_bus: Path | None) -> None:
        config = server_config(
            create_app(settings, Services.build(settings, worker_bus)),
            settings,
            host,
            port,
            loop="uvloop" if sys.platform != "win32" else "asyncio",
            log_level=settings.log_level,
            log_config=log_config,
        )
        raise_open_file_limit(settings.max_connections)  # after the config: its logging is set up then
        run(config, [sock] if sock is not None else None)

    if workers == 1:
        serve_one(None, None)
    else:
        raise typer.Exit(serve_workers(settings, host, port, workers, serve_one, log_config))


@app.command()
def quickstart(
    example: Path = typer.Option(Path("examples/summarize.yaml"), help="Prompt file to seed."),
    host: str = typer.Option(None),
    port: int = typer.Option(None),
) -> None:
    """Set everything up for a first look (database, workspace, key, example prompt) and serve.
    The example is seeded only if its prompt does not exist: running it again changes nothing."""
    import asyncio

    from promptdeck.workspace_setup import example_slug, seed_example

    settings = _settings()
    host, port = host or settings.host, port or settings.port
    if not example.is_file():
        _fail(f"no prompt file at {example}; run from the repository root or pass --example FILE")
    key, owner, password, seeded = asyncio.run(seed_example(settings, example))
    url = f"http://{host}:{port}"
    slug = example_slug(example)
    if seeded:
        out.print(f"seeded the example prompt {slug!r} from {example}")
    else:
        out.print(f"kept your prompt {slug!r} as it is (the example seeds only what does not exist)")
    if password is None:
        sign_in = f"{owner} (your own password)"
    else:
        sign_in = (
            f"{owner}, one-time password [bold]{password}[/bold]\n"
            f"                  (saved in {settings.data_dir / 'dev-owner-password'} until you change it)"
        )
    body = '{"deployment": "summarize", "inputs": {"text": "The quick brown fox jumps over the lazy dog."}}'
    out.print(
        f"""
[bold green]promptdeck is starting at {url}[/bold green]
  admin API key : [bold]{key}[/bold]  (saved in {settings.data_dir / "dev-admin-key"})
  console       : {url}/  sign in as {sign_in}
  API docs      : {url}/docs

Try it:
  curl -s {url}/v1/prompt/invoke -H 'Authorization: Bearer {key}' \\
       -H 'Content-Type: application/json' -d '{body}'

  {_this_python()} -c "from fetch_hive_sdk import FetchHive; \\
print(FetchHive(api_key='{key}', base_url='{url}/v1').invoke_prompt(deployment='summarize', \\
inputs={{'text': 'The quick brown fox jumps over the lazy dog.'}})['response'])"
""",
        highlight=False,
        soft_wrap=True,
    )
    _serve(settings, host, port)


def _this_python() -> str:
    """This virtualenv's Python, as a path to type from here (the clients are installed in it)."""
    path = Path(sys.executable)
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


@contextlib.contextmanager
def _server() -> Iterator[httpx.Client]:
    """A client of the server at PROMPTDECK_URL, with PROMPTDECK_API_KEY. A server that cannot
    be reached ends the command with a message that names the URL tried."""
    import httpx

    url = os.environ.get("PROMPTDECK_URL", "http://127.0.0.1:8400")
    key = os.environ.get("PROMPTDECK_API_KEY", "")
    if not key:
        _fail("set PROMPTDECK_API_KEY to an API key (promptdeck init prints one)")
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=300) as client:
            yield client
    except httpx.HTTPError as exc:
        _fail(f"cannot reach the server at {url} (PROMPTDECK_URL): {exc}")


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
    path: Path = typer.Argument(
        ..., exists=True, help="A prompt file (YAML), or a folder of them (*.yaml, *.yml, recursively)."
    ),
    force: bool = typer.Option(
        False,
        "--force",
        help="Publish even if the prompt has versions newer than a file's `version`; with --reason, "
        "make moves the release check refuses.",
    ),
    reason: str = typer.Option("", "--reason", help="Why a forced move is safe (kept in the history)."),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Print every move it would make and the release check's verdict; change nothing.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the server's report as JSON."),
) -> None:
    """Create or update prompts from files: a new version only if the content changed,
    then move the named variants, each through the release check. Safe to run again. A folder
    is applied all or nothing."""
    from promptdeck.domain.promptfile import load_prompt_file

    files = _prompt_files(path)
    documents, problems = [], []
    for file in files:
        try:
            documents.append(load_prompt_file(file.read_text(), str(file)))
        except PromptdeckError as exc:
            problems.append(exc.message)
    if problems:
        _fail("\n".join(problems))
    if not files:
        _fail(f"no prompt files (*.yaml, *.yml) in {path}")
    params = {
        "force": "true" if force else "false",
        "dry_run": "true" if dry_run else "false",
        "reason": reason,
    }
    with _server() as client:
        if path.is_dir():
            body = {"documents": documents, "names": [str(f) for f in files]}
            result = _check(client.post("/api/push/batch", json=body, params=params))
        else:
            result = _check(client.post("/api/push", json=documents[0], params=params))
    if as_json:
        print(json.dumps(result))
        return
    if not path.is_dir():
        _print_report(result, dry_run, "")
    else:
        for file, report in zip(files, result["reports"], strict=True):
            out.print(f"{file}:", highlight=False)
            _print_report(report, dry_run, "  ")
    if dry_run:
        out.print("dry run: nothing was changed")


def _prompt_files(path: Path) -> list[Path]:
    if not path.is_dir():
        return [path]
    return sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())


def _print_report(report: dict[str, Any], dry_run: bool, indent: str) -> None:
    done = "will be created" if dry_run else "created"
    lines = [
        f"prompt {report['prompt']}: " + (done if report["prompt_created"] else "exists"),
        f"version {report['version']}: " + (done if report["version_created"] else "unchanged"),
    ]
    for move in report["variants"]:
        target = f"{move['deployment']}@{move['variant']}"
        why = " (follows latest)" if move.get("follows_latest") else ""
        if not move["changed"]:
            lines.append(f"{target} -> version {move['version']}: unchanged{why}")
        elif not dry_run:
            done = "created" if move.get("from_version") is None else "moved"
            lines.append(f"{target} -> version {move['version']}: {done}{why}")
        elif move.get("from_version") is None:
            lines.append(f"{target}: will be created at version {move['version']}{why}")
        else:
            lines.append(f"{target}: will move from version {move['from_version']} to {move['version']}{why}")
        check = move.get("check")
        if dry_run and check and move["changed"]:
            lines[-1] += ", passes the release check" if check["safe"] else ", REFUSED by the release check"
            lines += [f"  {problem}" for problem in _check_problems(check)]
    updated = "will be updated" if dry_run else "updated"
    lines += [f"dataset {name}: {updated}" for name in report.get("datasets", [])]
    for line in lines:
        out.print(indent + line, highlight=False)


def _check_problems(report: dict[str, Any]) -> list[str]:
    """A release report's problems, one line each (docs/releases.md)."""
    from promptdeck.domain.promotion import explain

    return [part for part in explain(report).split("; ") if part]


@app.command()
def pull(
    folder: Path = typer.Argument(..., file_okay=False, help="Folder to write <slug>.yaml files into."),
) -> None:
    """Write every prompt of the workspace (its newest version and the variants serving it)
    as DIR/<slug>.yaml; pushing them back changes nothing."""
    from promptdeck.domain.prompt_sync import dump_prompt_file

    with _server() as client:
        documents = _check(client.get("/api/pull"))["documents"]
    folder.mkdir(parents=True, exist_ok=True)
    for document in documents:
        file = folder / f"{document['prompt']}.yaml"
        file.write_text(dump_prompt_file(document), encoding="utf-8")
        out.print(f"{file}: version {document['version']}", highlight=False)


@app.command("export")
def export_workspace(file: Path = typer.Argument(..., dir_okay=False, help="The .tar.gz to write.")) -> None:
    """Save the workspace's prompts (every version), deployments and variants in one archive.
    Runs, API keys and provider credentials are not included."""
    with _server() as client:
        response = client.get("/api/export")
        if response.status_code >= 400:
            _check(response)
    file.write_bytes(response.content)
    out.print(f"exported the workspace to {file}", highlight=False)


@app.command("import")
def import_workspace(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="An archive from `export`."),
    as_json: bool = typer.Option(False, "--json", help="Print the server's report as JSON."),
    force: bool = typer.Option(False, "--force", help="Import variants the release check refuses."),
    reason: str = typer.Option("", "--reason", help="With --force: why (kept in the history)."),
) -> None:
    """Recreate an exported workspace's prompts, versions and deployments in this one: all or
    nothing, refused if any prompt slug or deployment name already exists here, or if the
    release check refuses a variant (docs/releases.md) unless forced with a reason."""
    with _server() as client:
        result = _check(
            client.post(
                "/api/import",
                content=file.read_bytes(),
                headers={"Content-Type": "application/gzip"},
                params={"force": "true" if force else "false", "reason": reason},
            )
        )
    if as_json:
        print(json.dumps(result))
        return
    counts = result["imported"]
    out.print(
        f"imported {counts['prompts']} prompt(s), {counts['versions']} version(s), "
        f"{counts['deployments']} deployment(s), {counts['variants']} variant(s)"
    )


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
    with _server() as client:
        if not stream:
            print(_check(client.post("/v1/prompt/invoke", json=body))["response"])
            return
        with client.stream("POST", "/v1/prompt/invoke", json=body) as response:
            if response.status_code >= 400:
                response.read()
                _check(response)
            _print_stream(response)


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


register_lifecycle(app, _server, _check, _fail)
register_audit(app, _server, _check, _fail)
register_webhooks(app, _server, _check, _fail)
register_keys(app, _server, _check, _fail)
register_workspaces(app, _server, _check, _fail)
register_quotas(app, _server, _check, _fail)
register_datasets(app, _server, _check, _fail)
register_evaluations(app, _server, _check, _fail)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
