"""The template-first email library: every industry x persona x variant renders a clean email."""

import itertools
import re
import tomllib
from pathlib import Path

import pytest
from jinja2 import Environment, FileSystemLoader, StrictUndefined

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "pipeline" / "templates"
EMAILS_DIR = TEMPLATES_DIR / "emails"

INDUSTRIES = (
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
)
PERSONAS = ("executive", "operator")
NAMES = [f"{industry}_{persona}" for industry in INDUSTRIES for persona in PERSONAS]

COMPANY = "Brightwater Analytics"
FIRST_NAME = "Dana"
PAIN_POINT = "manual lead qualification eating your reps' week"
PRODUCT = "Ledgerline Reconcile"
OPENER = "I noticed Brightwater just opened a second office in Leeds."
SPAM = re.compile(r"\bfree\b|guarantee|act now|!!!", re.IGNORECASE)
SHOUTING = re.compile(r"\b[A-Z]{4,}\b")

# every combination of present/absent first_name, pain_point, product, opener
OPTIONAL = list(itertools.product([True, False], repeat=4))


@pytest.fixture(scope="module")
def env() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render(env: Environment, name: str, variant: str, **overrides: str) -> str:
    values = {
        "first_name": FIRST_NAME,
        "company": COMPANY,
        "title": "Head of Sales",
        "industry": name.rsplit("_", 1)[0],
        "pain_point": PAIN_POINT,
        "product": PRODUCT,
        "proof": "Northwind Freight cut research time per prospect by half within a quarter.",
        "variant": variant,
        "sender_name": "Sam Lee",
        "sender_company": "leadpipe",
        "opener": OPENER,
    }
    values.update(overrides)
    return env.get_template(f"emails/{name}.txt.j2").render(**values)


@pytest.mark.parametrize("with_proof", [True, False])
@pytest.mark.parametrize("variant", ["A", "B"])
@pytest.mark.parametrize("name", NAMES)
def test_template_renders_clean_email(
    env: Environment, name: str, variant: str, with_proof: bool
) -> None:
    for with_name, with_pain, with_product, with_opener in OPTIONAL:
        case = (
            f"{name}/{variant} name={with_name} pain={with_pain} "
            f"product={with_product} opener={with_opener} proof={with_proof}"
        )
        overrides = {
            "first_name": FIRST_NAME if with_name else "",
            "pain_point": PAIN_POINT if with_pain else "",
            "product": PRODUCT if with_product else "",
            "opener": OPENER if with_opener else "",
        }
        if not with_proof:
            overrides["proof"] = ""
        text = render(env, name, variant, **overrides)
        lines = text.split("\n")
        assert lines[0].startswith("Subject: "), case
        subject = lines[0].removeprefix("Subject: ").strip()
        assert subject and len(subject) < 90, case
        assert lines[1] == "", case
        body = "\n".join(lines[2:])
        assert 100 <= len(body.split()) <= 200, f"{case}: {len(body.split())} words"
        assert body.count(COMPANY) >= 2, case
        assert body.startswith(f"Hi {FIRST_NAME}," if with_name else "Hi there,"), case
        assert (PAIN_POINT in body) == with_pain, case
        assert (PRODUCT in body) == with_product, case
        assert (OPENER in body) == with_opener, case
        assert "{{" not in text and "}}" not in text and "{%" not in text, case
        assert not SPAM.search(text), case
        assert not SHOUTING.search(text), case
        assert "\n\n\n" not in text, case
        assert text.endswith("Best regards,\nSam Lee\nleadpipe\n"), case


@pytest.mark.parametrize("name", NAMES)
def test_variants_differ_in_subject_and_opening(env: Environment, name: str) -> None:
    a = render(env, name, "A", opener="")
    b = render(env, name, "B", opener="")
    assert a.split("\n")[0] != b.split("\n")[0]
    assert a.split("\n\n")[2] != b.split("\n\n")[2]  # first paragraph after the greeting


@pytest.mark.parametrize("variant", ["A", "B"])
@pytest.mark.parametrize("name", NAMES)
def test_opener_replaces_first_sentence(env: Environment, name: str, variant: str) -> None:
    own = render(env, name, variant, opener="").split("\n\n")[2]
    replaced = render(env, name, variant).split("\n\n")[2]
    assert replaced.startswith(OPENER + " ")
    assert own.split(". ")[0] not in replaced


@pytest.mark.parametrize("name", NAMES)
def test_empty_sender_fields_leave_no_blank_lines(env: Environment, name: str) -> None:
    text = render(env, name, "A", sender_name="", sender_company="")
    assert text.endswith("Best regards,\n")
    assert "\n\n\n" not in text


def test_catalog_lists_exactly_the_templates() -> None:
    catalog = tomllib.loads((EMAILS_DIR / "catalog.toml").read_text())["templates"]
    assert sorted(catalog) == sorted(NAMES)
    for name, entry in catalog.items():
        assert entry["file"] == f"{name}.txt.j2"
        assert (EMAILS_DIR / entry["file"]).is_file()
        assert f"{entry['industry']}_{entry['persona']}" == name
        assert entry["description"].strip()
    on_disk = {p.name.removesuffix(".txt.j2") for p in EMAILS_DIR.glob("*.txt.j2")}
    assert on_disk - {"_greeting", "_signoff"} == set(NAMES)
