"""A dataset's cases as text: JSONL and CSV files (import and export), and the `datasets:` section
of a prompt file. Every problem of a file is found before anything is kept, each with the line it
is on, so a bad file is fixed in one pass and never imported in part (docs/evaluations.md).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from promptdeck.domain.datasets import DatasetCase
from promptdeck.domain.errors import ValidationFailed
from promptdeck.domain.evaluators import parse_evaluators
from promptdeck.domain.input_types import chat_history_problems
from promptdeck.domain.prompts import check_slug

CASE_KEYS = ("inputs", "expected", "chat_history", "tags")
CSV_COLUMNS = ("expected", "tags", "chat_history")  # every other column is an input
FORMATS = ("jsonl", "csv")
MAX_CASES = 50_000
MAX_PROBLEMS = 200  # a file that is wrong everywhere is not listed line by line past this
SECTION_KEYS = ("description", "evaluators", "cases")
_TAG_SEPARATORS = re.compile(r"[;,]")


class DatasetFileError(ValidationFailed):
    """A dataset file that cannot be imported; `details` lists every problem, one per line."""

    def __init__(self, problems: list[str]) -> None:
        shown = problems[:MAX_PROBLEMS]
        if len(problems) > MAX_PROBLEMS:
            shown.append(f"… and {len(problems) - MAX_PROBLEMS} more problems")
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"the file was not imported ({count}): " + "; ".join(shown[:5]), details=shown)


def check_dataset_name(name: Any) -> str:
    return check_slug(name, "dataset name")


def check_evaluators(raw: Any) -> tuple[dict[str, Any], ...]:
    """A dataset's evaluator specs, kept as given once every one parses (`parse_evaluators`
    lists every problem at once), so a bad spec is refused when saved, not when evaluated."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ValidationFailed("evaluators: expected a list of objects, each with a `type`")
    parse_evaluators(raw)
    return tuple(dict(e) for e in raw)


def case_problems(raw: Any) -> list[tuple[str, str]]:
    """What is wrong with one case object, as (field, problem) pairs; the field is "" for the
    object itself."""
    if not isinstance(raw, dict):
        return [("", "expected an object with `inputs`")]
    problems = [(key, f"unknown key (known: {', '.join(CASE_KEYS)})") for key in raw if key not in CASE_KEYS]
    if "inputs" not in raw:
        problems.append(("inputs", "is missing"))
    elif not isinstance(raw["inputs"], dict):
        problems.append(("inputs", "must be an object"))
    expected = raw.get("expected")
    if expected is not None and not isinstance(expected, str):
        problems.append(("expected", "must be text or null (write an expected JSON output as a string)"))
    history = raw.get("chat_history")
    if history is not None:
        for problem in chat_history_problems(history)[:3]:
            index, _, message = problem.partition(": ")
            problems.append((f"chat_history{index}", message) if message else ("chat_history", problem))
    tags = raw.get("tags")
    if tags is not None and (not isinstance(tags, list) or not all(isinstance(t, str) for t in tags)):
        problems.append(("tags", "must be a list of strings"))
    return problems


def case_from_data(raw: Mapping[str, Any], source_run_id: str | None = None) -> DatasetCase:
    """A case from an object `case_problems` found nothing wrong with."""
    tags = tuple(t.strip() for t in raw.get("tags") or () if t.strip())
    return DatasetCase(
        inputs=dict(raw["inputs"]),
        expected=raw.get("expected"),
        chat_history=tuple(dict(m) for m in raw.get("chat_history") or ()),
        tags=tags,
        source_run_id=source_run_id,
    )


def case_data(case: DatasetCase) -> dict[str, Any]:
    """A case as the object JSONL lines, prompt files and archives hold: the optional keys only
    when set."""
    data: dict[str, Any] = {"inputs": dict(case.inputs)}
    if case.expected is not None:
        data["expected"] = case.expected
    if case.chat_history:
        data["chat_history"] = [dict(m) for m in case.chat_history]
    if case.tags:
        data["tags"] = list(case.tags)
    return data


def checked_cases(raw: Any, where: str = "cases") -> list[DatasetCase]:
    """Cases from a request body or document: every problem at once, `where[2].inputs: …`."""
    if not isinstance(raw, list):
        raise ValidationFailed(f"{where}: expected a list of cases")
    problems = [_at(f"{where}[{i}]", f, p) for i, item in enumerate(raw) for f, p in case_problems(item)]
    if problems:
        raise ValidationFailed("; ".join(problems[:5]), details=problems[:MAX_PROBLEMS])
    return [case_from_data(item) for item in raw]


def _at(path: str, field: str, problem: str) -> str:
    return f"{path}.{field}: {problem}" if field else f"{path}: {problem}"


def _on_line(line: int, field: str, problem: str) -> str:
    return f"line {line}: `{field}` {problem}" if field else f"line {line}: {problem}"


# ── files ────────────────────────────────────────────────────────────────────


def format_of(filename: str) -> str:
    """The format a file's name says (`.jsonl`, `.ndjson`, `.csv`)."""
    lowered = filename.lower()
    if lowered.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if lowered.endswith(".csv"):
        return "csv"
    raise ValidationFailed(f"{filename}: expected a .jsonl or .csv file")


def parse_cases(text: str, file_format: str) -> list[DatasetCase]:
    """Every case of a JSONL or CSV file, or `DatasetFileError` listing every problem."""
    if file_format == "jsonl":
        return parse_jsonl(text)
    if file_format == "csv":
        return parse_csv(text)
    raise ValidationFailed(f"format: expected one of {', '.join(FORMATS)}; got {file_format!r}")


def parse_jsonl(text: str) -> list[DatasetCase]:
    """One case object per line; blank lines are skipped."""
    problems: list[str] = []
    cases: list[DatasetCase] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            problems.append(f"line {number}: not valid JSON ({_json_reason(exc)})")
            continue
        found = case_problems(raw)
        problems.extend(_on_line(number, field, problem) for field, problem in found)
        if not found:
            cases.append(case_from_data(raw))
    return _finished(cases, problems, "one JSON object per line, with `inputs`")


def parse_csv(text: str) -> list[DatasetCase]:
    """A header row, then one case per row: `expected`, `tags` (separated by `,` or `;`) and
    `chat_history` (JSON) are those fields, every other column an input (its text as is)."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise DatasetFileError([f"line 1: not readable CSV ({exc})"]) from exc
    if header is None or not any(h.strip() for h in header):
        raise DatasetFileError(["the file is empty: expected a header row, then one case per row"])
    names = [h.strip() for h in header]
    problems = [f"line 1: column {i + 1} has no name" for i, n in enumerate(names) if not n]
    problems += [
        f"line 1: column `{n}` appears twice" for n in sorted({n for n in names if n and names.count(n) > 1})
    ]
    cases: list[DatasetCase] = []
    try:
        for row in reader:
            number = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(names):
                problems.append(
                    f"line {number}: {_values(len(row))}, but the header has {len(names)} columns"
                )
                continue
            raw, found = _csv_case(dict(zip(names, row, strict=True)))
            problems.extend(_on_line(number, field, problem) for field, problem in found)
            if not found:
                cases.append(case_from_data(raw))
    except csv.Error as exc:
        problems.append(f"line {reader.line_num}: not readable CSV ({exc})")
    return _finished(cases, problems, "a header row, then one case per row")


def _csv_case(row: dict[str, str]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    raw: dict[str, Any] = {"inputs": {k: v for k, v in row.items() if k not in CSV_COLUMNS}}
    problems: list[tuple[str, str]] = []
    if row.get("expected"):
        raw["expected"] = row["expected"]
    if row.get("tags", "").strip():
        raw["tags"] = [t.strip() for t in _TAG_SEPARATORS.split(row["tags"]) if t.strip()]
    if row.get("chat_history", "").strip():
        try:
            raw["chat_history"] = orjson.loads(row["chat_history"])
        except orjson.JSONDecodeError as exc:
            problems.append(("chat_history", f"is not valid JSON ({_json_reason(exc)})"))
    return raw, problems + case_problems(raw)


def _finished(cases: list[DatasetCase], problems: list[str], expected: str) -> list[DatasetCase]:
    if not cases and not problems:
        problems.append(f"the file is empty: expected {expected}")
    if len(cases) > MAX_CASES:
        problems.append(f"the file has {len(cases)} cases; a dataset holds at most {MAX_CASES}")
    if problems:
        raise DatasetFileError(problems)
    return cases


def _values(count: int) -> str:
    return f"{count} value" if count == 1 else f"{count} values"


def _json_reason(exc: orjson.JSONDecodeError) -> str:
    return f"{exc.msg} at column {exc.colno}"


def to_jsonl(cases: Iterable[DatasetCase]) -> str:
    """The JSONL export: one case per line, keys in a fixed order, so exports diff cleanly."""
    return "".join(orjson.dumps(case_data(c)).decode() + "\n" for c in cases)


# ── the `datasets:` section of a prompt file ─────────────────────────────────


def section_problems(section: Any) -> list[str]:
    """Every problem of a prompt file's `datasets:` (name -> {description?, evaluators?, cases}),
    each starting with its path so the prompt file can say which line it is on."""
    if section is None:
        return []
    if not isinstance(section, dict):
        return ["datasets: expected dataset name -> {description, evaluators, cases}"]
    problems: list[str] = []
    for name, body in section.items():
        where = f"datasets.{name}"
        try:
            check_dataset_name(name)
        except ValidationFailed as exc:
            problems.append(f"{where}: {exc.message}")
        if not isinstance(body, dict):
            problems.append(f"{where}: expected {{description, evaluators, cases}}")
            continue
        problems += [
            f"{where}.{k}: unknown key (known: {', '.join(SECTION_KEYS)})"
            for k in body
            if k not in SECTION_KEYS
        ]
        if not isinstance(body.get("description", ""), str):
            problems.append(f"{where}.description: must be text")
        try:
            check_evaluators(body.get("evaluators"))
        except ValidationFailed as exc:
            problems.append(f"{where}.{exc.message}")
        cases = body.get("cases", [])
        if not isinstance(cases, list):
            problems.append(f"{where}.cases: expected a list of cases")
            continue
        for i, item in enumerate(cases):
            problems += [_at(f"{where}.cases[{i}]", f, p) for f, p in case_problems(item)]
    return problems


def section_entry(
    description: str, evaluators: Iterable[Mapping[str, Any]], cases: Iterable[DatasetCase]
) -> dict[str, Any]:
    """One dataset as `pull` writes it under `datasets:`: description and evaluators when set."""
    entry: dict[str, Any] = {}
    if description:
        entry["description"] = description
    listed = [dict(e) for e in evaluators]
    if listed:
        entry["evaluators"] = listed
    entry["cases"] = [case_data(c) for c in cases]
    return entry
