"""Validation of artifact files: every problem names the file, the field and the line."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lockgate.errors import InvalidArtifact
from lockgate.registry import load_artifact
from tests.helpers import DESIGN_PROMPT, write


def problems_of(path: Path) -> list[str]:
    with pytest.raises(InvalidArtifact) as info:
        load_artifact(path)
    return [str(p) for p in info.value.problems]


def test_design_prompt_loads_exactly_as_written(tmp_path: Path) -> None:
    loaded = load_artifact(write(tmp_path, "p.yaml", DESIGN_PROMPT))
    assert (loaded.kind.name, loaded.name, loaded.version) == ("prompt", "support-triage", 4)
    assert loaded.spec["retrieval"] == {"index": "kb-support-2024q4", "top_k": 5}
    assert loaded.spec["system"].startswith("You are a support triage assistant.")
    assert loaded.spec["eval_suite"] == "support-triage-eval-v4"


def test_model_descriptor_from_issue_loads_with_its_binary(tmp_path: Path) -> None:
    (tmp_path / "model.skops").write_bytes(b"\x00binary model\xff")
    path = write(
        tmp_path,
        "fraud.yaml",
        """\
        model_id: fraud-v3
        flavor: sklearn
        format: skops
        file: model.skops
        task: classification
        label: is_fraud
        features:
          amount: float
          hour: int
          merchant_category: {type: category, values: [grocery, travel, electronics, other]}
        """,
    )
    loaded = load_artifact(path)
    assert (loaded.kind.name, loaded.name, loaded.version) == ("model", "fraud", 3)
    source, blob = loaded.files["file"]
    assert source == tmp_path / "model.skops"
    assert blob.size == 14
    assert loaded.document["files"]["file"]["sha256"] == blob.sha256


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (DESIGN_PROMPT + "temprature: 0.3\n", "p.yaml:11: field 'temprature': unknown field"),
        (
            DESIGN_PROMPT.replace("temperature: 0.2", "temperature: hot"),
            "p.yaml:3: field 'temperature': Input should be a valid number",
        ),
        (
            DESIGN_PROMPT.replace("  top_k: 5", "  top_k: 0"),
            "p.yaml:9: field 'retrieval.top_k': Input should be greater than or equal to 1",
        ),
        (
            DESIGN_PROMPT.replace("model: gpt-class-foundation-model\n", ""),
            "p.yaml:1: field 'model': required field is missing",
        ),
        (
            DESIGN_PROMPT.replace("support-triage-v4", "support-triage"),
            "p.yaml:1: field 'prompt_id': 'support-triage' must be a name followed by -vN",
        ),
        (
            DESIGN_PROMPT + "model: other\n",
            "p.yaml:11: field 'model': duplicate key (first defined on line 2)",
        ),
        ("prompt_id: x-v1\nmodel: [unclosed\n", "p.yaml:2: malformed YAML"),
        ("- just\n- a list\n", "p.yaml:1: expected a mapping"),
        ("name: something\n", "p.yaml:1: not an artifact: add exactly one of"),
        (
            DESIGN_PROMPT + "template: 'Ticket: {{ ticket '\n",
            "p.yaml:11: field 'template': Jinja2 syntax error on line 1",
        ),
        (
            DESIGN_PROMPT + "response_format: {type: objekt}\n",
            "p.yaml:11: field 'response_format': not a valid JSON schema",
        ),
    ],
)
def test_bad_prompt_reports_file_field_line(tmp_path: Path, text: str, expected: str) -> None:
    problems = problems_of(write(tmp_path, "p.yaml", text))
    assert any(expected in p for p in problems), problems
    assert all(str(tmp_path / "p.yaml") in p for p in problems)


def test_missing_model_binary_is_reported_at_its_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "m.yaml",
        """\
        model_id: fraud-v1
        flavor: sklearn
        format: skops
        file: missing.skops
        task: classification
        features: {amount: float}
        """,
    )
    [problem] = problems_of(path)
    assert "m.yaml:4: field 'file': file 'missing.skops' not found" in problem


def test_missing_file_and_non_utf8_are_clear(tmp_path: Path) -> None:
    assert problems_of(tmp_path / "nope.yaml") == [f"{tmp_path / 'nope.yaml'}: file not found"]
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    assert "not UTF-8 text" in problems_of(binary)[0]


def test_every_problem_in_a_file_is_reported(tmp_path: Path) -> None:
    text = DESIGN_PROMPT.replace("temperature: 0.2", "temperature: 9") + "colour: blue\n"
    problems = problems_of(write(tmp_path, "p.yaml", text))
    assert len(problems) == 2


@pytest.mark.parametrize(
    ("line", "message"),
    [("metadata: {score: .nan}", "NaN or infinity"), ('metadata: {x: "\\ud800"}', "Unicode")],
)
def test_values_without_a_canonical_form_are_refused(
    tmp_path: Path, line: str, message: str
) -> None:
    [problem] = problems_of(write(tmp_path, "p.yaml", DESIGN_PROMPT + line + "\n"))
    assert message in problem


def test_suite_requires_exactly_one_dataset_source(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "s.yaml",
        """\
        suite_id: triage-eval-v1
        target: support-triage@4
        scorers: [{name: equals}]
        """,
    )
    assert "exactly one of 'dataset'" in problems_of(path)[0]


# -- canonical hashing -------------------------------------------------------------

_scalars = st.one_of(
    st.integers(-(10**6), 10**6),
    st.booleans(),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=20),
)
_metadata = st.dictionaries(
    st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True), _scalars, max_size=6
)


def _render(meta: dict[str, object], order: list[int], indent: int, comments: bool) -> str:
    import json

    fields = [
        "prompt_id: demo-v1",
        "model: local/qwen2.5-coder-1.5b-instruct",
        "temperature: 0.5",
        "metadata:\n"
        + "".join(
            f"{' ' * indent}{json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}\n"
            for k, v in meta.items()
        )
        if meta
        else "metadata: {}",
    ]
    ordered = [fields[i] for i in order]
    if comments:
        ordered = [
            f"# note {i}\n{line}   # trailing" if "\n" not in line else f"# c\n{line}"
            for i, line in enumerate(ordered)
        ]
    return "\n".join(line.rstrip("\n") for line in ordered) + "\n\n\n"


@settings(max_examples=60, deadline=None)
@given(
    meta=_metadata,
    order=st.permutations(range(4)),
    indent=st.integers(1, 6),
    comments=st.booleans(),
)
def test_hash_ignores_key_order_whitespace_and_comments(
    tmp_path_factory: pytest.TempPathFactory,
    meta: dict[str, object],
    order: list[int],
    indent: int,
    comments: bool,
) -> None:
    directory = tmp_path_factory.mktemp("h")
    plain = load_artifact(write(directory, "a.yaml", _render(meta, [0, 1, 2, 3], 2, False)))
    varied = load_artifact(write(directory, "b.yaml", _render(meta, order, indent, comments)))
    assert plain.digest == varied.digest


@settings(max_examples=40, deadline=None)
@given(meta=_metadata, key=st.from_regex(r"[a-z]{1,6}", fullmatch=True), value=_scalars)
def test_hash_changes_when_content_changes(
    tmp_path_factory: pytest.TempPathFactory, meta: dict[str, object], key: str, value: object
) -> None:
    changed = dict(meta)
    if changed.get(key, object()) == value and type(changed.get(key)) is type(value):
        return  # not a change
    changed[key] = value
    directory = tmp_path_factory.mktemp("h")
    before = load_artifact(write(directory, "a.yaml", _render(meta, [0, 1, 2, 3], 2, False)))
    after = load_artifact(write(directory, "b.yaml", _render(changed, [0, 1, 2, 3], 2, False)))
    assert before.digest != after.digest


def test_blob_content_is_part_of_the_identity(tmp_path: Path) -> None:
    descriptor = """\
        dataset_id: tickets-v1
        file: data.jsonl
        """
    (tmp_path / "data.jsonl").write_text('{"input": "a"}\n')
    first = load_artifact(write(tmp_path, "d.yaml", descriptor))
    (tmp_path / "data.jsonl").write_text('{"input": "b"}\n')
    second = load_artifact(write(tmp_path, "d.yaml", descriptor))
    assert first.digest != second.digest
