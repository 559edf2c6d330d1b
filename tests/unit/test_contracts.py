"""Stage answer contracts: JSON found in prose and fences, every constraint a reader relies on."""

from __future__ import annotations

import json

import pytest

from db.enums import Stage
from pipeline.llm.contracts import (
    CONTRACTS,
    ClassifyAnswer,
    DemoAnswer,
    DraftAnswer,
    ScoreAnswer,
    VerdictAnswer,
    extract_json,
    json_schema,
    repair_prompt,
    validate,
)
from pipeline.models import LLMRequest, Prompt

GOOD_SCORE = {"fit_score": 72, "rationale": "Mid-sized software firm."}


def test_every_stage_has_a_contract_with_a_schema() -> None:
    assert set(CONTRACTS) == set(Stage)
    for contract in CONTRACTS.values():
        schema = json_schema(contract)
        assert schema["type"] == "object" and schema["required"]
        # no length limits sent: llama.cpp turns maxLength 10000 into a grammar it cannot parse
        assert "Length" not in json.dumps(schema) and "Items" not in json.dumps(schema)


@pytest.mark.parametrize(
    "text",
    [
        json.dumps(GOOD_SCORE),
        f"Sure! Here is the JSON you asked for: {json.dumps(GOOD_SCORE)} Hope it helps.",
        f"```json\n{json.dumps(GOOD_SCORE, indent=2)}\n```",
        f"Answer:\n```\n{json.dumps(GOOD_SCORE)}\n```\nDone.",
        '{"note": "a {brace} in a string"} then ' + json.dumps(GOOD_SCORE),
    ],
)
def test_json_is_found_in_prose_and_code_fences(text: str) -> None:
    found = validate(ScoreAnswer, text)
    if isinstance(found, str):  # the first object of the last case has the wrong keys
        assert "fit_score" in found
        return
    assert found.model_dump() == GOOD_SCORE


def test_truncated_or_missing_json_is_reported_as_such() -> None:
    truncated = '{"fit_score": 72, "rationale": "Mid-sized soft'
    assert extract_json(truncated) is None
    assert "cut off" in str(validate(ScoreAnswer, truncated, truncated=True))
    assert "no complete JSON object" in str(validate(ScoreAnswer, "I think it fits well."))


def test_wrong_keys_and_out_of_range_values_name_the_field() -> None:
    errors = validate(ScoreAnswer, '{"score": 72, "why": "fits"}')
    assert isinstance(errors, str) and "fit_score" in errors and "rationale" in errors
    assert "fit_score" in str(validate(ScoreAnswer, '{"fit_score": 140, "rationale": "x"}'))
    assert "rationale" in str(validate(ScoreAnswer, '{"fit_score": 40, "rationale": "  "}'))


def test_classify_normalises_case_but_rejects_unknown_values() -> None:
    ok = validate(
        ClassifyAnswer,
        '{"industry": "Software", "intent": "HIGH", "segment": "Mid-Market", "confidence": 0.7}',
    )
    assert isinstance(ok, ClassifyAnswer) and ok.segment == "mid_market"
    bad = validate(
        ClassifyAnswer,
        '{"industry": "aerospace", "intent": "high", "segment": "smb", "confidence": 7}',
    )
    assert isinstance(bad, str) and "industry" in bad and "confidence" in bad


def test_a_verdict_without_every_metric_is_invalid_not_zero() -> None:
    missing = validate(VerdictAnswer, '{"overall": 0.9, "feedback": "great"}')
    assert isinstance(missing, str)
    for metric in ("professionalism", "personalization", "relevance", "spam_risk"):
        assert metric in missing
    full = {"professionalism": 0.9, "personalization": 0.8, "relevance": 0.7, "spam_risk": 0.1}
    assert isinstance(validate(VerdictAnswer, json.dumps(full)), VerdictAnswer)


@pytest.mark.parametrize(
    ("answer", "fault"),
    [
        ({"subject": "Hi", "body": {"text": "Hello " * 20}}, "body"),
        ({"subject": "Quick idea", "body": "Hi {{ first_name }}, " + "we help. " * 10}, "template"),
        ({"subject": "Quick idea", "body": '{"body": "' + "x" * 60 + '"}'}, "JSON"),
        ({"subject": "Line one\nline two", "body": "Hello there. " * 10}, "single line"),
        ({"subject": "Quick idea", "body": "Too short."}, "body"),
    ],
)
def test_a_draft_is_a_one_line_subject_and_a_plain_text_body(
    answer: dict[str, object], fault: str
) -> None:
    errors = validate(DraftAnswer, json.dumps(answer))
    assert isinstance(errors, str) and fault in errors


def test_a_demo_page_needs_html() -> None:
    empty = validate(DemoAnswer, '{"title": "Demo", "outline": ["a"], "html": ""}')
    assert isinstance(empty, str) and "html" in empty
    prose = validate(DemoAnswer, '{"title": "Demo", "outline": ["a"], "html": "just words"}')
    assert isinstance(prose, str) and "HTML" in prose


def test_repair_prompt_shows_the_answer_and_errors_with_secrets_masked() -> None:
    prompt = Prompt(system="sys", user="Score this lead.", version="abc123")
    repair = repair_prompt(prompt, ScoreAnswer, '{"score": 1} key sk-abcdefghijklmnop1234', "e1")
    assert repair.system == "sys" and repair.user.startswith("Score this lead.")
    assert '{"score": 1}' in repair.user and "e1" in repair.user and "fit_score" in repair.user
    assert "sk-abcdefghijklmnop1234" not in repair.user
    assert repair.version != prompt.version


def test_schema_goes_into_response_format_or_the_prompt() -> None:
    schema = json_schema(ScoreAnswer)
    request = LLMRequest(model="m", system="s", user="u", max_tokens=10, schema=schema)
    openai = request.to_openai_payload()["response_format"]
    assert openai["type"] == "json_schema" and openai["json_schema"]["schema"] == schema
    llama = request.to_openai_payload("json_object")["response_format"]
    assert llama == {"type": "json_object", "schema": schema}
    assert request.to_openai_payload("none")["response_format"] == {"type": "json_object"}
    anthropic = request.to_anthropic_payload()
    assert "response_format" not in anthropic and "fit_score" in anthropic["system"]
