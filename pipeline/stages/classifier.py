"""Deterministic classification first (seed 001): keywords and firmographics before any model.

The classifier answers when its confidence is at least ``CONFIDENT`` (0.8); only the rest of the
leads reach a model. Confidence is highest when the CRM's own industry field names a known
industry, lower when only keywords in the company name, notes or website point at one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CONFIDENT = 0.8

# Our industry vocabulary and the words that signal each one, strongest first.
INDUSTRY_KEYWORDS: dict[str, tuple[str, ...]] = {
    "software": (
        "software",
        "saas",
        "cloud",
        "it services",
        "technology",
        "tech",
        "devops",
        "platform",
        "app",
        "analytics",
        "data",
        "cyber",
        "digital",
        "studios",
    ),
    "finance": (
        "finance",
        "financial",
        "fintech",
        "bank",
        "banking",
        "payments",
        "insurance",
        "credit union",
        "capital",
        "accounting",
        "bookkeeping",
        "payroll",
        "ledger",
        "wealth",
        "lending",
        "invest",
    ),
    "healthcare": (
        "healthcare",
        "health",
        "hospital",
        "clinic",
        "medical",
        "dental",
        "pharma",
        "therapy",
        "care",
        "biotech",
        "medicine",
    ),
    "manufacturing": (
        "manufacturing",
        "industrial",
        "fabrication",
        "machinery",
        "metal",
        "robotics",
        "automotive",
        "precision",
        "instruments",
        "factory",
        "engineering",
        "antriebstechnik",
        "metallbau",
    ),
    "retail": (
        "retail",
        "e-commerce",
        "ecommerce",
        "grocer",
        "store",
        "shop",
        "consumer goods",
        "fashion",
        "apparel",
        "foods",
        "surf",
        "outfitters",
        "textiles",
    ),
    "hospitality": (
        "hospitality",
        "hotel",
        "hotels",
        "resort",
        "restaurant",
        "inns",
        "catering",
        "travel",
        "leisure",
        "food service",
    ),
    "logistics": (
        "logistics",
        "freight",
        "shipping",
        "transport",
        "supply chain",
        "trucking",
        "warehousing",
        "3pl",
        "logística",
        "transportes",
    ),
    "education": (
        "education",
        "e-learning",
        "school",
        "university",
        "tutoring",
        "academy",
        "learning",
        "nursery",
        "college",
        "training",
    ),
    "legal": (
        "legal",
        "law",
        "law firm",
        "solicitors",
        "attorneys",
        "llp",
        "rechtsanwälte",
        "paralegal",
    ),
    "marketing": (
        "marketing",
        "advertising",
        "agency",
        "media",
        "creative",
        "public relations",
        "branding",
        "pr",
    ),
}
SENIOR = re.compile(
    r"\b(ceo|cto|cfo|coo|cmo|cro|chief|founder|owner|president|vp|vice|head|"
    r"director|partner|principal|managing)\b",
    re.I,
)
BUYING = re.compile(
    r"\b(evaluat\w*|looking for|rfp|budget|replac\w*|migrat\w*|expand\w*|"
    r"hiring|growing|scal\w*|demo|pilot)\b",
    re.I,
)


@dataclass(frozen=True, slots=True)
class RuleClassification:
    """A deterministic answer and how sure it is."""

    industry: str
    intent: str
    segment: str
    confidence: float


def _match(text: str) -> str | None:
    lowered = f" {text.lower()} "
    for industry, words in INDUSTRY_KEYWORDS.items():
        if any(re.search(rf"(?<![\w-]){re.escape(w)}(?![\w-])", lowered) for w in words):
            return industry
    return None


def segment_for(employees: int | None) -> str:
    """Firmographic segment from headcount (seed 003's size bands)."""
    if employees is None or employees <= 100:
        return "smb"
    return "mid_market" if employees <= 1000 else "enterprise"


def classify_by_rules(
    *,
    industry_hint: str | None,
    company: str,
    notes: str | None,
    title: str | None,
    employees: int | None,
) -> RuleClassification:
    """Classify from CRM fields alone.

    Returns:
        Confidence 0.9 when the CRM industry maps to ours, 0.8 when the company name does,
        0.6 when only the notes do, 0.3 when nothing does (industry "other").
    """
    if industry_hint and (found := _match(industry_hint)):
        industry, confidence = found, 0.9
    elif found := _match(company):
        industry, confidence = found, 0.8
    elif notes and (found := _match(notes)):
        industry, confidence = found, 0.6
    else:
        industry, confidence = "other", 0.3
    signals = sum((bool(title and SENIOR.search(title)), bool(notes and BUYING.search(notes))))
    intent = ("low", "medium", "high")[signals]
    return RuleClassification(industry, intent, segment_for(employees), confidence)
