"""Dataset files: JSONL and CSV in, every problem of a bad file reported with its line."""

from __future__ import annotations

import pytest

from promptdeck.domain.dataset_files import DatasetFileError, parse_cases, section_problems, to_jsonl
from promptdeck.domain.datasets import DatasetCase

GOOD_JSONL = """{"inputs": {"text": "a"}, "expected": "A", "tags": ["smoke"]}

{"inputs": {"text": "b"}, "chat_history": [{"role": "user", "content": "hi"}]}
"""


def test_jsonl_cases_round_trip() -> None:
    cases = parse_cases(GOOD_JSONL, "jsonl")
    assert cases == [
        DatasetCase({"text": "a"}, "A", (), ("smoke",)),
        DatasetCase({"text": "b"}, None, ({"role": "user", "content": "hi"},)),
    ]
    assert parse_cases(to_jsonl(cases), "jsonl") == cases


def test_every_problem_of_a_jsonl_file_is_reported_with_its_line() -> None:
    bad = "\n".join(
        [
            '{"inputs": {"text": "fine"}}',
            '{"inputs": "text"}',
            "{not json",
            '{"inputs": {}, "expectd": "x", "tags": "a,b"}',
            '["a list"]',
            '{"expected": 3}',
        ]
    )
    with pytest.raises(DatasetFileError) as raised:
        parse_cases(bad, "jsonl")
    assert raised.value.details == [
        "line 2: `inputs` must be an object",
        "line 3: not valid JSON (unexpected character, expected a string key at column 2)",
        "line 4: `expectd` unknown key (known: inputs, expected, chat_history, tags)",
        "line 4: `tags` must be a list of strings",
        "line 5: expected an object with `inputs`",
        "line 6: `inputs` is missing",
        "line 6: `expected` must be text or null (write an expected JSON output as a string)",
    ]
    assert "7 problems" in raised.value.message


@pytest.mark.parametrize("text", ["", "\n  \n"])
def test_an_empty_file_is_a_problem(text: str) -> None:
    for file_format in ("jsonl", "csv"):
        with pytest.raises(DatasetFileError, match="empty"):
            parse_cases(text, file_format)


def test_csv_columns_are_inputs_except_expected_tags_and_chat_history() -> None:
    text = (
        "text,audience,expected,tags,chat_history\n"
        'hello,kids,HELLO,"smoke; short",\n'
        '"multi\nline",adults,,a,"[{""role"": ""user"", ""content"": ""hi""}]"\n'
    )
    assert parse_cases(text, "csv") == [
        DatasetCase({"text": "hello", "audience": "kids"}, "HELLO", (), ("smoke", "short")),
        DatasetCase(
            {"text": "multi\nline", "audience": "adults"}, None, ({"role": "user", "content": "hi"},), ("a",)
        ),
    ]


def test_every_problem_of_a_csv_file_is_reported_with_its_line() -> None:
    text = 'text,text,chat_history\na,b,[oops\nc\nd,e,"[{""role"": ""robot"", ""content"": ""x""}]"\n'
    with pytest.raises(DatasetFileError) as raised:
        parse_cases(text, "csv")
    assert raised.value.details == [
        "line 1: column `text` appears twice",
        "line 2: `chat_history` is not valid JSON (unexpected character, expected a JSON value at column 2)",
        "line 3: 1 value, but the header has 3 columns",
        "line 4: `chat_history[0].role` expected one of system, user, assistant; got 'robot'",
    ]


def test_the_prompt_file_section_names_each_problem_by_path() -> None:
    section = {"smoke": {"cases": [{"inputs": {}}, {"inputs": 1}], "colour": 1}, "Bad Name": []}
    assert section_problems(section) == [
        "datasets.smoke.colour: unknown key (known: description, evaluators, cases)",
        "datasets.smoke.cases[1].inputs: must be an object",
        "datasets.Bad Name: dataset name must be 1-100 characters of lower-case letters, digits, '-', '_' or "
        "'.', starting with a letter or digit; got 'Bad Name'",
        "datasets.Bad Name: expected {description, evaluators, cases}",
    ]
