"""A workspace's prompts as data: the documents `promptdeck pull` writes, and the `.tar.gz`
archive of `GET /api/export` / `POST /api/import`.

The archive holds one member, `workspace.json`: every prompt with its full version history
(content, content hash, note, author, time), and every deployment with its variants (the
version each points at, whether it follows `latest`, and its config JSON). Never runs, API keys
or provider credentials. An import is all or nothing and refuses a prompt slug or deployment
name the workspace already has. Archives written before `follows_latest` had a column of its
own carry it inside the config JSON; an import reads either form.
"""

from __future__ import annotations

import gzip
import io
import tarfile
import zlib
from datetime import datetime
from typing import Any

import orjson

from promptdeck.domain.change_events import CatalogChanged
from promptdeck.domain.deployments import Version
from promptdeck.domain.errors import Conflict, PromptdeckError, ValidationFailed
from promptdeck.domain.prompt_sync import pulled_document
from promptdeck.domain.prompts import check_slug, parse_spec
from promptdeck.domain.reliability import parse_variant_config
from promptdeck.store import dataset_sync
from promptdeck.store.catalog import CatalogStore
from promptdeck.store.catalog_facts import recording
from promptdeck.store.deployments import config_data, deployment_row, insert_deployment
from promptdeck.store.prompts import insert_prompt, insert_version, prompt_row, require_prompt
from promptdeck.store.tables import prompt_versions, prompts, variants
from promptdeck.store.variant_moves import Release, release_move

FORMAT = "promptdeck-workspace"
FORMAT_VERSION = 1
MEMBER = "workspace.json"
MAX_MEMBER_BYTES = 64 * 1024 * 1024
FOLLOWS_LATEST = "follows_latest"


class WorkspaceArchive:
    def __init__(self, catalog: CatalogStore) -> None:
        self.catalog = catalog

    # ── pull ─────────────────────────────────────────────────────────────────

    async def pull_documents(self, workspace_id: str) -> list[dict[str, Any]]:
        """One prompt-file document per prompt that has a version, by slug."""
        deployments = await self.catalog.deployments.list_deployments(workspace_id)
        documents = []
        for prompt in await self.catalog.prompts.list_prompts(workspace_id):
            if prompt.latest_version is None:
                continue
            version = await self.catalog.prompts.get_version(workspace_id, prompt.slug, prompt.latest_version)
            serving = [d for d in deployments if d.prompt_id == prompt.id]
            document = pulled_document(prompt.slug, prompt.name, prompt.description, version, serving)
            async with self.catalog.engine.connect() as conn:
                if section := await dataset_sync.pulled_section(conn, prompt.id, prompt.slug):
                    document[dataset_sync.SECTION] = section
            documents.append(document)
        return documents

    # ── export ───────────────────────────────────────────────────────────────

    async def export(self, workspace_id: str) -> dict[str, Any]:
        catalog = self.catalog
        data: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION, "prompts": []}
        listed = await catalog.prompts.list_prompts(workspace_id)
        for prompt in listed:
            versions = await catalog.prompts.list_versions(workspace_id, prompt.slug)
            data["prompts"].append(
                {
                    "slug": prompt.slug,
                    "name": prompt.name,
                    "description": prompt.description,
                    "created_at": prompt.created_at.isoformat(),
                    "versions": [
                        {
                            "number": v.number,
                            "content_hash": v.spec.content_hash,
                            "note": v.note,
                            "author": v.author,
                            "created_at": v.created_at.isoformat(),
                            "content": v.spec.to_dict(),
                        }
                        for v in versions
                    ],
                }
            )
        slugs = {p.id: p.slug for p in listed}
        data["deployments"] = [
            {
                "name": d.name,
                "prompt": slugs[d.prompt_id],
                "default_variant": d.default_variant,
                "variants": {
                    name: {
                        "version": v.number,
                        FOLLOWS_LATEST: d.follows_latest(name),
                        "config": config_data(d.config(name)),
                    }
                    for name, v in sorted(d.variants.items())
                },
            }
            for d in await catalog.deployments.list_deployments(workspace_id)
        ]
        async with catalog.engine.connect() as conn:
            if datasets := await dataset_sync.exported(conn, slugs.items()):
                data[dataset_sync.SECTION] = datasets  # only when there are: older exports stay the same
        return data

    async def export_archive(self, workspace_id: str) -> bytes:
        return pack(await self.export(workspace_id))

    # ── import ───────────────────────────────────────────────────────────────

    async def import_archive(
        self, workspace_id: str, archive: bytes, actor: str = "", *, force: bool = False, reason: str = ""
    ) -> dict[str, int]:
        """Recreate every prompt, version (same numbers, same content hashes) and deployment of
        an archive in one transaction; refuses (409) names the workspace already has. Each variant
        passes the release check (docs/releases.md): refused unless forced with a reason."""
        release = Release(force=force, reason=reason)
        data = unpack(archive)
        check_archive(data)
        counts = {"prompts": 0, "versions": 0, "deployments": 0, "variants": 0}
        with recording() as facts:
            async with self.catalog.engine.begin() as conn:
                taken = [
                    f"prompt {p['slug']!r}"
                    for p in data["prompts"]
                    if await prompt_row(conn, workspace_id, p["slug"]) is not None
                ] + [
                    f"deployment {d['name']!r}"
                    for d in data["deployments"]
                    if await deployment_row(conn, workspace_id, d["name"]) is not None
                ]
                if taken:
                    raise Conflict(
                        "the workspace already has " + ", ".join(taken) + "; nothing was imported",
                        details=taken,
                    )
                versions: dict[tuple[str, int], Version] = {}
                prompt_ids: dict[str, str] = {}
                for p in data["prompts"]:
                    prompt_id = await insert_prompt(
                        conn, workspace_id, p["slug"], p["name"], p["description"]
                    )
                    await conn.execute(
                        prompts.update()
                        .where(prompts.c.id == prompt_id)
                        .values(created_at=_time(p["created_at"]))
                    )
                    prompt = await require_prompt(conn, workspace_id, p["slug"])
                    prompt_ids[p["slug"]] = prompt.id
                    counts["prompts"] += 1
                    for v in p["versions"]:
                        version = await insert_version(
                            conn, prompt, parse_spec(v["content"]), v["note"], v["author"]
                        )
                        await conn.execute(
                            prompt_versions.update()
                            .where(prompt_versions.c.id == version.id)
                            .values(created_at=_time(v["created_at"]))
                        )
                        versions[(p["slug"], v["number"])] = version
                        counts["versions"] += 1
                for d in data["deployments"]:
                    deployment_id = await insert_deployment(
                        conn, workspace_id, d["name"], prompt_ids[d["prompt"]], d["default_variant"]
                    )
                    row = await deployment_row(conn, workspace_id, d["name"])
                    counts["deployments"] += 1
                    for name, target in d["variants"].items():
                        given = target.get("config") or {}
                        config = {k: v for k, v in given.items() if k != FOLLOWS_LATEST}
                        await release_move(  # the name's recent runs judge it (runs outlive a deletion)
                            conn,
                            workspace_id,
                            row,
                            name,
                            versions[(d["prompt"], target["version"])],
                            actor,
                            "import",
                            _follows_latest(target),
                            release,
                            "importing",
                        )
                        await conn.execute(
                            variants.update()
                            .where(variants.c.deployment_id == deployment_id, variants.c.name == name)
                            .values(config=config or None)
                        )
                        counts["variants"] += 1
                if dataset_sync.SECTION in data:  # archives made before datasets have none
                    made = await dataset_sync.imported(
                        conn, workspace_id, data[dataset_sync.SECTION], prompt_ids
                    )
                    counts["datasets"], counts["cases"] = made
        self.catalog.changes.publish(CatalogChanged(workspace_id, tuple(facts)))
        return counts


def _follows_latest(target: dict[str, Any]) -> bool:
    """A variant's `follows_latest`: beside its config, or (older archives) inside it."""
    config = target.get("config")
    inside = isinstance(config, dict) and config.get(FOLLOWS_LATEST) is True
    return target.get(FOLLOWS_LATEST) is True or inside


def pack(data: dict[str, Any]) -> bytes:
    """A deterministic `.tar.gz` (fixed times and owners) holding `workspace.json`."""
    body = orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(MEMBER)
        info.size, info.mode, info.mtime = len(body), 0o644, 0
        tar.addfile(info, io.BytesIO(body))
    return gzip.compress(tar_bytes.getvalue(), mtime=0)


def _bad(reason: str) -> ValidationFailed:
    return ValidationFailed(f"not a promptdeck workspace archive: {reason}")


def unpack(archive: bytes) -> Any:
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            try:
                member = tar.getmember(MEMBER)
            except KeyError:
                raise _bad(f"it has no {MEMBER}") from None
            if not member.isfile() or member.size > MAX_MEMBER_BYTES:
                raise _bad(f"{MEMBER} is not a regular file of at most {MAX_MEMBER_BYTES} bytes")
            extracted = tar.extractfile(member)
            body = extracted.read() if extracted is not None else b""
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise _bad(f"not a readable .tar.gz ({exc})") from exc
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _bad(f"{MEMBER} is not JSON ({exc})") from exc


def check_archive(data: Any) -> None:
    """Every problem of an unpacked archive at once; nothing is written before this passes."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise _bad(f"{MEMBER} is not a {FORMAT} document")
    if data.get("format_version") != FORMAT_VERSION:
        raise _bad(f"format_version {data.get('format_version')!r} (this server reads {FORMAT_VERSION})")
    if not isinstance(data.get("prompts"), list) or not isinstance(data.get("deployments"), list):
        raise _bad("it needs the lists prompts and deployments")
    problems: list[str] = []
    numbers: dict[str, set[int]] = {}

    def check(where: str, step: Any) -> Any:
        try:
            return step()
        except PromptdeckError as exc:
            problems.append(f"{where}: {exc.message}")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            problems.append(f"{where}: malformed ({exc!r})")
        return None

    for i, p in enumerate(data["prompts"]):
        where = f"prompts[{i}]"
        slug = check(where, lambda p=p: check_slug(p["slug"], "prompt slug"))
        if slug is None:
            continue
        where = f"prompt {slug!r}"
        if slug in numbers:
            problems.append(f"{where}: appears twice")
            continue
        check(where, lambda p=p: [str(p["name"]), str(p["description"]), _time(p["created_at"])])
        versions = p.get("versions")
        if not isinstance(versions, list) or [
            v.get("number") if isinstance(v, dict) else None for v in versions
        ] != list(range(1, len(versions) + 1)):
            problems.append(f"{where}: versions must be numbered 1, 2, 3… in order")
            continue
        numbers[slug] = set(range(1, len(versions) + 1))
        for v in versions:
            at = f"{where} version {v['number']}"
            spec = check(at, lambda v=v: parse_spec(v["content"]))
            if spec is not None and spec.content_hash != v.get("content_hash"):
                problems.append(f"{at}: content does not match its content_hash")
            check(at, lambda v=v: [str(v["note"]), str(v["author"]), _time(v["created_at"])])

    names: set[str] = set()
    for i, d in enumerate(data["deployments"]):
        name = check(f"deployments[{i}]", lambda d=d: check_slug(d["name"], "deployment name"))
        if name is None:
            continue
        where = f"deployment {name!r}"
        if name in names:
            problems.append(f"{where}: appears twice")
            continue
        names.add(name)
        prompt = d.get("prompt")
        if prompt not in numbers:
            problems.append(f"{where}: serves prompt {prompt!r}, which the archive does not hold")
            continue
        targets = d.get("variants")
        if not isinstance(targets, dict) or d.get("default_variant") not in targets:
            problems.append(f"{where}: needs variants including its default_variant")
            continue
        for variant, target in targets.items():
            at = f"{where} variant {variant!r}"
            if check(at, lambda variant=variant: check_slug(variant, "variant name")) is None:
                continue
            if not isinstance(target, dict) or target.get("version") not in numbers[prompt]:
                problems.append(f"{at}: points at no version of prompt {prompt!r}")
                continue
            if not isinstance(target.get(FOLLOWS_LATEST, False), bool):
                problems.append(f"{at}: follows_latest: expected true or false")
            config = check(at, lambda target=target: parse_variant_config(target.get("config")))
            if config is None:
                continue
            named = [f.version for f in config.fallbacks] + [a.version for a in config.split]
            for number in named:
                if number is not None and number not in numbers[prompt]:
                    problems.append(
                        f"{at}: its config names version {number}, which the archive does not hold"
                    )
    problems.extend(dataset_sync.archive_problems(data.get(dataset_sync.SECTION), set(numbers)))
    if problems:
        raise ValidationFailed(
            "not a valid promptdeck workspace archive: " + "; ".join(problems), details=problems
        )


def _time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO time; got {value!r}")
    return datetime.fromisoformat(value)
