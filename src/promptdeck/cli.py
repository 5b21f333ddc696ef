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

from promptdeck.cli_lifecycle import register as register_lifecycle
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


async def _bootstrap(settings: Settings, key_file: Path | None = None) -> tuple[str, str]:
    """Migrate, make sure a workspace exists, and return (workspace id, admin key).
    With `key_file`, a still-valid key saved there is reused instead of creating one."""
    import asyncio

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
            _write_private(key_file, secret)
        return workspace_id, secret
    finally:
        await db.dispose()


def _write_private(path: Path, secret: str) -> None:
    """A secret in a file only its owner can read, from the moment it exists."""
    from promptdeck.store.database import create_private_file

    create_private_file(path)
    path.chmod(0o600)  # a file left from before may have been readable by others
    path.write_text(secret + "\n")


async def _ensure_owner(
    settings: Settings, workspace_id: str, email: str, password_file: Path | None = None
) -> tuple[str, str | None]:
    """Create the console's first owner, with a one-time password, when the workspace has no
    member; returns (owner email, that password or None when the owner existed already).
    With `password_file`, the password is saved there and shown again while it is unchanged."""
    from promptdeck.domain.members import one_time_password
    from promptdeck.store.console_members import MemberStore
    from promptdeck.store.database import create_engine

    db = create_engine(settings.database_url)
    try:
        members = MemberStore(db)
        owner = await members.first_owner(workspace_id)
        if owner is not None:
            saved = password_file.read_text().strip() if password_file and password_file.exists() else ""
            if saved and owner.must_change_password and await members.still_has_password(owner, saved):
                return owner.email, saved
            if password_file is not None:
                password_file.unlink(missing_ok=True)  # changed since: no longer worth keeping
            return owner.email, None
        password = one_time_password()
        owner = await members.create(workspace_id, email, password, "owner", must_change_password=True)
        if password_file is not None:
            _write_private(password_file, password)
        return owner.email, password
    finally:
        await db.dispose()


def _owner_email_default() -> str:
    return os.environ.get("PROMPTDECK_OWNER_EMAIL", "owner@localhost")


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

    settings = _settings()

    async def go() -> tuple[str, str, str | None]:
        workspace_id, secret = await _bootstrap(settings)
        owner, password = await _ensure_owner(settings, workspace_id, email or _owner_email_default())
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
) -> None:
    """Serve the API (migrating the database first)."""
    from promptdeck.store.database import migrate

    settings = _settings()
    migrate(settings.database_url)
    _serve(settings, host or settings.host, port or settings.port)


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


def _serve(settings: Settings, host: str, port: int) -> None:
    from promptdeck.app import create_app
    from promptdeck.serving import logging_config, raise_open_file_limit, run, server_config

    config = server_config(
        create_app(settings),
        settings,
        host,
        port,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        log_level=settings.log_level,
        log_config=logging_config(settings.log_level, settings.log_format),
    )
    raise_open_file_limit(settings.max_connections)  # after the config: its logging is set up then
    run(config)


@app.command()
def quickstart(
    example: Path = typer.Option(Path("examples/summarize.yaml"), help="Prompt file to seed."),
    host: str = typer.Option(None),
    port: int = typer.Option(None),
) -> None:
    """Set everything up for a first look (database, workspace, key, example prompt) and serve."""
    import asyncio

    settings = _settings()
    host, port = host or settings.host, port or settings.port
    if not example.is_file():
        _fail(f"no prompt file at {example}; run from the repository root or pass --example FILE")
    key, owner, password = asyncio.run(_seed(settings, example))
    url = f"http://{host}:{port}"
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


async def _seed(settings: Settings, example: Path) -> tuple[str, str, str | None]:
    """(admin key, console owner's email, their one-time password while it is unchanged)."""
    from promptdeck.domain.promptfile import load_prompt_file
    from promptdeck.store.database import create_engine
    from promptdeck.store.prompt_sync import PromptSync

    workspace_id, key = await _bootstrap(settings, settings.data_dir / "dev-admin-key")
    owner, password = await _ensure_owner(
        settings, workspace_id, _owner_email_default(), settings.data_dir / "dev-owner-password"
    )
    document = load_prompt_file(example.read_text(), str(example))
    db = create_engine(settings.database_url)
    try:
        await PromptSync(db).push(workspace_id, document, actor="quickstart")
    finally:
        await db.dispose()
    return key, owner, password


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
        False, "--force", help="Publish even if the prompt has versions newer than a file's `version`."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print what would change; change nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print the server's report as JSON."),
) -> None:
    """Create or update prompts from files: a new version only if the content changed,
    then move the named variants. Safe to run again. A folder is applied all or nothing."""
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
    params = {"force": "true" if force else "false", "dry_run": "true" if dry_run else "false"}
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
        if not move["changed"]:
            lines.append(f"{target} -> version {move['version']}: unchanged")
        elif not dry_run:
            done = "created" if move.get("from_version") is None else "moved"
            lines.append(f"{target} -> version {move['version']}: {done}")
        elif move.get("from_version") is None:
            lines.append(f"{target}: will be created at version {move['version']}")
        else:
            lines.append(f"{target}: will move from version {move['from_version']} to {move['version']}")
    for line in lines:
        out.print(indent + line, highlight=False)


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
) -> None:
    """Recreate an exported workspace's prompts, versions and deployments in this one: all or
    nothing, refused if any prompt slug or deployment name already exists here."""
    with _server() as client:
        result = _check(
            client.post(
                "/api/import", content=file.read_bytes(), headers={"Content-Type": "application/gzip"}
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
