"""Stage outputs of the provider simulator: pure, deterministic, input-dependent.

The pipeline's prompts follow a contract. The system message holds a line
``leadpipe-task: <stage>``; the user message holds data in tagged blocks: ``<lead_data>{json}``,
``<website_text>text``, ``<analysis>{json}``, ``<email_draft>{json}``, ``<classification>{json}``,
each closed by its ``</tag>``. Blocks are only ever read as data: JSON blocks are decoded with
``raw_decode``, so a lead's notes cannot close a block or open a fake one, and no generator copies
the notes into its output, so an injected instruction cannot change what is written.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from simulator import config as t

STAGES = ("classify", "score", "analyze", "demo", "personalize", "judge")

_TASK_RE = re.compile(r"^[ \t]*leadpipe-task:[ \t]*([A-Za-z_]+)[ \t]*$", re.MULTILINE)
_OPEN_RE = re.compile(r"<(lead_data|website_text|analysis|email_draft|classification)>\s*")
_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'])")
_SUMMARY_SITE_CHARS = 8_000  # keeps analyze under 2,400 completion tokens for a rich site


@dataclass(frozen=True, slots=True)
class Lead:
    """The ``<lead_data>`` fields the simulator reads; a missing or malformed one is None."""

    company: str | None = None
    website: str | None = None
    industry: str | None = None
    country: str | None = None
    title: str | None = None
    first_name: str | None = None
    notes: str | None = None
    employees: int | None = None
    tech_stack: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Lead:
        """Build a lead from a decoded ``<lead_data>`` object (unknown keys are ignored)."""

        def text(key: str) -> str | None:
            return str(data.get(key) or "").strip() or None

        stack = data.get("tech_stack")
        items = stack.split(",") if isinstance(stack, str) else stack
        tech = [str(i).strip() for i in items] if isinstance(items, list) else []
        return cls(
            company=text("company"),
            website=text("website"),
            industry=text("industry"),
            country=text("country"),
            title=text("title"),
            first_name=text("first_name"),
            notes=text("notes"),
            employees=_employees(data.get("employees")),
            tech_stack=tuple(filter(None, tech)),
        )


def detect_stage(system: str) -> str | None:
    """Return the stage named by a ``leadpipe-task: <stage>`` line of the system prompt, or None.

    Only the system prompt is searched, so a task line hidden in a lead's notes cannot switch it.
    """
    stages = (m.group(1).lower() for m in _TASK_RE.finditer(system))
    return next((stage for stage in stages if stage in STAGES), None)


def parse_blocks(user: str) -> dict[str, Any]:
    """Return the tagged data blocks of a user message, keyed by tag (the first block wins).

    JSON blocks are read with ``raw_decode``: text inside a JSON string can neither end the block
    nor open another. A non-object block becomes ``{}``; ``<website_text>`` ends at its last close.
    """
    blocks: dict[str, Any] = {}
    decoder, pos = json.JSONDecoder(), 0
    while match := _OPEN_RE.search(user, pos):
        tag, start = match.group(1), match.end()
        if tag == "website_text":
            end = user.rfind("</website_text>")
            pos = len(user) if end < start else end
            blocks.setdefault(tag, user[start:pos].strip())
            continue
        try:
            value, pos = decoder.raw_decode(user, start)
        except json.JSONDecodeError:
            value, pos = {}, start
        blocks.setdefault(tag, value if isinstance(value, dict) else {})
    return blocks


def generate(stage: str | None, model: str, system: str, user: str) -> str:
    """Return the text the simulator answers for one request (pure and deterministic).

    Args:
        stage: One of :data:`STAGES`; None (or an unknown name) detects it from ``system``.
        model: The requested model; personalize writes worse emails on cheap models.
        system: The system prompt.
        user: The user message(s), holding the tagged data blocks.

    Returns:
        Indented JSON text for a stage, or a short generic reply when no stage applies.
    """
    stage = stage if stage in STAGES else detect_stage(system)
    if stage is None:
        return t.GENERIC_REPLY.format(model=model, words=len(user.split()))
    blocks = parse_blocks(user)
    lead = Lead.from_json(blocks.get("lead_data", {}))
    site, analysis = str(blocks.get("website_text", "")), blocks.get("analysis", {})
    run: dict[str, Callable[[], dict[str, Any]]] = {
        "classify": lambda: classify(lead, site),
        "analyze": lambda: analyze(lead, site),
        "score": lambda: score(lead, blocks.get("classification", {})),
        "demo": lambda: demo(lead, analysis),
        "personalize": lambda: personalize(lead, analysis, model),
        "judge": lambda: judge(lead, blocks.get("email_draft", {}), analysis),
    }
    return json.dumps(run[stage](), indent=2, ensure_ascii=False)


def writes_generic(company: str | None, model: str) -> bool:
    """Return True when ``model`` writes a generic email for ``company``.

    Premium models (names containing sonnet, opus, gpt-4o but not mini, gpt-4.1, gpt-5,
    gemini-1.5-pro or large) never do; cheap ones do for a deterministic ~25 % of companies.
    """
    name = model.lower()
    premium = any(m in name for m in t.PREMIUM_MARKERS) or ("gpt-4o" in name and "mini" not in name)
    return not premium and _hash(company or "", model) % 100 < 25


def classify(lead: Lead, site: str) -> dict[str, Any]:
    """Keyword classification: industry, intent, segment and a confidence from the margin."""
    label, ranked, signals = _industry(lead, site)
    best = ranked[0][1] if ranked else 0
    margin = best - (ranked[1][1] if len(ranked) > 1 else 0)
    (segment, _), (intent, why) = _size(lead.employees), _intent(lead)
    size = f"{lead.employees} employees" if lead.employees else "an unknown headcount"
    confidence = min(0.97, 0.45 + 0.08 * best + 0.05 * margin) if best else 0.35
    return {
        "industry": label,
        "intent": intent,
        "segment": segment,
        "confidence": round(confidence, 2),
        "signals": signals[:6],
        "reasoning": t.CLASSIFY_REASONING.format(
            signals=", ".join(signals[:6]) or "none",
            size=size,
            segment=segment,
            intent=intent,
            why=why,
            label=label,
        ),
    }


def score(lead: Lead, classification: dict[str, Any]) -> dict[str, Any]:
    """Fit score from size, industry, title seniority and tech stack, with the points shown."""
    label = str(classification.get("industry") or _industry(lead, "")[0])
    size, industry = _size(lead.employees)[1], t.INDUSTRY_FIT.get(label, 6)
    (seniority, rank), tech = _seniority(lead.title), min(15, 3 * len(lead.tech_stack))
    fit = max(0, min(100, size + industry + seniority + tech))
    band = "Strong" if fit >= 70 else "Moderate" if fit >= 45 else "Weak"
    stack = ", ".join(lead.tech_stack[:3]) or "none known"
    return {
        "fit_score": fit,
        "rationale": t.SCORE_RATIONALE.format(
            band=band,
            label=label,
            size=size,
            title=lead.title or "of unknown title",
            rank=rank,
            stack=stack,
            fit=fit,
        ),
        "factors": {"size": size, "industry": industry, "seniority": seniority, "tech": tech},
    }


def analyze(lead: Lead, site: str) -> dict[str, Any]:
    """Website analysis; the summary is built from the site's own sentences and the CRM record."""
    label = _industry(lead, site)[0]
    products, pains, techs = _products(site, lead), _pains(label, site, lead), _techs(site, lead)
    careers = bool(t.CAREERS_RE.search(site))
    segment = _size(lead.employees)[0].replace("_", "-")
    paragraphs = [
        t.ANALYSIS_OPENING.format(
            company=lead.company or "The company",
            article="an" if segment[0] in "ae" else "a",
            segment=segment,
            industry=label,
            website=lead.website or "its website",
            where=f" based in {lead.country}" if lead.country else "",
            size=f" with about {lead.employees} employees" if lead.employees else "",
        )
    ]
    quoted: list[str] = []
    for i, sentence in enumerate(_sentences(site)):
        if sum(map(len, quoted)) > _SUMMARY_SITE_CHARS:
            break
        quoted.append(f"{t.CONNECTORS[i % len(t.CONNECTORS)]} {sentence}")
    paragraphs += [" ".join(quoted[i : i + 5]) for i in range(0, len(quoted), 5)]
    paragraphs += [
        t.ANALYSIS_PRODUCT.format(product=product, pain=pains[i % len(pains)], industry=label)
        for i, product in enumerate(products)
    ]
    paragraphs.append(
        t.ANALYSIS_CLOSING.format(
            pains=", ".join(pains),
            techs=", ".join(techs) or "none named",
            careers="The site lists open roles, so the team is growing." if careers else "",
        ).strip()
    )
    return {
        "summary": "\n\n".join(paragraphs),
        "products": products,
        "pain_points": pains,
        "tech_signals": techs,
        "has_career_page": careers,
        "has_enterprise_tech_stack": any(x.lower() in t.ENTERPRISE_TECH for x in techs),
    }


def demo(lead: Lead, analysis: dict[str, Any]) -> dict[str, Any]:
    """A personalised demo page: a title, an outline and a self-contained HTML document."""
    label, company = _industry(lead, "")[0], lead.company or "your team"
    product = (_strings(analysis.get("products")) or _products("", lead))[0]
    pains = _strings(analysis.get("pain_points")) or _pains(label, "", lead)
    tech = ", ".join((_strings(analysis.get("tech_signals")) or list(lead.tech_stack))[:3])
    tech = tech or "your existing tools"
    outline = [
        f"What {pains[0]} costs {company} today",
        f"A guided tour of {product}",
        *(f"Use case: fewer hours lost to {pain}" for pain in pains[1:3]),
        f"Connecting to {tech}",
        "Expected impact in the first 90 days",
    ]
    title = f"{company}: a tailored walkthrough of {product}"
    esc = {
        "company": company,
        "product": product,
        "tech": tech,
        "industry": label,
        "first": lead.first_name or "your team",
        "title": title,
    }
    esc = {key: html.escape(value) for key, value in esc.items()}
    sections = "".join(
        t.DEMO_SECTION.format(
            n=i + 1,
            heading=html.escape(heading),
            paragraphs="".join(
                f"<p>{p.format(**esc, pain=html.escape(pains[(i + j) % len(pains)]))}</p>"
                for j, p in enumerate(t.DEMO_PARAGRAPHS)
            ),
        )
        for i, heading in enumerate(outline)
    )
    rows = "".join(
        t.DEMO_ROW.format(pain=html.escape(p), before=8 + _hash(p, title) % 30, after=2 + i)
        for i, p in enumerate(pains)
    )
    page = t.DEMO_PAGE.format(css=t.DEMO_CSS, sections=sections, rows=rows, **esc)
    return {"title": title, "outline": outline, "html": page}


def personalize(lead: Lead, analysis: dict[str, Any], model: str) -> dict[str, str]:
    """Outreach email; a cheap model writes a generic one for a deterministic ~25 % of leads."""
    label = _industry(lead, "")[0]
    industry = (lead.industry or (label if label != "other" else "growing")).lower()
    first = lead.first_name or "there"
    if writes_generic(lead.company, model):
        body = t.GENERIC_BODY.format(first=first, industry=industry)
        return {"subject": t.GENERIC_SUBJECT, "body": body}
    products = _strings(analysis.get("products")) or _products("", lead)
    pains = _strings(analysis.get("pain_points")) or _pains(label, "", lead)
    pick, stack = _hash(lead.company, model), lead.tech_stack
    fields = {
        "first": first,
        "company": lead.company or "your company",
        "industry": industry,
        "product": products[pick % len(products)],
        "pain": pains[pick % len(pains)],
        "opener": t.OPENERS[pick % len(t.OPENERS)],
        "size": f"of about {lead.employees} people" if lead.employees else "at your stage",
        "tech": f"Because you already run {stack[0]}, the rollout stays small."
        if stack
        else "The rollout stays small and needs no new infrastructure.",
        "role": f"Given your role as {lead.title}," if lead.title else "As you are close to this,",
    }
    subject = t.PERSONAL_SUBJECTS[pick % len(t.PERSONAL_SUBJECTS)].format(**fields)
    return {"subject": subject, "body": t.PERSONAL_BODY.format(**fields)}


def judge(lead: Lead, draft: dict[str, Any], analysis: dict[str, Any]) -> dict[str, Any]:
    """Score a draft against the lead: overall = .3 prof + .35 pers + .25 rel + .1 (1 - spam)."""
    subject, body = str(draft.get("subject") or ""), str(draft.get("body") or "")
    text = f"{subject}\n{body}"
    ok = _draft_checks(lead, text, analysis)
    known = {w.upper() for w in re.findall(r"\w+", f"{lead.company} {' '.join(lead.tech_stack)}")}
    caps = [w for w in re.findall(r"\b[A-Z]{4,}\b", text) if w not in known]
    spam = 0.05 + 0.12 * len(t.SPAM_RE.findall(text)) + 0.1 * len(caps) + 0.2 * ("!!!" in text)
    spam = min(1.0, spam + 0.03 * max(0, text.count("!") - 1) + 0.2 * (len(text.split()) > 250))
    polite = bool(t.GREETING_RE.match(body)) + bool(t.SIGN_OFF_RE.search(body[-120:]))
    prof = 0.8 + 0.05 * polite + 0.1 * (60 <= len(body.split()) <= 250) - 0.8 * (spam - 0.05)
    scores = {
        "professionalism": round(max(0.0, min(1.0, prof)), 3),
        "personalization": round(
            0.2 + 0.3 * ok["company"] + 0.15 * ok["name"] + 0.35 * ok["pain"], 3
        ),
        "relevance": round(0.3 + 0.35 * ok["industry"] + 0.35 * ok["product"], 3),
        "spam_risk": round(spam, 3),
    }
    overall = 0.3 * scores["professionalism"] + 0.35 * scores["personalization"]
    overall += 0.25 * scores["relevance"] + 0.1 * (1 - scores["spam_risk"])
    names = {"first": lead.first_name or "the contact", "company": lead.company or "the company"}
    good = [t.FEEDBACK_GOOD[key].format(**names) for key in t.FEEDBACK_GOOD if ok[key]]
    missing = [key for key in ("company", "pain", "product", "industry") if not ok[key]]
    level = "high" if spam >= 0.5 else "moderate" if spam >= 0.2 else "low"
    feedback = " ".join(
        [
            f"The draft {', '.join(good) or 'has no lead-specific detail'}.",
            t.FEEDBACK_GENERIC.format(missing=", ".join(missing))
            if missing
            else t.FEEDBACK_SPECIFIC,
            t.FEEDBACK_SPAM.format(level=level),
        ]
    )
    return {**scores, "overall": round(overall, 3), "feedback": feedback}


def _sentences(text: str) -> list[str]:
    # Distinct, readable sentences in order; menus and fragments are too short to quote.
    seen: set[str] = set()
    out: list[str] = []
    for raw in _SENTENCE_RE.split(" ".join(text.split())):
        sentence = raw.strip()
        if 20 <= len(sentence) <= 300 and sentence.lower() not in seen and re.search("[a-z]", raw):
            seen.add(sentence.lower())
            out.append(sentence)
    return out


def _hash(*parts: object) -> int:
    # Python's hash() is salted per process; outputs must repeat across runs and workers.
    digest = hashlib.sha256("\x1f".join(str(part) for part in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _employees(value: object) -> int | None:
    # CRM exports say 450, "1,200" or "51-200"; a range counts as its upper end.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value) if value >= 0 else None
    numbers = [int(n) for n in re.findall(r"\d+", str(value or "").replace(",", ""))]
    return max(numbers) if numbers else None


def _industry(lead: Lead, site: str) -> tuple[str, list[tuple[str, int]], list[str]]:
    # The industry field weighs most, then the company name; notes and site text add evidence.
    fields = ((lead.industry, 3), (lead.company, 2), (lead.notes, 1), (site, 1))
    scores: dict[str, int] = {}
    signals: list[str] = []
    for label, pattern in t.WORDS_RE.items():
        for text, weight in fields:
            if hits := {m.lower() for m in pattern.findall(text or "")}:
                scores[label] = scores.get(label, 0) + weight * len(hits)
                signals += sorted(hits - set(signals))
    ranked = sorted(scores.items(), key=lambda kv: (-kv[1], t.INDUSTRIES.index(kv[0])))
    return (ranked[0][0] if ranked else "other"), ranked, signals


def _size(employees: int | None) -> tuple[str, int]:
    # (segment, fit points of 35); an unknown headcount scores like a small company.
    n = -1 if employees is None else employees
    segment = "enterprise" if n >= 1000 else "mid_market" if n >= 200 else "smb"
    return segment, 10 if n < 0 else next((p for top, p in t.SIZE_POINTS if n < top), 35)


def _intent(lead: Lead) -> tuple[str, str]:
    notes = (lead.notes or "").lower()
    for level, cues in (("high", t.HIGH_INTENT), ("medium", t.MEDIUM_INTENT)):
        if found := [cue for cue in cues if re.search(rf"\b{re.escape(cue)}\b", notes)]:
            return level, f"the notes mention {', '.join(found[:3])}"
    if _seniority(lead.title)[0] >= 17:
        return "medium", "the contact is senior enough to own a budget"
    return "low", "nothing in the record signals an active buying process"


def _seniority(title: str | None) -> tuple[int, str]:
    words = (title or "").lower()
    for cues, points, label in t.SENIORITY:
        if any(re.search(rf"\b{re.escape(cue)}\b", words) for cue in cues):
            return points, label
    return (5, "an individual contributor") if title else (3, "seniority unknown")


def _products(site: str, lead: Lead) -> list[str]:
    found = dict.fromkeys(name.strip() for name in t.PRODUCT_RE.findall(site))
    return list(found)[:5] or [f"the {lead.company or 'core'} platform"]


def _pains(label: str, site: str, lead: Lead) -> list[str]:
    # Pains whose words the site uses come first; the rest in a per-company order.
    lowered, catalogue = site.lower(), t.PAINS.get(label, t.PAINS["other"])
    shared = {p: sum(w in lowered for w in p.split() if len(w) > 4) for p in catalogue}
    return sorted(catalogue, key=lambda p: (-shared[p], _hash(lead.company, p) % 97))[:3]


def _techs(site: str, lead: Lead) -> list[str]:
    canonical = {name.lower(): name for name in t.TECH_NAMES}
    found = [*lead.tech_stack, *(canonical[m.lower()] for m in t.TECH_RE.findall(site))]
    first_spelling = {item.lower(): item for item in reversed(found)}
    return [first_spelling[key] for key in dict.fromkeys(i.lower() for i in found)][:8]


def _strings(value: object) -> list[str]:
    items = value if isinstance(value, list) else []
    return [str(item).strip() for item in items if str(item).strip()][:6]


def _draft_checks(lead: Lead, text: str, analysis: dict[str, Any]) -> dict[str, bool]:
    def mentions(terms: list[str]) -> bool:
        return any(term.lower() in text.lower() for term in terms if len(term) >= 2)

    label = _industry(lead, "")[0]
    pains = [p for group in t.PAINS.values() for p in group] + _strings(analysis.get("pain_points"))
    industry = re.findall(r"[a-z]{4,}", (lead.industry or "").lower())
    industry += [label, *t.INDUSTRY_WORDS.get(label, ())] if label != "other" else []
    products = [*_strings(analysis.get("products")), *lead.tech_stack]
    return {
        # A field the record lacks cannot be asked of the email, so it counts as met.
        "company": not lead.company or mentions([lead.company]),
        "name": not lead.first_name or mentions([lead.first_name]),
        "pain": mentions(pains),
        "industry": (label == "other" and not lead.industry) or mentions(industry),
        "product": mentions(products) or bool(t.NAMED_PRODUCT_RE.search(text)),
    }
