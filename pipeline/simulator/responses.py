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
import math
import re
from dataclasses import dataclass
from typing import Any

from pipeline.simulator import config as t

STAGES = ("classify", "score", "analyze", "demo", "personalize", "judge")

_TASK_RE = re.compile(r"^[ \t]*leadpipe-task:[ \t]*([A-Za-z_]+)[ \t]*$", re.MULTILINE)
_OPEN_RE = re.compile(r"<(lead_data|website_text|analysis|email_draft|classification)>\s*")
_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'])")
_CAREERS_RE = re.compile(r"\b(careers?|jobs?|hiring|join our team|open (positions|roles))\b", re.I)
_TECH_RE = re.compile(rf"\b({'|'.join(map(re.escape, t.TECH_NAMES))})\b", re.I)
_PRODUCT_RE = re.compile(
    rf"\b[Oo]ur\s+((?:[A-Z][\w-]+\s+){{0,2}}(?:{'|'.join(t.PRODUCT_NOUNS)}))\b"
)
_NAMED_PRODUCT_RE = re.compile(rf"\b(?:[A-Z][\w-]+\s+){{1,2}}(?:{'|'.join(t.PRODUCT_NOUNS)})\b")
_SPAM_RE = re.compile(rf"(?<!\w)({'|'.join(map(re.escape, t.SPAM_WORDS))})(?!\w)", re.I)
_WORDS_RE = {
    label: re.compile(rf"\b({'|'.join(map(re.escape, words))})s?\b", re.I)
    for label, words in t.INDUSTRY_WORDS.items()
}
_SUMMARY_SITE_CHARS = 7_000  # keeps analyze near 2,400 completion tokens for a rich site
_TEXT_FIELDS = ("company", "website", "industry", "country", "title", "first_name", "notes")


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
        texts = [str(data.get(key) or "").strip() or None for key in _TEXT_FIELDS]
        stack = data.get("tech_stack")
        items = stack.split(",") if isinstance(stack, str) else stack or []
        tech = (
            tuple(s for s in (str(i).strip() for i in items) if s)
            if isinstance(items, list)
            else ()
        )
        return cls(*texts, employees=_employees(data.get("employees")), tech_stack=tech)


def estimate_tokens(text: str) -> int:
    """Estimate the tokens of ``text`` as ``ceil(len(text) / 4)`` (no tokenizer offline)."""
    return math.ceil(len(text) / 4)


def detect_stage(system: str) -> str | None:
    """Return the stage named by a ``leadpipe-task: <stage>`` line, or None.

    Only the system prompt is searched: the user message carries third-party data, and a task
    line hidden in a lead's notes must not switch the stage. An unknown stage counts as none.
    """
    stages = (m.group(1).lower() for m in _TASK_RE.finditer(system))
    return next((stage for stage in stages if stage in STAGES), None)


def parse_blocks(user: str) -> dict[str, Any]:
    """Return the tagged data blocks of a user message, keyed by tag (the first block wins).

    JSON blocks are decoded with ``json.JSONDecoder.raw_decode``, so text inside a JSON string can
    neither end the block nor open another one; a block that is not a JSON object becomes ``{}``.
    ``<website_text>`` runs to the last ``</website_text>``.
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
    if stage in ("classify", "analyze"):
        out = classify(lead, site) if stage == "classify" else analyze(lead, site)
    elif stage in ("demo", "personalize"):
        out = demo(lead, analysis) if stage == "demo" else personalize(lead, analysis, model)
    elif stage == "score":
        out = score(lead, blocks.get("classification", {}))
    else:
        out = judge(lead, blocks.get("email_draft", {}), analysis)
    return json.dumps(out, indent=2, ensure_ascii=False)


def is_premium(model: str) -> bool:
    """Return True when ``model`` is premium and always writes fully personalised emails."""
    name = model.lower()
    premium = any(marker in name for marker in t.PREMIUM_MARKERS)
    return premium or ("gpt-4o" in name and "mini" not in name)


def writes_generic(company: str | None, model: str) -> bool:
    """Return True when a cheap ``model`` writes a generic email for ``company`` (~25 %)."""
    return not is_premium(model) and _hash(company or "", model) % 100 < 25


def classify(lead: Lead, site: str) -> dict[str, Any]:
    """Keyword classification: industry, intent, segment and a confidence from the margin."""
    ranked, signals = _industry_scores(lead, site)
    label, best = ranked[0] if ranked else ("other", 0)
    margin = best - (ranked[1][1] if len(ranked) > 1 else 0)
    segment, (intent, why) = _segment(lead.employees), _intent(lead)
    size = f"{lead.employees} employees" if lead.employees else "an unknown headcount"
    return {
        "industry": label,
        "intent": intent,
        "segment": segment,
        "confidence": round(min(0.97, 0.45 + 0.08 * best + 0.05 * margin) if best else 0.35, 2),
        "signals": signals[:6],
        "reasoning": (
            f"Industry keywords in the lead record and website: {', '.join(signals[:6]) or 'none'}"
            f". With {size} the account sits in the {segment} segment; intent is {intent} "
            f"because {why}."
        ),
    }


def score(lead: Lead, classification: dict[str, Any]) -> dict[str, Any]:
    """Fit score from size, industry, title seniority and tech stack, with the points shown."""
    label = str(classification.get("industry") or _label(lead, ""))
    size, industry = _size_points(lead.employees), t.INDUSTRY_FIT.get(label, 6)
    (seniority, rank), tech = _seniority(lead.title), min(15, 3 * len(lead.tech_stack))
    fit = max(0, min(100, size + industry + seniority + tech))
    band = "Strong" if fit >= 70 else "Moderate" if fit >= 45 else "Weak"
    stack = ", ".join(lead.tech_stack[:3]) or "none known"
    return {
        "fit_score": fit,
        "rationale": (
            f"{band} fit: a {label} company ({size}/35 for size), the contact is "
            f"{lead.title or 'of unknown title'} ({rank}), and the stack ({stack}) shows how "
            "readily they adopt new tools."
        ),
        "factors": {"size": size, "industry": industry, "seniority": seniority, "tech": tech},
    }


def analyze(lead: Lead, site: str) -> dict[str, Any]:
    """Website analysis; the summary is built from the site's own sentences and the CRM record."""
    label = _label(lead, site)
    products, pains, techs = _products(site, lead), _pains(label, site, lead), _techs(site, lead)
    careers = bool(_CAREERS_RE.search(site))
    where = f" based in {lead.country}" if lead.country else ""
    size = f" with about {lead.employees} employees" if lead.employees else ""
    segment = _segment(lead.employees).replace("_", "-")
    paragraphs = [
        f"{lead.company or 'The company'} is a {segment} {label} business{where}{size}. This "
        f"summary draws on {lead.website or 'its website'} and the CRM record."
    ]
    sentences, chunk, used = split_sentences(site), [], 0
    for i, sentence in enumerate(sentences):
        chunk.append(f"{t.CONNECTORS[i % len(t.CONNECTORS)]} {sentence}")
        used += len(chunk[-1])
        if len(chunk) == 5 or used > _SUMMARY_SITE_CHARS or i == len(sentences) - 1:
            paragraphs.append(" ".join(chunk))
            chunk = []
        if used > _SUMMARY_SITE_CHARS:
            break
    hiring = "The site lists open roles, so the team is growing." if careers else ""
    closing = t.ANALYSIS_CLOSING.format(
        products=", ".join(products), pains=", ".join(pains), industry=label,
        techs=", ".join(techs) or "none named", careers=hiring,
    )  # fmt: skip
    return {
        "summary": "\n\n".join([*paragraphs, closing.strip()]),
        "products": products,
        "pain_points": pains,
        "tech_signals": techs,
        "has_career_page": careers,
        "has_enterprise_tech_stack": any(x.lower() in t.ENTERPRISE_TECH for x in techs),
    }


def demo(lead: Lead, analysis: dict[str, Any]) -> dict[str, Any]:
    """A personalised demo page: a title, an outline and a self-contained HTML document."""
    label, company = _label(lead, ""), lead.company or "your team"
    product = (_strings(analysis.get("products")) or _products("", lead))[0]
    pains = _strings(analysis.get("pain_points")) or _pains(label, "", lead)
    tech = ", ".join((_strings(analysis.get("tech_signals")) or list(lead.tech_stack))[:3])
    tech = tech or "your existing tools"
    outline = [
        f"Where {pains[0]} costs {company} time today",
        f"A guided tour of {product}",
        *(f"Use case: fewer hours lost to {pain}" for pain in pains[1:3]),
        f"Connecting to {tech}",
        "Expected impact in the first 90 days",
    ]
    title = f"{company}: a tailored walkthrough of {product}"
    e = {
        key: html.escape(value)
        for key, value in (("company", company), ("product", product), ("tech", tech),
                           ("industry", label), ("first", lead.first_name or "your team"))
    }  # fmt: skip
    sections = "".join(
        f'<section id="s{i + 1}"><h2>{html.escape(heading)}</h2>'
        + "".join(
            f"<p>{p.format(**e, pain=html.escape(pains[(i + j) % len(pains)]))}</p>"
            for j, p in enumerate(t.DEMO_PARAGRAPHS)
        )
        + "</section>"
        for i, heading in enumerate(outline)
    )
    rows = "".join(
        f"<tr><td>{html.escape(p)}</td><td>{8 + _hash(p, title) % 30} h/week</td>"
        f"<td>{2 + _hash(title, p) % 6} h/week</td></tr>"
        for p in pains
    )
    page = t.DEMO_PAGE.format(
        title=html.escape(title), css=t.DEMO_CSS, sections=sections, rows=rows, **e
    )
    return {"title": title, "outline": outline, "html": page}


def personalize(lead: Lead, analysis: dict[str, Any], model: str) -> dict[str, str]:
    """Outreach email; a cheap model writes a generic one for a deterministic ~25 % of leads."""
    label = _label(lead, "")
    industry = (lead.industry or (label if label != "other" else "growing")).lower()
    first = lead.first_name or "there"
    if writes_generic(lead.company, model):
        body = t.GENERIC_BODY.format(first=first, industry=industry)
        return {"subject": t.GENERIC_SUBJECT, "body": body}
    products = _strings(analysis.get("products")) or _products("", lead)
    pains = _strings(analysis.get("pain_points")) or _pains(label, "", lead)
    pick = _hash(lead.company, model)
    stack = lead.tech_stack
    fields = {
        "first": first, "company": lead.company or "your company", "industry": industry,
        "product": products[pick % len(products)], "pain": pains[pick % len(pains)],
        "opener": t.OPENERS[pick % len(t.OPENERS)],
        "size": f"of about {lead.employees} people" if lead.employees else "at your stage",
        "tech": f"Because you already run {stack[0]}, the rollout stays small." if stack
        else "The rollout stays small and needs no new infrastructure.",
        "role": f"Given your role as {lead.title}," if lead.title else "As you are close to this,",
    }  # fmt: skip
    subject = t.PERSONAL_SUBJECTS[pick % len(t.PERSONAL_SUBJECTS)].format(**fields)
    return {"subject": subject, "body": t.PERSONAL_BODY.format(**fields)}


def judge(lead: Lead, draft: dict[str, Any], analysis: dict[str, Any]) -> dict[str, Any]:
    """Score a draft against the lead: overall = .3 prof + .35 pers + .25 rel + .1 (1 - spam)."""
    subject, body = str(draft.get("subject") or ""), str(draft.get("body") or "")
    text = f"{subject}\n{body}"
    checks = _draft_checks(lead, text, analysis)
    allowed = {w.upper() for w in re.findall(r"\w+", f"{lead.company} {' '.join(lead.tech_stack)}")}
    caps = [w for w in re.findall(r"\b[A-Z]{4,}\b", text) if w not in allowed]
    spam = 0.05 + 0.12 * len(_SPAM_RE.findall(text)) + 0.1 * len(caps) + 0.2 * ("!!!" in text)
    spam = min(1.0, spam + 0.03 * max(0, text.count("!") - 1) + 0.2 * (len(text.split()) > 250))
    greets = bool(re.match(r"\s*(hi|hello|dear|good)\b", body, re.I))
    signs = bool(
        re.search(r"\b(regards|best|thanks|thank you|sincerely|cheers)\b", body[-120:], re.I)
    )
    prof = (
        0.8 + 0.05 * (greets + signs) + 0.1 * (60 <= len(body.split()) <= 250) - 0.8 * (spam - 0.05)
    )
    scores = {
        "professionalism": round(max(0.0, min(1.0, prof)), 3),
        "personalization": round(
            0.2 + 0.3 * checks["company"] + 0.15 * checks["name"] + 0.35 * checks["pain"], 3
        ),
        "relevance": round(0.3 + 0.35 * checks["industry"] + 0.35 * checks["product"], 3),
        "spam_risk": round(spam, 3),
    }
    overall = 0.3 * scores["professionalism"] + 0.35 * scores["personalization"]
    overall += 0.25 * scores["relevance"] + 0.1 * (1 - scores["spam_risk"])
    return {**scores, "overall": round(overall, 3), "feedback": _feedback(lead, checks, spam)}


def split_sentences(text: str) -> list[str]:
    """Return the distinct, readable sentences of ``text`` in order (20 to 300 characters)."""
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
    # CRM exports say 450, "1,200", "51-200" or "10k"; a range counts as its upper end.
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return int(value) if value >= 0 else None
    numbers = re.findall(r"\d+(?:\.\d+)?k?", str(value).replace(",", "").lower())
    counts = [float(n[:-1]) * 1000 if n.endswith("k") else float(n) for n in numbers]
    return int(max(counts)) if counts else None


def _industry_scores(lead: Lead, site: str) -> tuple[list[tuple[str, int]], list[str]]:
    # The industry field weighs most, then the company name; notes and site text add evidence.
    fields = ((lead.industry, 3), (lead.company, 2), (lead.notes, 1), (site, 1))
    scores: dict[str, int] = {}
    signals: list[str] = []
    for label, pattern in _WORDS_RE.items():
        for text, weight in fields:
            if hits := {m.lower() for m in pattern.findall(text or "")}:
                scores[label] = scores.get(label, 0) + weight * len(hits)
                signals += sorted(hits - set(signals))
    order = list(t.INDUSTRIES)
    return sorted(scores.items(), key=lambda kv: (-kv[1], order.index(kv[0]))), signals


def _label(lead: Lead, site: str) -> str:
    ranked, _ = _industry_scores(lead, site)
    return ranked[0][0] if ranked else "other"


def _segment(employees: int | None) -> str:
    if employees is None or employees < 200:
        return "smb"
    return "mid_market" if employees < 1000 else "enterprise"


def _size_points(employees: int | None) -> int:
    bands = ((10, 5), (50, 12), (200, 20), (1000, 28))
    if employees is None:
        return 10
    return next((points for limit, points in bands if employees < limit), 35)


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
    found = dict.fromkeys(name.strip() for name in _PRODUCT_RE.findall(site))
    return list(found)[:5] or [f"the {lead.company or 'core'} platform"]


def _pains(label: str, site: str, lead: Lead) -> list[str]:
    # Pains whose words the site uses come first; the rest in a per-company order.
    lowered = site.lower()

    def rank(pain: str) -> tuple[int, int]:
        shared = sum(word in lowered for word in pain.split() if len(word) > 4)
        return -shared, _hash(lead.company, pain) % 97

    return sorted(t.PAINS.get(label, t.PAINS["other"]), key=rank)[:3]


def _techs(site: str, lead: Lead) -> list[str]:
    canonical = {name.lower(): name for name in t.TECH_NAMES}
    found = [*lead.tech_stack, *(canonical[m.lower()] for m in _TECH_RE.findall(site))]
    first_spelling = {item.lower(): item for item in reversed(found)}
    return [first_spelling[key] for key in dict.fromkeys(i.lower() for i in found)][:8]


def _strings(value: object) -> list[str]:
    items = value if isinstance(value, list) else []
    return [str(item).strip() for item in items if str(item).strip()][:6]


def _draft_checks(lead: Lead, text: str, analysis: dict[str, Any]) -> dict[str, bool]:
    def mentions(terms: list[str]) -> bool:
        return any(term.lower() in text.lower() for term in terms if len(term) >= 2)

    label = _label(lead, "")
    pains = [p for group in t.PAINS.values() for p in group] + _strings(analysis.get("pain_points"))
    industry = re.findall(r"[a-z]{4,}", (lead.industry or "").lower())
    industry += [label, *t.INDUSTRY_WORDS.get(label, ())] if label != "other" else []
    products = [*_strings(analysis.get("products")), *lead.tech_stack]
    return {
        # A field the record lacks cannot be asked of the email, so it counts as met.
        "company": not lead.company or mentions([lead.company]),
        "name": not lead.first_name or mentions([lead.first_name]),
        "pain": mentions(pains),
        "industry": mentions(industry),
        "product": mentions(products) or bool(_NAMED_PRODUCT_RE.search(text)),
    }


def _feedback(lead: Lead, checks: dict[str, bool], spam: float) -> str:
    names = {"first": lead.first_name or "the contact", "company": lead.company or "the company"}
    good = [t.FEEDBACK_GOOD[key].format(**names) for key in t.FEEDBACK_GOOD if checks[key]]
    missing = [key for key in ("company", "pain", "product", "industry") if not checks[key]]
    level = "high" if spam >= 0.5 else "moderate" if spam >= 0.2 else "low"
    return " ".join([
        f"The draft {', '.join(good) or 'has no lead-specific detail'}.",
        t.FEEDBACK_GENERIC.format(missing=", ".join(missing)) if missing else t.FEEDBACK_SPECIFIC,
        t.FEEDBACK_SPAM.format(level=level),
    ])  # fmt: skip
