from decimal import Decimal

import pytest

from db.enums import Tier
from pipeline.value import LeadSignals, estimate_lead_value, has_enterprise_tech, tier_for


def test_seed_003_worked_example_smb_retail() -> None:
    # $15,000 x 0.8 (retail) x 1.2 (US) = $14,400 -> $14,000
    value = estimate_lead_value(LeadSignals(employees=15, industry="retail", country="US"))
    assert value == Decimal(14_000)
    assert tier_for(value) is Tier.SMB


def test_seed_003_worked_example_enterprise_software() -> None:
    # $150,000 x 1.5 (software) x 1.3 (tech stack) x 1.2 (US) = $351,000
    lead = LeadSignals(
        employees=2500, industry="software", country="US", has_enterprise_tech_stack=True
    )
    value = estimate_lead_value(lead)
    assert value == Decimal(351_000)
    assert tier_for(value) is Tier.ENTERPRISE


@pytest.mark.parametrize(
    ("employees", "base"),
    [
        (None, 5_000),
        (10, 5_000),
        (11, 15_000),
        (100, 15_000),
        (101, 50_000),
        (1000, 50_000),
        (1001, 150_000),
    ],
)
def test_employee_bands(employees: int | None, base: int) -> None:
    assert estimate_lead_value(LeadSignals(employees, None, None)) == Decimal(base)


@pytest.mark.parametrize(
    ("country", "expected"),
    [
        ("GB", 18_000),
        ("UK", 18_000),
        ("CA", 18_000),
        ("IN", 9_000),
        ("VN", 9_000),
        ("DE", 15_000),
    ],
)
def test_country_multipliers(country: str, expected: int) -> None:
    assert estimate_lead_value(LeadSignals(50, None, country)) == Decimal(expected)


def test_career_page_and_unknown_industry() -> None:
    lead = LeadSignals(500, "Aerospace", "FR", has_career_page=True)
    assert estimate_lead_value(lead) == Decimal(60_000)


@pytest.mark.parametrize(
    ("value", "tier"),
    [
        (Decimal(100_000), Tier.ENTERPRISE),
        (Decimal(99_999), Tier.MID_MARKET),
        (Decimal(25_000), Tier.MID_MARKET),
        (Decimal(24_999), Tier.SMB),
    ],
)
def test_tier_boundaries(value: Decimal, tier: Tier) -> None:
    assert tier_for(value) is tier


def test_enterprise_tech_detection() -> None:
    assert has_enterprise_tech(("HubSpot", " Snowflake "))
    assert not has_enterprise_tech(("WordPress", "Mailchimp"))


def test_site_signals_can_only_raise_the_tier() -> None:
    from decimal import Decimal as D

    from pipeline.stages._common import LeadView
    from pipeline.stages.analyze import revalue

    view = LeadView(
        id=1,
        campaign_id=1,
        run_id="r",
        company="Acme",
        website=None,
        first_name=None,
        last_name=None,
        title=None,
        industry="software",
        employees=500,
        country="US",
        tech_stack=(),
        notes=None,
        tier="mid_market",
        estimated_value=D(90_000),
        strategy="balanced",
        content_hash="h",
        outputs={"classify": {"industry": "software"}},
    )
    # $50,000 x 1.5 x 1.2 (US) = $90,000; with a career page x1.2 = $108,000 -> enterprise
    assert revalue(view, {"has_career_page": True}) == {
        "estimated_value_usd": D(108_000),
        "tier": "enterprise",
    }
    assert revalue(view, {}) == {}
