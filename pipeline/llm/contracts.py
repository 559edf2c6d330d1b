"""The shape every stage's model answer must have, and how a failing answer is repaired.

One pydantic model per stage answer (classify, score, analyze, demo, personalize draft, judge
verdict) with the constraints a reader of that answer relies on: a non-empty summary, scores in
range, a subject and a plain-text body, every judge metric present. The gateway asks for the
schema (``response_format`` where the provider supports it, in the prompt otherwise), extracts
the JSON object from prose or code fences, validates it, and on failure asks the same model ONCE
more, showing it its answer and the validation errors (``repair_prompt``).
"""

from __future__ import annotations

import functools
import json
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from db.enums import Stage
from pipeline.logs import mask_secrets
from pipeline.models import Prompt

Industry = Literal[
    "software",
    "finance",
    "healthcare",
    "manufacturing",
    "retail",
    "hospitality",
    "logistics",
    "education",
    "legal",
    "marketing",
    "other",
]
_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_TEMPLATE_SYNTAX = re.compile(r"\{\{|\{%|\{#")
_MAX_SHOWN = 1500
REPAIR_SUFFIX = "+fix"
"""Marks a repair call's ``prompt_version`` in the ledger."""


def _lower(value: object) -> object:
    """Case and dash differences are not a contract violation ("Mid-Market" is mid_market)."""
    return value.strip().lower().replace("-", "_") if isinstance(value, str) else value


def _text(min_length: int = 1, max_length: int | None = None) -> Any:
    """A string, stripped, with length limits in characters (said so in validation errors)."""
    return StringConstraints(strip_whitespace=True, min_length=min_length, max_length=max_length)


Text = Annotated[str, _text()]
Unit = Annotated[float, Field(ge=0.0, le=1.0)]


class Contract(BaseModel):
    """Base of every answer contract: unknown keys are tolerated, wrong types are not."""

    model_config = ConfigDict(extra="ignore", strict=False)


class ClassifyAnswer(Contract):
    """Classify: a known industry, an intent, a segment and a confidence in 0..1."""

    industry: Annotated[Industry, BeforeValidator(_lower)]
    intent: Annotated[Literal["high", "medium", "low"], BeforeValidator(_lower)]
    segment: Annotated[Literal["smb", "mid_market", "enterprise"], BeforeValidator(_lower)]
    confidence: Unit


class ScoreAnswer(Contract):
    """Score: an integer fit score 0..100 and a reason a reviewer can read."""

    fit_score: Annotated[int, Field(ge=0, le=100)]
    rationale: Text


class AnalyzeAnswer(Contract):
    """Analyze: a non-empty summary of the site, and lists of short strings."""

    summary: Annotated[str, _text(20)]
    products: list[str] = Field(default_factory=list)
    pain_points: list[str] = Field(default_factory=list)
    tech_signals: list[str] = Field(default_factory=list)
    has_career_page: bool = False
    has_enterprise_tech_stack: bool = False


class DemoAnswer(Contract):
    """Demo: a title, an outline of sections and a non-empty HTML fragment."""

    title: Text
    outline: Annotated[list[Text], Field(min_length=1, max_length=12)]
    html: Text

    @field_validator("html")
    @classmethod
    def _is_html(cls, value: str) -> str:
        if "<" not in value or ">" not in value:
            raise ValueError("html must be an HTML fragment (no tags found)")
        return value


class DraftAnswer(Contract):
    """Personalize: a one-line subject and a plain-text body (no JSON, no template syntax)."""

    subject: Annotated[str, _text(3, 200)]
    body: Annotated[str, _text(40, 10_000)]

    @field_validator("subject")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if "\n" in value:
            raise ValueError("subject must be a single line")
        return value

    @field_validator("body")
    @classmethod
    def _plain_text(cls, value: str) -> str:
        if _TEMPLATE_SYNTAX.search(value):
            raise ValueError("body contains unrendered template syntax")
        if value.lstrip().startswith(("{", "[")):
            raise ValueError("body must be plain text, not JSON")
        return value


class VerdictAnswer(Contract):
    """Judge: every metric present and in 0..1 (``overall`` may be left to us)."""

    professionalism: Unit
    personalization: Unit
    relevance: Unit
    spam_risk: Unit
    overall: Unit | None = None
    feedback: str = ""


CONTRACTS: dict[Stage, type[Contract]] = {
    Stage.CLASSIFY: ClassifyAnswer,
    Stage.SCORE: ScoreAnswer,
    Stage.ANALYZE: AnalyzeAnswer,
    Stage.DEMO: DemoAnswer,
    Stage.PERSONALIZE: DraftAnswer,
    Stage.JUDGE: VerdictAnswer,
}


def contract_for(stage: Stage) -> type[Contract]:
    """The answer contract of ``stage``."""
    return CONTRACTS[stage]


# Length and item-count limits stay in our validation only: a grammar-constrained server
# (llama.cpp) compiles ``maxLength: 10000`` into a grammar too large to parse, and then fails.
_LOCAL_ONLY = frozenset({"maxLength", "minLength", "maxItems", "minItems"})


@functools.cache
def json_schema(contract: type[Contract]) -> dict[str, Any]:
    """The JSON schema sent as ``response_format`` (and shown in prompts where unsupported):
    the contract's keys, types, enums and numeric ranges, without length limits.

    Built once per contract (pydantic's schema generation was ~5 % of a worker's CPU when it
    ran per request); callers only read it.
    """
    schema: dict[str, Any] = _without_lengths(contract.model_json_schema())
    return schema


def _without_lengths(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_lengths(v) for k, v in node.items() if k not in _LOCAL_ONLY}
    if isinstance(node, list):
        return [_without_lengths(v) for v in node]
    return node


def extract_json(text: str) -> dict[str, Any] | None:
    """The first JSON object in a model's answer: bare, inside a code fence, or inside prose.

    Returns None when no complete object is present (a truncated answer, plain prose).
    """
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for chunk in candidates:
        for start in (i for i, ch in enumerate(chunk) if ch == "{"):
            try:
                value, _ = decoder.raw_decode(chunk, start)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    return None


def validate(contract: type[Contract], text: str, *, truncated: bool = False) -> Contract | str:
    """The validated answer, or a short description of why ``text`` breaks the contract."""
    data = extract_json(text)
    if data is None:
        cut = " (the answer was cut off at the token limit)" if truncated else ""
        return f"no complete JSON object in the answer{cut}"
    try:
        return contract.model_validate(data)
    except ValidationError as exc:
        return "; ".join(_describe(err) for err in exc.errors(include_url=False))


def _describe(err: Any) -> str:
    where = ".".join(str(p) for p in err.get("loc", ())) or "answer"
    return f"{where}: {err.get('msg', 'invalid')}"


def shown_answer(text: str) -> str:
    """An answer as stored in the ledger or shown back to the model: bounded, secrets masked."""
    return mask_secrets(text[:_MAX_SHOWN])


def repair_prompt(prompt: Prompt, contract: type[Contract], answer: str, errors: str) -> Prompt:
    """The one repair request: the original task, the failing answer and what was wrong."""
    schema = json.dumps(json_schema(contract), separators=(",", ":"))
    user = (
        f"{prompt.user}\n\n<previous_answer>{shown_answer(answer)}</previous_answer>\n"
        f"Your previous answer (above) was rejected: {errors}.\n"
        f"Answer again with ONE JSON object that satisfies this JSON schema, and nothing else:\n"
        f"{schema}"
    )
    return Prompt(system=prompt.system, user=user, version=f"{prompt.version}{REPAIR_SUFFIX}")


def schema_instruction(contract: type[Contract]) -> str:
    """The schema as an instruction, for providers without a JSON-schema response format."""
    schema = json.dumps(json_schema(contract), separators=(",", ":"))
    return f"Answer with one JSON object that satisfies this JSON schema:\n{schema}"
