"""`promptdeck dataset list|create|import|export|show|delete`: a prompt's datasets of test cases,
each a thin call to the admin API (`PROMPTDECK_URL`, `PROMPTDECK_API_KEY`). A file is checked
here first, so a bad one is reported line by line without touching the server."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from promptdeck.cli_lifecycle import Check, Fail, Server

PROMPT = typer.Argument(..., help="The prompt's slug.")
NAME = typer.Argument(..., help="The dataset's name.")


def register(app: typer.Typer, server: Server, check: Check, fail: Fail) -> None:
    """Add the `dataset` command group to the `promptdeck` command."""
    group = typer.Typer(help="A prompt's datasets: test cases to evaluate versions on (docs/evaluations.md).")
    app.add_typer(group, name="dataset")
    out, err = Console(soft_wrap=True), Console(stderr=True, soft_wrap=True)

    def call(method: str, path: str, **kwargs: Any) -> Any:
        with server() as http:
            response = http.request(method, path, **kwargs)
            return None if response.status_code == 204 else check(response)

    def base(prompt: str) -> str:
        return f"/api/prompts/{prompt}/datasets"

    @group.command("list")
    def list_(prompt: str = PROMPT) -> None:
        """The prompt's datasets and how many cases each holds."""
        table = Table("name", "cases", "evaluators", "description")
        for d in call("GET", base(prompt))["data"]:
            kinds = ", ".join(e["type"] for e in d["evaluators"])
            table.add_row(d["name"], str(d["case_count"]), kinds, d["description"])
        out.print(table)

    @group.command()
    def create(
        prompt: str = PROMPT,
        name: str = NAME,
        description: str = typer.Option("", help="What the cases are for."),
        evaluator: list[str] = typer.Option(
            [],
            "--evaluator",
            "-e",
            help="An evaluator that judges the cases, as JSON (repeat), e.g. "
            '\'{"type": "contains", "value": "sorry"}\' (docs/evaluations.md).',
        ),
    ) -> None:
        """Create an empty dataset (add cases with `promptdeck dataset import`)."""
        evaluators = []
        for text in evaluator:
            try:
                evaluators.append(json.loads(text))
            except ValueError as exc:
                fail(f'--evaluator {text!r} is not JSON ({exc}); write it as \'{{"type": "contains", ...}}\'')
                return
        call("POST", base(prompt), json={"name": name, "description": description, "evaluators": evaluators})
        out.print(f"created dataset {name} of {prompt}", highlight=False)

    @group.command("import")
    def import_(
        prompt: str = PROMPT,
        name: str = NAME,
        file: Path = typer.Argument(..., exists=True, dir_okay=False, help="A .jsonl or .csv file."),
        replace: bool = typer.Option(False, "--replace", help="Replace every case instead of adding."),
    ) -> None:
        """Add a JSONL or CSV file's cases (the dataset is created if new).

        A bad file is not imported at all; every problem is printed with its line."""
        # imported here, not at the top: `promptdeck --help` must not load pydantic or Jinja
        from promptdeck.domain.dataset_files import DatasetFileError, format_of, parse_cases
        from promptdeck.domain.errors import PromptdeckError

        try:
            file_format = format_of(file.name)
            text = file.read_text(encoding="utf-8-sig")
            cases = parse_cases(text, file_format)
        except DatasetFileError as exc:
            for problem in exc.details:
                err.print(f"{escape(str(file))}: {escape(problem)}", highlight=False)
            fail(f"{file} was not imported: fix the problems above and run the command again")
            return
        except (PromptdeckError, UnicodeDecodeError) as exc:
            fail(getattr(exc, "message", str(exc)))
            return
        with server() as http:
            if http.get(f"{base(prompt)}/{name}").status_code == 404:
                check(http.post(base(prompt), json={"name": name}))
                out.print(f"created dataset {name} of {prompt}", highlight=False)
            body = {"format": file_format, "content": text, "replace": replace}
            done = check(http.post(f"{base(prompt)}/{name}/upload", json=body))
        verb = "replaced the cases with" if replace else "added"
        out.print(
            f"{verb} {len(cases)} cases from {file}; {name} holds {done['dataset']['case_count']}",
            highlight=False,
        )

    @group.command()
    def export(
        prompt: str = PROMPT,
        name: str = NAME,
        file: Path | None = typer.Argument(
            None, dir_okay=False, help="The .jsonl to write (default: stdout)."
        ),
    ) -> None:
        """Write every case as JSONL, the form `import` reads."""
        with server() as http:
            response = http.get(f"{base(prompt)}/{name}/export")
            if response.status_code >= 400:
                check(response)
        if file is None:
            sys.stdout.write(response.text)
            return
        file.write_text(response.text, encoding="utf-8")
        out.print(f"wrote {response.text.count(chr(10))} cases to {file}", highlight=False)

    @group.command()
    def show(prompt: str = PROMPT, name: str = NAME) -> None:
        """The dataset, its evaluators and every case."""
        dataset = call("GET", f"{base(prompt)}/{name}")
        cases = call("GET", f"{base(prompt)}/{name}/cases")["data"]
        out.print(f"{prompt} / {name}: {dataset['case_count']} cases", highlight=False)
        if dataset["description"]:
            out.print(dataset["description"], highlight=False)
        for evaluator in dataset["evaluators"]:
            out.print(f"evaluator: {json.dumps(evaluator)}", highlight=False)
        table = Table("#", "inputs", "expected", "tags", "from run")
        for number, case in enumerate(cases, start=1):
            table.add_row(
                str(number),
                escape(json.dumps(case["inputs"], ensure_ascii=False)),
                escape(case["expected"] if case["expected"] is not None else ""),
                escape(", ".join(case["tags"])),
                case["source_run_id"] or "",
            )
        out.print(table)

    @group.command()
    def delete(prompt: str = PROMPT, name: str = NAME) -> None:
        """Delete a dataset and its cases."""
        call("DELETE", f"{base(prompt)}/{name}")
        out.print(f"deleted dataset {name} of {prompt}", highlight=False)
