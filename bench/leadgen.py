"""Synthetic reference-day leads (DESIGN.md section 6) and their company websites.

Deterministic for a seed: ``share_enterprise`` of the leads are enterprise-tier by seed 003's
value formula, the rest smb; about a fifth have no industry in the CRM export, as real exports do.
"""

from __future__ import annotations

import csv
import random
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from pipeline.value import LeadSignals, estimate_lead_value, tier_for

INDUSTRIES = {
    "software": ("Cloud", "Software", "Labs"),
    "finance": ("Capital", "Payments", "Bank"),
    "healthcare": ("Health", "Clinics", "Medical"),
    "manufacturing": ("Manufacturing", "Robotics", "Metalworks"),
    "retail": ("Retail", "Stores", "Outfitters"),
    "hospitality": ("Hotels", "Inns", "Restaurants"),
    "logistics": ("Logistics", "Freight", "Shipping"),
    "education": ("Academy", "Learning", "University"),
    "legal": ("Legal", "Law", "Solicitors"),
    "marketing": ("Media", "Creative", "Agency"),
}
NAMES = (
    "Northwind",
    "Bluebird",
    "Granite",
    "Harbor",
    "Summit",
    "Cedar",
    "Aurora",
    "Meridian",
    "Lighthouse",
    "Evergreen",
    "Ironwood",
    "Silverline",
    "Brightwater",
    "Redwood",
    "Oakridge",
)
FOCUS = ("reporting", "scheduling", "billing", "fulfilment")
WORK = ("onboarding", "customer support", "order management", "compliance")
NEUTRAL = ("Holdings", "Group", "Partners", "& Co", "Ventures", "Collective")
TITLES_EXEC = ("CEO", "Founder", "VP Sales", "Chief Revenue Officer", "Director of Operations")
TITLES_OPS = ("Sales Manager", "Operations Lead", "Marketing Manager", "Office Manager")
COUNTRIES_HIGH = ("US", "GB", "CA", "AU")
COUNTRIES_OTHER = ("DE", "FR", "NL", "IE", "BR")


def _lead(rng: random.Random, index: int, enterprise: bool) -> dict[str, str]:
    while True:
        industry = rng.choice(list(INDUSTRIES))
        employees = rng.randint(1200, 20000) if enterprise else rng.randint(3, 90)
        country = rng.choice(COUNTRIES_HIGH + COUNTRIES_OTHER)
        tech = rng.random() < (0.6 if enterprise else 0.05)
        signals = LeadSignals(employees, industry, country, has_enterprise_tech_stack=tech)
        tier = tier_for(estimate_lead_value(signals)).value
        if tier == ("enterprise" if enterprise else "smb"):
            break
    listed = rng.random() < 0.8  # a fifth of real exports leave the industry blank...
    # ...and those companies get neutral names, so the keyword rules cannot guess them.
    suffix = rng.choice(INDUSTRIES[industry]) if listed else rng.choice(NEUTRAL)
    name = f"{rng.choice(NAMES)} {suffix} {index:04d}"
    host = f"lead-{index:04d}.bench.example"
    return {
        "Company Name": name,
        "Website URL": f"https://{host}",
        "Email": f"contact{index}@{host}",
        "First Name": rng.choice(("Ana", "Ben", "Chen", "Dara")),
        "Job Title": rng.choice(TITLES_EXEC if rng.random() < 0.5 else TITLES_OPS),
        "Industry": industry.title() if listed else "",
        "Number of Employees": str(employees),
        "Country/Region": country,
        "Technologies": "Salesforce; Snowflake" if tech else "",
        "Notes": rng.choice(("", "Evaluating outbound tools", "Met at a trade show", "")),
    }


def write_leads(
    path: Path, *, count: int, share_enterprise: float, seed: int
) -> list[dict[str, str]]:
    """Write a HubSpot-style CSV of ``count`` leads and return the rows."""
    rng = random.Random(seed)
    n_ent = round(count * share_enterprise)
    kinds = [True] * n_ent + [False] * (count - n_ent)
    rng.shuffle(kinds)
    rows = [_lead(rng, i, ent) for i, ent in enumerate(kinds, 1)]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def site_page(host: str, path: str) -> str:
    """A deterministic company page of about 4-5 KB of text for ``host``."""
    rng = random.Random(host + path)
    industry = rng.choice(list(INDUSTRIES))
    paras = [
        f"We help {industry} teams grow with a focused product line and a people-first service "
        f"model. Our customers rely on us for {rng.choice(FOCUS)} "
        f"and for the day-to-day work that keeps their operations running."
        for _ in range(3)
    ]
    paras += [
        f"Our {rng.choice(('platform', 'service', 'team'))} handles {rng.choice(WORK)} "
        f"for more than {rng.randint(50, 5000)} clients, and we are investing in automation so "
        f"our staff can spend less time on manual follow-up and more time with customers."
        for _ in range(12)
    ]
    careers = '<a href="/careers.html">Careers - we are hiring</a>' if rng.random() < 0.5 else ""
    body = "".join(f"<p>{p}</p>" for p in paras)
    return (
        f"<html><head><title>{host}</title></head><body><nav><a href='/about.html'>About</a>"
        f"{careers}</nav><h1>{host}</h1>{body}</body></html>"
    )


class _SiteHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        parts = self.path.strip("/").split("/", 1)
        page = site_page(parts[0], parts[1] if len(parts) > 1 else "").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, format: str, *args: object) -> None:
        pass


def site_server() -> ThreadingHTTPServer:
    """A local server for every synthetic lead's website (mirror layout: /<host>/<path>)."""
    return ThreadingHTTPServer(("127.0.0.1", 0), _SiteHandler)
