"""Lead value and tiers: seed 003 section 3.2 ``estimate_lead_value``, exactly.

    employees > 1000 -> $150,000; > 100 -> $50,000; > 10 -> $15,000; else $5,000
    x industry multiplier (software 1.5, finance 1.5, healthcare 1.3, manufacturing 1.2,
      retail 0.8, hospitality 0.7, anything else 1.0)
    x 1.3 with an enterprise tech stack, x 1.2 with a career page
    x 1.2 in US/CA/UK/AU, x 0.6 in IN/PH/VN
    rounded to the nearest $1,000 (Python's round(value, -3): half to even)

Tiers: enterprise >= $100,000, mid-market >= $25,000, smb below; council sizes 3 / 2 / 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from db.enums import Tier

INDUSTRY_MULTIPLIERS: dict[str, Decimal] = {
    "software": Decimal("1.5"),
    "finance": Decimal("1.5"),
    "healthcare": Decimal("1.3"),
    "manufacturing": Decimal("1.2"),
    "retail": Decimal("0.8"),
    "hospitality": Decimal("0.7"),
}
HIGH_PAYING = frozenset({"US", "CA", "UK", "GB", "AU"})  # ISO "GB" is the seed's "UK"
LOW_PAYING = frozenset({"IN", "PH", "VN"})
ENTERPRISE_MIN = Decimal(100_000)
MID_MARKET_MIN = Decimal(25_000)
COUNCIL_SIZE = {Tier.ENTERPRISE: 3, Tier.MID_MARKET: 2, Tier.SMB: 1}
ENTERPRISE_TECH = frozenset(
    {
        "salesforce",
        "snowflake",
        "sap",
        "oracle",
        "workday",
        "servicenow",
        "databricks",
        "kubernetes",
        "aws",
        "azure",
        "gcp",
        "marketo",
        "tableau",
        "okta",
        "netsuite",
    }
)


@dataclass(frozen=True, slots=True)
class LeadSignals:
    """The facts the value formula reads."""

    employees: int | None
    industry: str | None
    country: str | None
    has_enterprise_tech_stack: bool = False
    has_career_page: bool = False


def estimate_lead_value(lead: LeadSignals) -> Decimal:
    """Potential deal value in dollars (seed 003 ``estimate_lead_value``)."""
    employees = lead.employees or 0
    if employees > 1000:
        value = Decimal(150_000)
    elif employees > 100:
        value = Decimal(50_000)
    elif employees > 10:
        value = Decimal(15_000)
    else:
        value = Decimal(5_000)
    value *= INDUSTRY_MULTIPLIERS.get((lead.industry or "").lower(), Decimal(1))
    if lead.has_enterprise_tech_stack:
        value *= Decimal("1.3")
    if lead.has_career_page:
        value *= Decimal("1.2")
    country = (lead.country or "").upper()
    if country in HIGH_PAYING:
        value *= Decimal("1.2")
    elif country in LOW_PAYING:
        value *= Decimal("0.6")
    return value.quantize(Decimal("1E3"), rounding=ROUND_HALF_EVEN).quantize(Decimal(1))


def tier_for(value: Decimal) -> Tier:
    """Value tier: enterprise >= $100K, mid-market >= $25K, else smb."""
    if value >= ENTERPRISE_MIN:
        return Tier.ENTERPRISE
    if value >= MID_MARKET_MIN:
        return Tier.MID_MARKET
    return Tier.SMB


def has_enterprise_tech(tech_stack: list[str] | tuple[str, ...]) -> bool:
    """Whether a CRM tech-stack list names enterprise software."""
    return any(item.strip().lower() in ENTERPRISE_TECH for item in tech_stack)
