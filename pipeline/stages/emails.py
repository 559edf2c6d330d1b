"""Template-first emails (seed 000): template choice, A/B variants and rendering."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from pipeline.llm.prompts import render_text
from pipeline.stages.classifier import INDUSTRY_KEYWORDS, SENIOR

INDUSTRIES = frozenset(INDUSTRY_KEYWORDS)


@dataclass(frozen=True, slots=True)
class EmailFacts:
    """What a template needs; every field is data from the lead or its analysis."""

    first_name: str
    company: str
    title: str
    industry: str
    pain_point: str
    product: str
    variant: str
    sender_name: str
    sender_company: str
    opener: str = ""
    proof: str = ""


def persona_for(title: str | None) -> str:
    """``executive`` for founders, owners, C-level, VPs and directors; else ``operator``."""
    return "executive" if title and SENIOR.search(title) else "operator"


def template_name(industry: str | None, title: str | None) -> str:
    """The outreach template for an industry and the contact's persona."""
    family = industry if industry in INDUSTRIES else "other"
    return f"emails/{family}_{persona_for(title)}.txt.j2"


def variant_for(content_hash: str, campaign_id: int, *, ab_testing: bool) -> str:
    """Deterministic A/B assignment per lead and campaign (always A when tests are off)."""
    if not ab_testing:
        return "A"
    digest = hashlib.sha256(f"{campaign_id}:{content_hash}".encode()).digest()
    return "AB"[digest[0] % 2]


def render_email(name: str, facts: EmailFacts) -> tuple[str, str]:
    """Render a template into (subject, body)."""
    text = render_text(
        name,
        first_name=facts.first_name,
        company=facts.company,
        title=facts.title,
        industry=facts.industry,
        pain_point=facts.pain_point,
        product=facts.product,
        variant=facts.variant,
        sender_name=facts.sender_name,
        sender_company=facts.sender_company,
        opener=facts.opener,
        proof=facts.proof,
    ).strip()
    first, _, rest = text.partition("\n")
    return first.removeprefix("Subject:").strip(), rest.strip()
