"""The output guard: what an email must be before anyone may approve it, whatever the judge says.

An approved email is plain text with a subject and a body; it holds no unrendered template syntax,
no JSON, no HTML, no link except to the sender's or the lead's own site, and nothing that the
lead's notes (third-party CRM text) tried to make the model write. A failing email is held for
review with the reason; the judge's score never overrides it.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

_TEMPLATE = re.compile(r"\{\{|\}\}|\{%|%\}|\{#")
_HTML = re.compile(r"</?[a-zA-Z][a-zA-Z0-9]*(\s[^<>]*)?/?>")
_LINK = re.compile(
    r"(?i:https?://|www\.)[^\s<>\"')\]]+|\b(?:[a-z0-9-]+\.)+(?:com|net|org|io|ai|co|biz|info|xyz"
    r"|ru|cn|ly|me|app|dev)\b(?:/[^\s<>\"')\]]*)?"
)
_INJECTION = re.compile(
    r"ignore (?:all |any |the )?(?:previous|prior|above)|disregard (?:all |the )?(?:previous|"
    r"prior|above)|system prompt|you are now|new instructions|instead,? (?:write|say|include)|"
    r"(?:include|add|insert|put) (?:this|the following|a) link|respond with|reply with",
    re.IGNORECASE,
)
_WORD = re.compile(r"[a-z0-9']+")
_ECHO_WORDS = 6
"""A run of this many words of injected notes found in the email means the model obeyed them."""


def email_problem(
    subject: str,
    body: str,
    *,
    lead_website: str | None,
    sender_website: str | None,
    notes: str | None,
) -> str | None:
    """Why this email may not be approved, or None when it may."""
    if not subject.strip() or not body.strip():
        return "email without a subject or a body"
    if "\n" in subject.strip():
        return "subject is more than one line"
    text = f"{subject}\n{body}"
    if _TEMPLATE.search(text):
        return "unrendered template syntax in the email"
    if _looks_like_json(body):
        return "the body is JSON, not an email"
    if _HTML.search(text):
        return "HTML markup in a plain-text email"
    allowed = {h for h in (_host(lead_website), _host(sender_website)) if h}
    for link in _LINK.findall(text):
        if _host(link) not in allowed:
            return f"link to a site that is neither the sender's nor the lead's: {link[:80]}"
    return _injected(text, notes)


def _looks_like_json(body: str) -> bool:
    stripped = body.strip()
    if stripped[:1] not in ("{", "["):
        return '"subject"' in body and '"body"' in body
    try:
        json.loads(stripped)
    except ValueError:
        return stripped.endswith(("}", "]"))
    return True


def _host(url: str | None) -> str | None:
    """The registrable-ish host of a URL or bare domain, lower case, without ``www.``."""
    if not url:
        return None
    raw = url.strip()
    if "://" not in raw:
        raw = f"http://{raw}"
    host = (urlsplit(raw).hostname or "").lower().rstrip(".")
    return host.removeprefix("www.") or None


def _injected(text: str, notes: str | None) -> str | None:
    """The notes carried instructions and the email repeats them: the model followed them."""
    if not notes or not _INJECTION.search(notes):
        return None
    note_words = _WORD.findall(notes.lower())
    email = " ".join(_WORD.findall(text.lower()))
    for start in range(len(note_words) - _ECHO_WORDS + 1):
        run = " ".join(note_words[start : start + _ECHO_WORDS])
        if run in email:
            return f"the email repeats instructions from the lead's notes: '{run}'"
    return None
