"""Page content for ``pipeline.web.fetch``: visible text, title and same-site links of a body.

HTML goes through the standard library's forgiving ``html.parser``: real company sites ship
broken markup, and a summary only needs the words a visitor reads and the links to follow.
Nothing here touches the network; links found here are re-checked by the SSRF guard.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urldefrag, urljoin, urlsplit

__all__ = [
    "ParsedHtml",
    "collapse_whitespace",
    "decode_body",
    "html_to_text",
    "limit_text",
    "page_content",
    "parse_html",
    "plain_to_text",
    "same_site_links",
    "section_links",
]

# Elements whose content is never visible text.
_SKIP_TAGS = frozenset({"script", "style", "noscript", "svg", "template"})
# Elements that start a new line, so "<p>a</p><p>b</p>" does not read as "ab".
# Packed tag list left unformatted: one tag per line would make 30 lines of noise.
_BLOCK_TAGS = frozenset(
    {
        "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt",
        "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5",
        "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table",
        "td", "th", "tr", "ul",
    }
)  # fmt: skip
_MAX_TITLE_CHARS = 300
_MAX_HREFS = 500  # a link farm must not grow memory without bound
_WS = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class ParsedHtml:
    """What one pass over a document yields."""

    title: str
    text: str
    hrefs: tuple[str, ...]
    """Raw ``<a href>`` values in document order, not yet resolved or filtered."""


def collapse_whitespace(text: str) -> str:
    """Collapse every run of whitespace into one space and strip the ends.

    Args:
        text: Any text.

    Returns:
        The text on one line.
    """
    return _WS.sub(" ", text).strip()


def decode_body(data: bytes, charset: str | None) -> str:
    """Decode a body with its declared charset, else UTF-8; bad bytes become U+FFFD.

    Args:
        data: The raw body (possibly cut mid-character).
        charset: The Content-Type charset, if any.

    Returns:
        The text.
    """
    try:
        return data.decode(charset or "utf-8", errors="replace")
    except LookupError:  # an unknown charset name
        return data.decode("utf-8", errors="replace")


def html_to_text(html: str, *, max_chars: int) -> tuple[str, str]:
    """Extract the title and the visible text of an HTML document.

    Content of ``script``, ``style``, ``noscript``, ``svg`` and ``template`` is dropped, as are
    attributes (no alt text). Whitespace inside each block is collapsed to single spaces and
    blocks (paragraphs, headings, list items, ...) are joined with ``"\\n"``.

    Args:
        html: The document.
        max_chars: Upper bound on the length of the returned text.

    Returns:
        ``(title, text)``; title is ``""`` when the document has none.
    """
    parsed = parse_html(html, max_chars=max_chars)
    return parsed.title, parsed.text


def parse_html(html: str, *, max_chars: int) -> ParsedHtml:
    """Extract title, visible text and link targets in one pass.

    Args:
        html: The document.
        max_chars: Upper bound on the length of the returned text.

    Returns:
        The parsed document.
    """
    parser = _TextParser(max_chars)
    parser.feed(html)
    parser.close()
    return parser.result()


def page_content(
    body: str, *, mime: str, base: str, max_chars: int, max_links: int
) -> tuple[str, str, tuple[str, ...]]:
    """Reduce a fetched text/html, application/xhtml+xml or text/plain body.

    Args:
        body: The decoded body.
        mime: Its media type, lower case, without parameters.
        base: The URL the body came from, for resolving links.
        max_chars: Upper bound on the text length.
        max_links: Most links to return.

    Returns:
        ``(title, text, links)``; plain text has no title and no links.
    """
    if mime == "text/plain":
        return "", plain_to_text(body, max_chars=max_chars), ()
    parsed = parse_html(body, max_chars=max_chars)
    return parsed.title, parsed.text, same_site_links(parsed.hrefs, base=base, limit=max_links)


def plain_to_text(text: str, *, max_chars: int) -> str:
    """Tidy a text/plain body the way :func:`html_to_text` tidies HTML.

    Args:
        text: The body.
        max_chars: Upper bound on the length of the result.

    Returns:
        Non-empty lines, each whitespace-collapsed, joined with ``"\\n"``.
    """
    lines = (collapse_whitespace(line) for line in text[: max_chars * 4 + 1024].splitlines())
    return limit_text("\n".join(line for line in lines if line), max_chars)


def same_site_links(hrefs: Iterable[str], *, base: str, limit: int) -> tuple[str, ...]:
    """Resolve links against ``base`` and keep the http(s) ones on the same site.

    "Same site" means the same host, ignoring a leading ``www.``. Fragments are dropped,
    duplicates and ``base`` itself are skipped. The links are candidates only: fetching one
    goes through the SSRF guard again.

    Args:
        hrefs: Raw ``href`` values, e.g. :attr:`ParsedHtml.hrefs`.
        base: The URL the page was served from.
        limit: Most links to return.

    Returns:
        Absolute URLs in document order.
    """
    site = _site(urlsplit(base).hostname)
    seen = {urldefrag(base).url}
    links: list[str] = []
    for href in hrefs:
        try:
            link = urldefrag(urljoin(base, href)).url
            parts = urlsplit(link)
            _ = parts.port  # raises ValueError on a malformed port
        except ValueError:
            continue
        if parts.scheme in ("http", "https") and _site(parts.hostname) == site:
            if link not in seen:
                links.append(link)
                seen.add(link)
            if len(links) >= limit:
                break
    return tuple(links)


def section_links(links: Iterable[str], words: tuple[str, ...]) -> list[str]:
    """Pick the links whose path contains one of ``words``, ordered by the first word matched.

    Args:
        links: Absolute URLs.
        words: Lower-case path fragments, most wanted first (e.g. ``("about", "careers")``).

    Returns:
        The matching links; ties keep their input order.
    """

    def rank(link: str) -> int:
        path = urlsplit(link).path.lower()
        return next((i for i, word in enumerate(words) if word in path), len(words))

    return sorted((link for link in links if rank(link) < len(words)), key=rank)


def _site(host: str | None) -> str:
    return (host or "").rstrip(".").removeprefix("www.")


def limit_text(text: str, max_chars: int) -> str:
    """Cut text to at most ``max_chars`` characters, dropping trailing whitespace.

    Args:
        text: Any text.
        max_chars: The limit (``<= 0`` yields ``""``).

    Returns:
        The shortened text.
    """
    return text[: max(max_chars, 0)].rstrip()


class _TextParser(HTMLParser):
    def __init__(self, max_chars: int) -> None:
        super().__init__(convert_charrefs=True)
        self._max_chars = max_chars
        self._skip_depth = 0
        self._in_title = False
        self._title: list[str] = []
        self._blocks: list[str] = []
        self._current: list[str] = []
        self._kept = 0  # visible characters kept; stop collecting once past max_chars
        self._hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self._skip_depth += 1
        elif tag == "title":
            self._in_title = True
        elif tag in _BLOCK_TAGS:
            self._end_block()
        if tag == "a" and self._skip_depth == 0 and len(self._hrefs) < _MAX_HREFS:
            href = dict(attrs).get("href")
            if href:
                self._hrefs.append(href.strip())

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:  # noqa: ARG002
        # "<svg/>" or "<br/>": no content follows, so never enter a skipped element.
        if tag in _BLOCK_TAGS:
            self._end_block()

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip_depth = max(self._skip_depth - 1, 0)
        elif tag == "title":
            self._in_title = False
        elif tag in _BLOCK_TAGS:
            self._end_block()

    def handle_data(self, data: str) -> None:
        if self._skip_depth:
            return
        if self._in_title:
            self._title.append(data)
        elif self._kept <= self._max_chars:
            self._current.append(data)
            self._kept += len(collapse_whitespace(data))

    def _end_block(self) -> None:
        block = collapse_whitespace("".join(self._current))
        self._current.clear()
        if block:
            self._blocks.append(block)

    def result(self) -> ParsedHtml:
        self._end_block()
        title = limit_text(collapse_whitespace("".join(self._title)), _MAX_TITLE_CHARS)
        text = limit_text("\n".join(self._blocks), self._max_chars)
        return ParsedHtml(title=title, text=text, hrefs=tuple(self._hrefs))
