"""Dataset files become cases; bad rows say where they are."""

from __future__ import annotations

import io
import json

import pytest

from lockgate.errors import UserError
from lockgate.evals._dataset import cases_from_rows, load_cases


def test_jsonl_rows_map_known_fields_and_keep_the_rest_as_vars() -> None:
    data = (
        json.dumps(
            {
                "id": "t1",
                "input": "refund please",
                "expected": "billing",
                "customer": "ACME",
                "context": "Refunds take 5 days.",
            }
        )
        + "\n\n"
        + json.dumps({"vars": {"ticket": "x"}, "reference": "other", "metadata": {"k": 1}})
        + "\n"
    ).encode()
    first, second = load_cases(data, name="cases.jsonl")
    assert (first.id, first.input, first.expected) == ("t1", "refund please", "billing")
    assert first.vars == {"customer": "ACME", "input": "refund please"}
    assert first.context == ["Refunds take 5 days."]
    assert (second.id, second.expected, second.vars, second.metadata) == (
        "2",
        "other",
        {"ticket": "x"},
        {"k": 1},
    )


def test_csv_columns_become_vars() -> None:
    data = "\ufeffid,input,expected,customer\nc1,where is my invoice,billing,ACME\n".encode()
    [case] = load_cases(data, name="cases.csv")
    assert case.vars == {"customer": "ACME", "input": "where is my invoice"}
    assert case.expected == "billing"


def test_parquet() -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(
        pa.table({"id": ["p1", "p2"], "input": ["a", "b"], "expected": ["x", "y"]}), buffer
    )
    cases = load_cases(buffer.getvalue(), name="cases.parquet")
    assert [(c.id, c.input, c.expected) for c in cases] == [("p1", "a", "x"), ("p2", "b", "y")]


@pytest.mark.parametrize(
    ("data", "name", "message"),
    [
        (b'{"input": "a"}\n{"input": \n', "d.jsonl", "d.jsonl:2: not valid JSON"),
        (b'["not", "a", "mapping"]\n', "d.jsonl", "d.jsonl:1: a case must be a mapping"),
        (
            b'{"id": 1}\n{"id": 1}\n',
            "d.jsonl",
            "d.jsonl:2: case id '1' is used twice (first at d.jsonl:1)",
        ),
        (b'{"vars": [1]}\n', "d.jsonl", "d.jsonl:1: field 'vars' must be a mapping"),
        (b'{"context": 3}\n', "d.jsonl", "field 'context' must be a string or a list"),
        (b"\xff\xfe", "d.jsonl", "d.jsonl: not UTF-8 text"),
        (b"", "d.jsonl", "the dataset has no cases"),
        (b"a,b\n", "d.tsv", "unknown dataset format 'tsv'"),
    ],
)
def test_bad_datasets_say_where(data: bytes, name: str, message: str) -> None:
    with pytest.raises(UserError) as info:
        load_cases(data, name=name)
    assert message in str(info.value)


def test_inline_rows() -> None:
    cases = cases_from_rows([("suite cases[0]", {"input": "hi", "expected": "hello"})])
    assert cases[0].id == "1"
