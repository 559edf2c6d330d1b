"""Configuration of the provider simulator: live settings, labels, vocabularies and templates.

- :class:`SimulatorConfig`: latency and failure injection. It is immutable; the server swaps in
  a new one when a test posts to ``/_sim/config``, so a request sees one consistent set of values.
- Labels (``LABEL``, ``FINGERPRINT``, ``BANNER``) that mark every answer as simulated.
- The fixed vocabularies and text templates the fake stage outputs are built from.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_FLOAT_FIELDS = (
    "latency_scale",
    "error_rate",
    "timeout_s",
    "base_latency_ms",
    "per_token_ms",
    "slow_tail_s",
    "rate_window_s",
    "batch_delay_s",
    "batch_expire_s",
    "batch_error_rate",
)
_OPTIONAL_INT_FIELDS = ("retry_after_s", "seed")
_INT_FIELDS = ("slots",)

# How a weak model answers badly, in the order a request's draw walks them:
# - wrong_keys: valid JSON whose keys are not the ones asked for;
# - prose: the right JSON wrapped in chatter and a code fence;
# - truncated: the answer cut at the token cap, finish_reason "length" / stop_reason "max_tokens";
# - missing_fields: valid JSON with some of the asked-for keys left out;
# - slow: a good answer after an extra ``slow_tail_s`` seconds (a latency tail);
# - unauthorized: HTTP 401, as from a revoked or mistyped key.
FAULT_KINDS = ("wrong_keys", "prose", "truncated", "missing_fields", "slow", "unauthorized")
QUALITIES = ("good", "weak")
# ``quality="weak"``: about 36 % of answers go wrong in one of the ways above, roughly what a
# 135M-parameter model served by llama.cpp does with leadpipe's prompts. A 401 is not in the
# preset: it is a property of a key, not of one request (the gateway rightly takes a refusing
# model out of every chain for a while), so it is configured per model:
# ``fault_rates={"unauthorized": 1.0}`` with ``fault_models=[...]``.
WEAK_RATES: dict[str, float] = {
    "wrong_keys": 0.08,
    "prose": 0.10,
    "truncated": 0.06,
    "missing_fields": 0.08,
    "slow": 0.04,
}


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """Latency and failure settings of the simulator.

    Attributes:
        latency_scale: Multiplies every simulated delay; 0 answers at once (tests).
        error_rate: Fraction of requests (0..1) failing with a random 429, 500, 503 or timeout.
        fail_models: Model name -> failure probability (1.0 = always fails) with a random
            500 or 503 (a broken model), answered at once so fallback tests stay fast. A 429
            is a rate limit, not a broken model: see ``rate_limits``.
        timeout_s: How long a "timeout" failure sleeps before it answers 504.
        retry_after_s: ``Retry-After`` header value sent with 429 answers (None: no header).
        seed: Seed of the RNG behind jitter and failures (None: seeded from the OS).
        base_latency_ms: Fixed part of the latency of a successful answer.
        per_token_ms: Latency per completion token of a successful answer.
        quality: "good" (every answer in shape) or "weak" (:data:`WEAK_RATES` of bad answers).
        fault_rates: Failure kind (:data:`FAULT_KINDS`) -> probability, over the preset of
            ``quality``. The kind is drawn from a hash of the seed and the request, so the same
            request always gets the same answer (repeatable tests, whatever the thread order).
        fault_models: Model names (substrings) the faults apply to; empty: every model.
        slow_tail_s: Extra seconds a "slow" answer takes.
        rate_limits: Model name -> requests accepted in any ``rate_window_s`` sliding window;
            one more is answered 429 with ``Retry-After`` (whole seconds until a slot frees).
        rate_window_s: The window of ``rate_limits`` (60: requests per minute).
        batch_delay_s: Seconds a provider batch (OpenAI ``/v1/batches``, Anthropic
            ``/v1/messages/batches``) stays in progress before it completes; a test makes a
            batch "late" with a delay longer than its deadline margin.
        batch_expire_s: A batch still unfinished this many seconds after creation expires
            (OpenAI ``expired``, Anthropic ``expired`` results); 0 = never.
        batch_error_rate: Fraction (0..1) of the requests inside a batch that fail on their
            own (drawn from a hash of the seed and the ``custom_id``: repeatable).
        batch_error_ids: Requests whose ``custom_id`` contains one of these strings fail.
        slots: Self-hosted mode (vLLM ``max_num_seqs``, llama.cpp ``--n_parallel``): at most
            this many requests are answered at once, each taking its per-token latency; the
            rest wait for a free slot. 0: every request is answered at once (a cloud API).
    """

    latency_scale: float = 1.0
    error_rate: float = 0.0
    fail_models: dict[str, float] = field(default_factory=dict)
    timeout_s: float = 35.0
    retry_after_s: int | None = 1
    seed: int | None = None
    base_latency_ms: float = 300.0
    per_token_ms: float = 8.0
    quality: str = "good"
    fault_rates: dict[str, float] = field(default_factory=dict)
    fault_models: tuple[str, ...] = ()
    slow_tail_s: float = 20.0
    rate_limits: dict[str, int] = field(default_factory=dict)
    rate_window_s: float = 60.0
    batch_delay_s: float = 0.0
    batch_expire_s: float = 0.0
    batch_error_rate: float = 0.0
    batch_error_ids: tuple[str, ...] = ()
    slots: int = 0

    def __post_init__(self) -> None:
        for name in _FLOAT_FIELDS:
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.slots < 0:
            raise ValueError(f"slots must be >= 0, got {self.slots!r}")
        self._check_probabilities()
        _check_rate_limits(self.rate_limits, self.rate_window_s)
        if self.quality not in QUALITIES:
            raise ValueError(f"quality must be one of {', '.join(QUALITIES)}, got {self.quality!r}")
        for kind, rate in self.fault_rates.items():
            if kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")
            if not 0 <= rate <= 1:
                raise ValueError(f"fault_rates[{kind!r}] must be within 0..1")
        if sum(self.rates().values()) > 1:
            raise ValueError("the fault rates add up to more than 1")
        # Private copies, so the caller's objects cannot change a frozen config behind our back.
        object.__setattr__(self, "fail_models", dict(self.fail_models))
        object.__setattr__(self, "fault_rates", dict(self.fault_rates))
        object.__setattr__(self, "rate_limits", dict(self.rate_limits))
        object.__setattr__(self, "fault_models", tuple(self.fault_models))
        object.__setattr__(self, "batch_error_ids", tuple(self.batch_error_ids))

    def _check_probabilities(self) -> None:
        for name in ("error_rate", "batch_error_rate"):
            if getattr(self, name) > 1:
                raise ValueError(f"{name} must be within 0..1, got {getattr(self, name)!r}")
        for model, probability in self.fail_models.items():
            if not 0 <= probability <= 1:
                raise ValueError(f"fail_models[{model!r}] must be within 0..1")

    def rates(self) -> dict[str, float]:
        """Probability of each fault kind: the ``quality`` preset with ``fault_rates`` over it."""
        preset = WEAK_RATES if self.quality == "weak" else {}
        return {kind: self.fault_rates.get(kind, preset.get(kind, 0.0)) for kind in FAULT_KINDS}

    def fault_for(self, model: str, draw: float) -> str | None:
        """The fault kind a request with uniform ``draw`` (0..1) gets from ``model``, or None."""
        name = model.lower()
        if self.fault_models and not any(m.lower() in name for m in self.fault_models):
            return None
        edge = 0.0
        for kind, rate in self.rates().items():
            edge += rate
            if draw < edge:
                return kind
        return None

    def failure_probability(self, model: str) -> float:
        """Return the configured failure probability of ``model`` (0.0 when not listed)."""
        return self.fail_models.get(model, 0.0)

    def latency_s(self, completion_tokens: int, jitter: float = 1.0) -> float:
        """Return the simulated latency of a successful answer, in seconds.

        Args:
            completion_tokens: Tokens in the returned text.
            jitter: Random factor (the server draws it from 0.8..1.2).

        Returns:
            ``(base_latency_ms + per_token_ms * completion_tokens) * latency_scale * jitter``
            converted to seconds.
        """
        millis = self.base_latency_ms + self.per_token_ms * completion_tokens
        return max(0.0, millis * self.latency_scale * jitter / 1000)

    def to_dict(self) -> dict[str, Any]:
        """Return the config as a JSON-serialisable dict (what ``GET /_sim/config`` shows)."""
        return dataclasses.asdict(self)

    def updated(self, patch: Mapping[str, Any]) -> SimulatorConfig:
        """Return a copy with the fields in ``patch`` replaced (the ``POST /_sim/config`` body).

        Args:
            patch: Field name -> new value, as decoded from JSON.

        Returns:
            The new config; this one is unchanged.

        Raises:
            ValueError: an unknown field, a value of the wrong type or out of range.
        """
        changes: dict[str, Any] = {}
        for name, value in patch.items():
            if name in _FLOAT_FIELDS:
                changes[name] = float(_number(name, value))
            elif name in _INT_FIELDS:
                changes[name] = _integer(name, value)
            elif name in _OPTIONAL_INT_FIELDS:
                changes[name] = None if value is None else _integer(name, value)
            elif name == "quality":
                changes[name] = str(value)
            elif name in ("fault_models", "batch_error_ids"):
                names = list(value) if isinstance(value, list | tuple) else [None]
                if not all(isinstance(m, str) for m in names):
                    raise ValueError(f"{name} must be a list of strings")
                changes[name] = tuple(names)
            elif name in ("fault_rates", "fail_models"):
                changes[name] = _probabilities(name, value)
            elif name in _MAP_FIELDS:
                changes[name] = _MAP_FIELDS[name](value)
            else:
                raise ValueError(f"unknown config field {name!r}")
        return dataclasses.replace(self, **changes)


def _probabilities(name: str, value: object) -> dict[str, float]:
    if not isinstance(value, Mapping):
        what = "kind" if name == "fault_rates" else "model"
        raise ValueError(f"{name} must be an object of {what} -> probability")
    return {str(k): float(_number(f"{name}[{k}]", v)) for k, v in value.items()}


def _check_rate_limits(limits: Mapping[str, object], window_s: float) -> None:
    for model, limit in limits.items():
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"rate_limits[{model!r}] must be an integer >= 1")
    if window_s <= 0:
        raise ValueError("rate_window_s must be > 0")


def _rate_limits(value: object) -> dict[str, int]:
    if not isinstance(value, Mapping):
        raise ValueError("rate_limits must be an object of model -> requests per window")
    return {str(k): _integer(f"rate_limits[{k}]", v) for k, v in value.items()}


_MAP_FIELDS = {"rate_limits": _rate_limits}


def _number(name: str, value: object) -> float | int:
    # bool is an int subclass; "true" is never a sensible latency or probability.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    return value


def _integer(name: str, value: object) -> int:
    number = _number(name, value)
    if isinstance(number, float) and not number.is_integer():
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return int(number)


LABEL = "leadpipe provider SIMULATOR"  # in every log line, error message and the banner
FINGERPRINT = "leadpipe-simulator"
MODELS = (
    "claude-sonnet-4",
    "claude-3-5-haiku",
    "gpt-4o",
    "gpt-4o-mini",
    "deepseek-chat",
    "qwen-2.5-72b-instruct",
    "qwen-2.5-coder-32b-instruct",
    "llama-3.1-8b-instruct",
)
BANNER = f"""{LABEL}

This is an offline simulator of the OpenAI Chat Completions and Anthropic Messages APIs.
No real model is called: outputs are synthetic, built from the request data, with simulated
token counts, latency and failures.

POST /v1/chat/completions   POST /v1/messages   GET /v1/models   GET /health
Batch APIs: POST /v1/files, GET /v1/files/ID/content, POST|GET /v1/batches[/ID],
POST|GET /v1/messages/batches[/ID], GET /v1/messages/batches/ID/results
GET|POST /_sim/config       GET /_sim/stats     POST /_sim/reset

Weak-model mode (quality "weak" or fault_rates) answers some requests badly on purpose:
wrong keys, prose around the JSON, truncated at the token cap, missing fields, slow, 401.
"""


# ---------------------------------------------------------------------------------------------
# Fixed vocabularies and text templates the fake outputs are built from. They steer behaviour
# the way a model's weights would, so they live with the rest of the simulator's configuration.
# ---------------------------------------------------------------------------------------------

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

# Whole words or phrases (an optional plural "s" is allowed) that point at an industry.
INDUSTRY_WORDS: dict[str, tuple[str, ...]] = {
    "software": (
        "software",
        "saas",
        "cloud",
        "api",
        "devops",
        "developer",
        "app",
        "it services",
        "cybersecurity",
        "machine learning",
        "ai",
        "tech",
        "technology",
    ),
    "finance": (
        "finance",
        "financial",
        "fintech",
        "bank",
        "banking",
        "insurance",
        "insurer",
        "payment",
        "lending",
        "loan",
        "accounting",
        "investment",
        "wealth",
        "credit",
    ),
    "healthcare": (
        "healthcare",
        "health",
        "hospital",
        "clinic",
        "clinical",
        "medical",
        "pharma",
        "pharmaceutical",
        "biotech",
        "patient",
        "dental",
        "telehealth",
    ),
    "manufacturing": (
        "manufacturing",
        "manufacturer",
        "factory",
        "factories",
        "industrial",
        "machining",
        "production line",
        "automotive",
        "chemical",
        "fabrication",
    ),
    "retail": (
        "retail",
        "retailer",
        "ecommerce",
        "e-commerce",
        "shop",
        "store",
        "fashion",
        "apparel",
        "consumer goods",
        "merchandise",
        "grocery",
    ),
    "hospitality": (
        "hospitality",
        "hotel",
        "restaurant",
        "travel",
        "resort",
        "catering",
        "guest",
        "tourism",
    ),
    "logistics": (
        "logistics",
        "shipping",
        "freight",
        "transport",
        "transportation",
        "warehouse",
        "warehousing",
        "supply chain",
        "delivery",
        "fleet",
        "courier",
        "3pl",
    ),
    "education": (
        "education",
        "school",
        "university",
        "edtech",
        "learning",
        "academy",
        "course",
        "student",
        "college",
    ),
    "legal": ("legal", "law", "law firm", "attorney", "lawyer", "litigation", "counsel"),
    "marketing": (
        "marketing",
        "agency",
        "advertising",
        "seo",
        "media",
        "brand",
        "branding",
        "campaign",
        "creative",
    ),
}

# Points (of 25) an industry adds to the fit score of a sales-automation campaign.
INDUSTRY_FIT = {
    "software": 25,
    "finance": 22,
    "healthcare": 20,
    "logistics": 18,
    "manufacturing": 18,
    "marketing": 16,
    "retail": 13,
    "legal": 12,
    "education": 11,
    "hospitality": 10,
    "other": 6,
}

# (employees below, fit points of 35); 1,000 and more scores 35.
SIZE_POINTS = ((10, 5), (50, 12), (200, 20), (1000, 28))

# Short pain-point phrases per industry; the judge recognises any of them in a draft.
PAINS: dict[str, tuple[str, ...]] = {
    "software": (
        "slow release cycles",
        "cloud cost overruns",
        "manual customer onboarding",
        "churn from low product adoption",
    ),
    "finance": (
        "manual month-end reconciliation",
        "compliance reporting overhead",
        "slow loan approval times",
        "fraud review backlog",
    ),
    "healthcare": (
        "patient scheduling bottlenecks",
        "manual claims processing",
        "compliance documentation overhead",
        "no-shows for appointments",
    ),
    "manufacturing": (
        "unplanned machine downtime",
        "supply chain delays",
        "quality control rework",
        "manual production planning",
    ),
    "retail": (
        "inventory stockouts",
        "cart abandonment",
        "manual merchandising updates",
        "rising returns processing costs",
    ),
    "hospitality": (
        "booking no-shows",
        "seasonal staffing gaps",
        "manual guest communication",
        "low direct booking share",
    ),
    "logistics": (
        "manual dispatch planning",
        "late delivery exceptions",
        "empty miles",
        "shipment visibility gaps",
    ),
    "education": (
        "enrolment drop-off",
        "manual grading workload",
        "low course completion rates",
        "administrative overhead",
    ),
    "legal": (
        "manual document review",
        "billable hour leakage",
        "contract turnaround delays",
        "matter intake backlog",
    ),
    "marketing": (
        "manual campaign reporting",
        "unclear attribution",
        "client churn",
        "content production bottlenecks",
    ),
    "other": ("manual reporting", "fragmented customer data", "slow lead response times"),
}

TECH_NAMES = (
    "AWS",
    "Azure",
    "Google Cloud",
    "Kubernetes",
    "Docker",
    "Terraform",
    "Salesforce",
    "HubSpot",
    "Marketo",
    "Shopify",
    "Magento",
    "SAP",
    "Oracle",
    "NetSuite",
    "Workday",
    "ServiceNow",
    "Snowflake",
    "Databricks",
    "Tableau",
    "Power BI",
    "Stripe",
    "Zendesk",
    "Intercom",
    "Slack",
    "Jira",
    "React",
    "Python",
    "PostgreSQL",
    "MongoDB",
    "Kafka",
    "Twilio",
    "WordPress",
    "Microsoft Dynamics",
)
ENTERPRISE_TECH = frozenset(
    {
        "sap",
        "oracle",
        "salesforce",
        "workday",
        "servicenow",
        "snowflake",
        "databricks",
        "netsuite",
        "microsoft dynamics",
        "kubernetes",
    }
)

PREMIUM_MARKERS = ("sonnet", "opus", "gpt-4.1", "gpt-5", "gemini-1.5-pro", "large")

# (title words, fit points of 25, label) from most to least senior.
SENIORITY: tuple[tuple[tuple[str, ...], int, str], ...] = (
    (
        ("ceo", "cto", "cfo", "coo", "cio", "cmo", "cro", "chief", "founder", "owner", "president"),
        25,
        "an executive decision maker",
    ),
    (("vp", "vice president", "head"), 21, "a senior budget holder"),
    (("director",), 17, "a director who shapes the budget"),
    (("manager", "lead", "principal"), 11, "a manager who influences the choice"),
)

HIGH_INTENT = (
    "demo",
    "pricing",
    "quote",
    "trial",
    "budget",
    "evaluating",
    "asap",
    "urgent",
    "rfp",
    "purchase",
    "replace",
    "switching",
)
MEDIUM_INTENT = (
    "webinar",
    "download",
    "downloaded",
    "whitepaper",
    "newsletter",
    "event",
    "visited",
    "interested",
    "follow up",
    "conference",
)

SPAM_WORDS = (
    "free",
    "guarantee",
    "guaranteed",
    "act now",
    "limited time",
    "risk-free",
    "winner",
    "cash",
    "click here",
    "no cost",
    "buy now",
    "once in a lifetime",
    "100%",
    "urgent",
    "exclusive deal",
)

PRODUCT_NOUNS = (
    "Platform",
    "Suite",
    "Cloud",
    "Hub",
    "App",
    "Studio",
    "Portal",
    "Manager",
    "Analytics",
    "API",
    "Planner",
    "Tracker",
    "Engine",
    "Console",
    "Connect",
)

# The vocabularies above, compiled once.
CAREERS_RE = re.compile(r"\b(careers?|jobs?|hiring|join our team|open (positions|roles))\b", re.I)
TECH_RE = re.compile(rf"\b({'|'.join(map(re.escape, TECH_NAMES))})\b", re.I)
PRODUCT_RE = re.compile(rf"\b[Oo]ur\s+((?:[A-Z][\w-]+\s+){{0,2}}(?:{'|'.join(PRODUCT_NOUNS)}))\b")
NAMED_PRODUCT_RE = re.compile(rf"\b(?:[A-Z][\w-]+\s+){{1,2}}(?:{'|'.join(PRODUCT_NOUNS)})\b")
SPAM_RE = re.compile(rf"(?<!\w)({'|'.join(map(re.escape, SPAM_WORDS))})(?!\w)", re.I)
GREETING_RE = re.compile(r"\s*(hi|hello|dear|good (morning|afternoon))\b", re.I)
SIGN_OFF_RE = re.compile(r"\b(regards|best|thanks|thank you|sincerely|cheers)\b", re.I)
WORDS_RE = {
    label: re.compile(rf"\b({'|'.join(map(re.escape, words))})s?\b", re.I)
    for label, words in INDUSTRY_WORDS.items()
}

CONNECTORS = (
    "According to its website,",
    "The site also says:",
    "It further notes:",
    "Another page explains:",
    "The company states:",
    "Elsewhere on the site:",
    "The site adds:",
    "A product page reads:",
)

PERSONAL_SUBJECTS = (
    "{first}, an idea for {pain} at {company}",
    "{company}: less time lost to {pain}",
    "A quicker route past {pain} for {company}",
)

PERSONAL_BODY = """Hi {first},

I spent some time on the {company} website, and your work on {product} stood out, \
especially for a {industry} team {size}. {opener}

Teams in a similar position often tell us that {pain} quietly eats into margins and keeps \
people away from customers. {tech}

We help {industry} companies cut that work down with a light setup that plugs into the tools \
they already use. In practice that means fewer handoffs, clearer ownership and numbers your \
leadership can trust, without a long implementation project.

{role} I thought a short walkthrough tailored to {company} might be useful: I can show how a \
team of similar size tackled {pain} in its first month and what changed for the people behind \
{product}.

Would a 20-minute call next Tuesday or Wednesday work? If the timing is off, I am happy to send \
a two-page summary instead.

Best regards,
Jordan Reyes"""

OPENERS = (
    "It is clear you care about doing the basics very well.",
    "The way you describe it makes the value easy to grasp.",
    "It reads like a team that is scaling with intent.",
)

GENERIC_SUBJECT = "Quick question about your priorities this quarter"

GENERIC_BODY = """Hi {first},

I hope this message finds you well. I am reaching out because we work with many {industry} \
organisations that want to make their teams more efficient and grow revenue without adding \
complexity.

Our solution helps businesses streamline their operations, improve collaboration and get better \
results from the tools they already have. Customers typically see meaningful improvements within \
the first few months, and our team supports you at every step of the way.

I would love to learn more about your goals and share a few ideas that have worked well for \
similar organisations. Even if the timing is not right, a short conversation could help you \
benchmark your current approach and spot a few quick wins for the rest of the year. Many of the \
leaders we speak with say it was time well spent, whatever they decided afterwards.

Would you be open to a 15-minute call next week? Let me know what time works best for you, and I \
will send over an invitation.

Best regards,
Jordan Reyes"""

DEMO_CSS = (
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1f2933;"
    "background:#f7f9fb}header{background:#0b3d91;color:#fff;padding:48px 32px}header h1{margin:"
    "0 0 8px;font-size:2rem}header p{margin:0;opacity:.85}main{max-width:880px;margin:0 auto;"
    "padding:32px}section{background:#fff;border-radius:10px;box-shadow:0 1px 3px rgba(0,0,0,.08"
    ");padding:24px 28px;margin-bottom:24px}h2{color:#0b3d91;font-size:1.3rem}table{width:100%;"
    "border-collapse:collapse}th,td{text-align:left;padding:8px 10px;border-bottom:1px solid #e4"
    "e7eb}ol li{margin-bottom:6px}.cta{display:inline-block;background:#0b3d91;color:#fff;"
    "padding:12px 22px;border-radius:6px;text-decoration:none}footer{text-align:center;"
    "font-size:.8rem;color:#7b8794;padding:24px}"
)

# Paragraphs of every demo section; fields: company, product, pain, tech, industry, first.
DEMO_SECTION = '<section id="s{n}"><h2>{heading}</h2>{paragraphs}</section>'
DEMO_ROW = "<tr><td>{pain}</td><td>{before} h/week</td><td>{after} h/week</td></tr>"
DEMO_PARAGRAPHS = (
    "For {company}, {pain} is more than an annoyance: it takes hours every week from the people "
    "who run {product}, and it makes planning harder for everyone downstream.",
    "In this walkthrough we use {company}'s own vocabulary and a realistic sample of its work, so "
    "the {industry} team can judge the fit in minutes rather than weeks.",
    "Everything shown connects to {tech}, so nothing has to be replaced and the first results "
    "arrive before the end of the quarter.",
    "{first} will see where the time goes today, which steps disappear, and how the team can "
    "check the numbers for itself after a two-week pilot.",
)

DEMO_PAGE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>\
<style>{css}</style></head><body><header><h1>{title}</h1><p>Prepared for {first} at {company}</p>\
</header><main>{sections}<section><h2>Before and after</h2><table><tr><th>Problem</th><th>Today\
</th><th>With {product}</th></tr>{rows}</table></section><section><h2>Next steps</h2><ol><li>\
Confirm the workflow {company} wants to start with.</li><li>Connect {tech} in a sandbox.</li><li>\
Review the results with {first} after two weeks.</li></ol><a class="cta" href="#s1">Book the \
walkthrough</a></section></main><footer>Generated by the leadpipe provider simulator</footer>\
</body></html>"""

CLASSIFY_REASONING = (
    "Industry keywords found in the lead record and website: {signals}, so the best match is "
    "{label}. With {size} the account sits in the {segment} segment. Intent is {intent} because "
    "{why}. Confidence reflects how clearly the keywords point to a single industry."
)
SCORE_RATIONALE = (
    "{band} fit ({fit}/100): a {label} company ({size}/35 points for size), the contact is "
    "{title} ({rank}), and the known stack ({stack}) shows how readily they adopt new tools."
)

ANALYSIS_OPENING = (
    "{company} is {article} {segment} {industry} business{where}{size}. This summary draws on "
    "{website} and the CRM record, for a rep preparing a first email."
)
ANALYSIS_PRODUCT = (
    "{product} looks like a core offering; a first email can ask how the team behind {product} "
    "copes with {pain}, a problem common for {industry} companies of this size."
)
ANALYSIS_CLOSING = (
    "The likeliest problems we could solve are {pains}. Technology seen: {techs}. {careers}"
)

GENERIC_REPLY = (
    "This is a simulated reply from {model} (leadpipe provider SIMULATOR). Your message of {words} "
    "words was received, but the system prompt has no leadpipe-task line, so this is a short "
    "generic answer."
)

FEEDBACK_GOOD = {
    "name": "addresses {first} by name",
    "company": "refers to {company} directly",
    "pain": "names a concrete pain point",
    "industry": "speaks to the industry",
    "product": "mentions a specific product or tool",
}
FEEDBACK_GENERIC = "It reads as generic: add the {missing} to show real research."
FEEDBACK_SPECIFIC = "It reads as written for this lead, with one clear call to action."
FEEDBACK_SPAM = "Spam risk is {level}; avoid hype words, all-caps and repeated exclamation marks."
