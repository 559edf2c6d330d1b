"""Field-level parsing for lead ingestion: header aliases, numbers, countries, URLs, emails.

Every parser takes the stripped cell text and either returns the normalised value or raises
:class:`FieldError` whose message is the human reject reason shown to the user.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from decimal import Decimal, InvalidOperation
from typing import Final
from urllib.parse import urlsplit

MAX_FIELD_CHARS: Final = 2000
MAX_NOTES_CHARS: Final = 2000
"""Notes longer than this are cut to it (with a warning); the row is kept."""
MAX_CELL_CHARS: Final = 100_000
"""A cell longer than this rejects its row (a pasted blob, not CRM data); the file goes on."""

# Canonical field -> header aliases, most preferred first. Aliases are compared after
# normalise_header(), so "Company Name", "CompanyName" and "company_name" are one alias and
# "# Employees" (Apollo) matches "employees".
# The order matters when a file has two columns for one field: Apollo exports carry both
# "Company" and "Company Name for Emails", and both a person "Country" and "Company Country".
HEADER_ALIASES: Final[dict[str, tuple[str, ...]]] = {
    "company": (
        "company",
        "company name",
        "account name",
        "organization",
        "company name for emails",
    ),
    "website": ("website", "website url", "company website", "company domain name", "domain"),
    "email": ("email", "email address", "work email"),
    "first_name": ("first_name", "given name"),
    "last_name": ("last_name", "surname", "family name"),
    "title": ("title", "job title", "position"),
    "industry": ("industry", "company industry", "sector"),
    "employees": (
        "employees",
        "number of employees",
        "employee count",
        "company size",
        "headcount",
    ),
    "revenue": ("revenue", "annual revenue", "company revenue"),
    "country": ("company country", "country", "country/region"),
    "tech_stack": ("tech_stack", "technologies", "technology"),
    "notes": ("notes", "note", "description", "comments"),
}


def normalise_header(name: str) -> str:
    """Reduce a column name to lower-case letters and digits for alias matching.

    Args:
        name: A header cell or JSON key as found in the file.

    Returns:
        The name case-folded with spaces, underscores and punctuation removed.
    """
    return re.sub(r"[\W_]+", "", name.casefold())


# normalised alias -> (field, preference rank); lower rank wins when two columns map to a field.
ALIAS_INDEX: Final[dict[str, tuple[str, int]]] = {
    normalise_header(alias): (field, rank)
    for field, aliases in HEADER_ALIASES.items()
    for rank, alias in enumerate(aliases)
}


class FieldError(ValueError):
    """A cell value is unusable; ``str(exc)`` is the reject reason."""


class CurrencyError(FieldError):
    """A revenue in a currency we do not convert: the field is dropped, the row is kept."""


def quote(value: str, limit: int = 60) -> str:
    """Quote a cell value for a reject reason, shortened and kept on one line.

    Args:
        value: The offending cell text.
        limit: Longest value shown before it is cut with an ellipsis.

    Returns:
        The value as a Python ``repr`` (so newlines are escaped).
    """
    return repr(value if len(value) <= limit else value[:limit] + "…")


_SIZE_WORDS: Final = re.compile(r"\s*(employees|employee|people|staff|fte)\s*$")
_THOUSANDS_COMMA: Final = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_NUM: Final = r"(\d+(?:\.\d+)?(?:e[+-]?\d+)?|\.\d+)([a-z]*)"
_QUANTITY: Final = re.compile(rf"^{_NUM}(?:(?:-|\u2013|\u2014|to){_NUM})?(\+)?$")
_EMPLOYEE_UNITS: Final = {"": Decimal(1), "k": Decimal(1000)}
_MONEY_UNITS: Final = {
    "": Decimal(1),
    "k": Decimal(10) ** 3,
    "thousand": Decimal(10) ** 3,
    "m": Decimal(10) ** 6,
    "mm": Decimal(10) ** 6,
    "mn": Decimal(10) ** 6,
    "million": Decimal(10) ** 6,
    "b": Decimal(10) ** 9,
    "bn": Decimal(10) ** 9,
    "billion": Decimal(10) ** 9,
}


def _bounds(text: str, units: dict[str, Decimal]) -> tuple[Decimal, Decimal] | None:
    """Parse "N", "N+", "N-M" or "N to M" (with unit suffixes) into (low, high)."""
    compact = _THOUSANDS_COMMA.sub("", text.casefold()).replace(" ", "").replace("_", "")
    match = _QUANTITY.match(compact)
    if match is None:
        return None
    low_num, low_unit, high_num, high_unit, plus = match.groups()
    if high_num is None:
        high_num, high_unit = low_num, low_unit
    elif plus:
        return None  # "10-50+" is not a shape any CRM writes
    if not low_unit:
        low_unit = high_unit  # "10-50M" means 10M to 50M
    if low_unit not in units or high_unit not in units:
        return None
    try:
        low, high = Decimal(low_num) * units[low_unit], Decimal(high_num) * units[high_unit]
    except InvalidOperation:
        return None
    if not (low.is_finite() and high.is_finite()) or low > high:
        return None
    return low, high


def parse_employees(text: str) -> int:
    """Parse an employee count or size band into one number.

    A band becomes the floor of the average of its bounds ("51-200" -> 125,
    "1,000-5,000" -> 3000, "11 to 50" -> 30); an open band is its lower bound ("10,000+" -> 10000);
    "5k" -> 5000; a trailing word such as "employees" is ignored.

    Args:
        text: The stripped cell text.

    Returns:
        The employee count.

    Raises:
        FieldError: The text is not a number or a range.
    """
    bounds = _bounds(_SIZE_WORDS.sub("", text), _EMPLOYEE_UNITS)
    if bounds is None:
        raise FieldError(f"employees {quote(text)} is not a number or range")
    return int((bounds[0] + bounds[1]) / 2)


_CURRENCY_PREFIX: Final = re.compile(r"^\s*(?:us\$|usd|us|\$)\s*|\s*(?:usd|\$)\s*$", re.IGNORECASE)
_OTHER_CURRENCY: Final = re.compile(r"[€£¥₹]|\b(?:eur|gbp|jpy|inr|cad|aud|chf|brl)\b", re.I)


def parse_revenue(text: str) -> Decimal:
    """Parse annual revenue in US dollars.

    Accepts "$1.2M", "1,200,000", "2.5B", "USD 500k", "1.2 million", "1.2E7" and ranges
    ("10M-50M" -> the midpoint, 30000000); "5M+" is its lower bound.

    Args:
        text: The stripped cell text.

    Returns:
        The amount in dollars; whole amounts have no fractional digits.

    Raises:
        FieldError: The text is not a dollar amount or range.
    """
    if _OTHER_CURRENCY.search(text):
        raise CurrencyError(f"revenue {quote(text)} is not in US dollars")
    cleaned = text
    for _ in range(2):  # a prefix and a suffix, e.g. "$1.2M USD"
        cleaned = _CURRENCY_PREFIX.sub("", cleaned)
    bounds = _bounds(cleaned.replace("$", ""), _MONEY_UNITS)
    if bounds is None:
        raise FieldError(f"revenue {quote(text)} is not a number or range")
    amount = (bounds[0] + bounds[1]) / 2
    if amount == amount.to_integral_value():
        return amount.quantize(Decimal(1))
    return amount.normalize()


# ISO 3166-1 alpha-2 code -> names and abbreviations seen in CRM exports (accents and dots
# are dropped before lookup, so "México" and "U.S.A." match "mexico" and "usa").
_COUNTRY_NAMES: Final[dict[str, tuple[str, ...]]] = {
    "US": ("united states", "united states of america", "usa", "us", "america"),
    "GB": ("united kingdom", "uk", "great britain", "britain", "england", "scotland", "wales"),
    "CA": ("canada",),
    "AU": ("australia",),
    "NZ": ("new zealand",),
    "IE": ("ireland", "republic of ireland", "eire"),
    "DE": ("germany", "deutschland"),
    "FR": ("france",),
    "ES": ("spain", "espana"),
    "IT": ("italy", "italia"),
    "PT": ("portugal",),
    "NL": ("netherlands", "holland", "nederland"),
    "BE": ("belgium", "belgique", "belgie"),
    "CH": ("switzerland", "schweiz", "suisse", "svizzera"),
    "AT": ("austria", "osterreich"),
    "SE": ("sweden", "sverige"),
    "NO": ("norway", "norge"),
    "DK": ("denmark", "danmark"),
    "FI": ("finland", "suomi"),
    "PL": ("poland", "polska"),
    "CZ": ("czech republic", "czechia"),
    "IN": ("india", "bharat"),
    "PH": ("philippines", "the philippines"),
    "SG": ("singapore",),
    "MY": ("malaysia",),
    "ID": ("indonesia",),
    "TH": ("thailand",),
    "VN": ("vietnam", "viet nam"),
    "JP": ("japan",),
    "KR": ("south korea", "korea", "republic of korea"),
    "CN": ("china", "peoples republic of china"),
    "HK": ("hong kong",),
    "TW": ("taiwan",),
    "AE": ("united arab emirates", "uae"),
    "SA": ("saudi arabia",),
    "IL": ("israel",),
    "TR": ("turkey", "turkiye"),
    "ZA": ("south africa",),
    "NG": ("nigeria",),
    "KE": ("kenya",),
    "EG": ("egypt",),
    "BR": ("brazil", "brasil"),
    "MX": ("mexico",),
    "AR": ("argentina",),
    "CL": ("chile",),
    "CO": ("colombia",),
}


def _country_key(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(ch for ch in plain if not unicodedata.combining(ch))
    plain = re.sub(r"[.'\u2019]", "", plain)
    plain = re.sub(r"[^a-z]+", " ", plain).strip()
    return plain.removeprefix("the ")


_COUNTRY_INDEX: Final[dict[str, str]] = {
    _country_key(name): code for code, names in _COUNTRY_NAMES.items() for name in (code, *names)
}


def normalise_country(text: str) -> str:
    """Map a country name or code to ISO 3166 alpha-2 where the small table knows it.

    Args:
        text: The stripped cell text, e.g. "United States", "U.S.", "uk", "Deutschland".

    Returns:
        The upper-case alpha-2 code ("US", "GB", "DE"), or the text unchanged when unknown.
    """
    return _COUNTRY_INDEX.get(_country_key(text), text)


def split_tech_stack(text: str) -> tuple[str, ...]:
    """Split a technologies cell on commas, semicolons and pipes.

    Args:
        text: e.g. "Salesforce; Snowflake; AWS".

    Returns:
        The names in order, stripped, without blanks or case-insensitive repeats.
    """
    seen: set[str] = set()
    names: list[str] = []
    for part in re.split(r"[,;|]", text):
        name = " ".join(part.split())
        if name and name.casefold() not in seen:
            seen.add(name.casefold())
            names.append(name)
    return tuple(names)


_EMAIL: Final = re.compile(r"^[^@\s]+@(?:[^@\s.]+\.)+[^@\s.]+$")


def normalise_email(text: str) -> str:
    """Validate an email address loosely and lower-case it.

    Args:
        text: The stripped cell text.

    Returns:
        The lower-cased address.

    Raises:
        FieldError: Not one "@" with a dotted domain after it.
    """
    if len(text) > 254 or not _EMAIL.match(text):
        raise FieldError(f"invalid email {quote(text)}")
    return text.lower()


_SCHEME: Final = re.compile(r"^([a-z][a-z0-9+.-]*):(//)?", re.IGNORECASE)
_LABEL: Final = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_SPACE: Final = re.compile(r"\s")  # the characters str.isspace() accepts (sre's Unicode \s)


def _valid_host(host: str) -> bool:
    labels = host.split(".")
    if len(host) > 253 or len(labels) < 2 or labels[-1].isdigit():
        return False  # a company site needs a dotted name; bare IPs are not accepted
    return all(_LABEL.match(label) for label in labels)


def normalise_website(text: str) -> str:
    """Validate a website and normalise it to ``scheme://host[:port]/path``.

    A missing scheme becomes ``https://``; the host is lower-cased (IDNA-encoded when
    non-ASCII); fragments and credentials are not kept.

    Args:
        text: The stripped cell text, e.g. "northwind-dental.example" or "HTTP://Acme.example/x".

    Returns:
        The URL, with "/" as the path when none was given.

    Raises:
        FieldError: Not an http(s) URL with a valid host name.
    """
    invalid = FieldError(f"invalid website {quote(text)}")
    scheme = _SCHEME.match(text)
    if scheme and not scheme.group(2) and text[scheme.end() :][:1].isdigit():
        scheme = None  # "acme.example:8080" is a host and port, not a scheme
    if scheme is None:
        text_url = "https://" + text
    elif scheme.group(1).lower() in ("http", "https") and scheme.group(2):
        text_url = text
    elif scheme.group(1).lower() in ("http", "https"):
        raise invalid
    else:
        raise FieldError(
            f"invalid website {quote(text)}: scheme {scheme.group(1)!r} is not http(s)"
        )
    if _SPACE.search(text_url):
        raise invalid
    try:
        parts = urlsplit(text_url)
        port = parts.port
        host = (parts.hostname or "").rstrip(".").encode("idna").decode("ascii")
    except (ValueError, UnicodeError):
        raise invalid from None
    if parts.username is not None or not _valid_host(host):
        raise invalid
    netloc = host if port is None else f"{host}:{port}"
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme.lower()}://{netloc}{parts.path or '/'}{query}"


_FREEMAIL: Final = """
gmail.com googlemail.com yahoo.com yahoo.co.uk hotmail.com hotmail.co.uk outlook.com live.com
msn.com icloud.com me.com mac.com aol.com proton.me protonmail.com gmx.com gmx.de gmx.net web.de
mail.com yandex.ru yandex.com qq.com 163.com 126.com zoho.com fastmail.com hey.com t-online.de
orange.fr free.fr libero.it btinternet.com
"""
FREEMAIL_DOMAINS: Final = frozenset(_FREEMAIL.split())
"""Personal mail providers: their domain names no company, so it is not a lead's identity."""


def website_domain(website: str | None) -> str | None:
    """The host of a normalised website without "www.", or None."""
    host = (urlsplit(website).hostname or "") if website else ""
    return host.removeprefix("www.") or None


def company_domain(email: str | None) -> str | None:
    """The domain of a work email; None for a free-mail address (it names no company)."""
    domain = email.rpartition("@")[2] if email else ""
    return domain if domain and domain not in FREEMAIL_DOMAINS else None


def company_from_domain(domain: str) -> str:
    """A readable company name from a domain: "northwind-dental.example" -> "Northwind Dental"."""
    labels = domain.removeprefix("www.").split(".")
    second_level = len(labels) >= 3 and labels[-2] in ("co", "com", "org", "net", "ac", "gov")
    name = labels[-3] if second_level else labels[-2] if len(labels) >= 2 else labels[0]
    return " ".join(part.capitalize() for part in re.split(r"[-_]+", name) if part) or domain


def identity_hash(*, company: str, email: str | None, website: str | None) -> str:
    """Content hash of a lead's identity, used to find duplicates across rows and files.

    Args:
        company: The cleaned company name (the identity only when there is no email or site).
        email: The lower-cased email, if any; when present it alone is the identity.
        website: The normalised website, if any; without an email its host (minus "www.") is
            the identity, so two rows for one site are one lead whatever the company is called.

    Returns:
        The SHA-256 hex digest.
    """
    domain = website_domain(website)
    if email:
        identity = f"email:{email}"
    elif domain:
        identity = f"domain:{domain}"
    else:
        identity = f"company:{company.casefold()}|"
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()
