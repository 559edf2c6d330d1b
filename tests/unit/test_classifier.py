import pytest

from pipeline.errors import InvalidLLMOutput
from pipeline.stages.classifier import CONFIDENT, classify_by_rules, segment_for
from pipeline.stages.emails import persona_for, template_name, variant_for
from pipeline.stages.judge import GATES, parse_verdict


def _classify(**kw: object):  # type: ignore[no-untyped-def]
    args = {
        "industry_hint": None,
        "company": "Acme",
        "notes": None,
        "title": None,
        "employees": None,
    }
    args.update(kw)
    return classify_by_rules(**args)  # type: ignore[arg-type]


def test_crm_industry_is_confident() -> None:
    result = _classify(industry_hint="Computer Software", employees=250)
    assert (result.industry, result.segment, result.confidence) == ("software", "mid_market", 0.9)


def test_company_name_keyword_is_just_confident_enough() -> None:
    result = _classify(company="Northwind Dental Group")
    assert result.industry == "healthcare" and result.confidence == CONFIDENT


def test_notes_only_or_nothing_goes_to_a_model() -> None:
    assert _classify(company="Zeta", notes="runs a freight business").confidence < CONFIDENT
    unknown = _classify(company="Zeta Holdings")
    assert (unknown.industry, unknown.confidence) == ("other", 0.3)


def test_words_inside_other_words_do_not_match() -> None:
    assert _classify(company="Appleton Farms").industry == "other"  # "app" is not software


def test_intent_from_seniority_and_buying_signals() -> None:
    assert _classify(title="VP Sales", notes="Evaluating new tools").intent == "high"
    assert _classify(title="Sales Manager").intent == "low"
    assert _classify(title="Founder").intent == "medium"


@pytest.mark.parametrize(
    ("employees", "segment"),
    [
        (None, "smb"),
        (100, "smb"),
        (101, "mid_market"),
        (1000, "mid_market"),
        (1001, "enterprise"),
    ],
)
def test_segments(employees: int | None, segment: str) -> None:
    assert segment_for(employees) == segment


def test_templates_by_industry_and_persona() -> None:
    assert template_name("finance", "Chief Financial Officer") == "emails/finance_executive.txt.j2"
    assert template_name("aerospace", "Buyer") == "emails/other_operator.txt.j2"
    assert persona_for(None) == "operator"


def test_variants_are_deterministic_and_balanced() -> None:
    picks = [variant_for(f"hash{i}", 1, ab_testing=True) for i in range(400)]
    assert picks == [variant_for(f"hash{i}", 1, ab_testing=True) for i in range(400)]
    assert 150 < picks.count("A") < 250
    assert {variant_for(f"hash{i}", 1, ab_testing=False) for i in range(50)} == {"A"}


def test_gates_and_verdict_parsing() -> None:
    assert GATES == {"template-only": 0.0, "minimal": 0.65, "standard": 0.75, "enhanced": 0.85}
    verdict = parse_verdict(
        {"professionalism": 1, "personalization": 0.8, "relevance": 0.6, "spam_risk": 0.2}
    )
    assert verdict["overall"] == round(0.3 + 0.35 * 0.8 + 0.25 * 0.6 + 0.1 * 0.8, 3)
    for broken in ({"overall": 7}, {}, {"professionalism": 1, "personalization": 0.8}):
        with pytest.raises(InvalidLLMOutput):  # a missing metric is never read as 0.0
            parse_verdict(broken)
