"""Fetch company websites for the analyze stage, refusing anything that is not the public web.

:func:`check_url`, the SSRF guard, runs on the first URL and on every redirect hop (so redirects
are followed here, not by httpx), on the URL as httpx itself parses it, so the guard and the
request cannot disagree about the host. Errors leave as ``FetchRefused`` or ``TransientError``.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Any
from urllib.parse import urljoin

import httpx
import structlog

from pipeline.errors import FetchRefused, PipelineError, TransientError
from pipeline.settings import WebSettings, default_of
from pipeline.web.html_text import decode_body, page_content, section_links
from pipeline.web.html_text import html_to_text as html_to_text  # re-exported: part of this API

Resolver = Callable[[str, int], list[str]]  # (host, port) -> IP address strings
IPAddress = IPv4Address | IPv6Address

USER_AGENT = "leadpipe/0.1 (+website analysis)"
_ACCEPT = "text/html,application/xhtml+xml,text/plain;q=0.9"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_TEXT_TYPES = frozenset({"text/html", "application/xhtml+xml", "text/plain"})
_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
# Refused even for allow-listed hosts: AWS/GCP/Azure, AWS over IPv6, Alibaba Cloud.
_METADATA = frozenset(
    ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
_CGNAT = IPv4Network("100.64.0.0/10")
_NAT64 = IPv6Network("64:ff9b::/96")
_IPV4_COMPAT = IPv6Network("::/96")
_NUMERIC_LABEL = re.compile(r"0x[0-9a-f]*|[0-9]+")
_ADDRESS_CLASSES: tuple[tuple[str, Callable[[IPAddress], bool]], ...] = (
    ("an unspecified", lambda ip: ip.is_unspecified),
    ("a loopback", lambda ip: ip.is_loopback),
    ("a link-local", lambda ip: ip.is_link_local),
    ("a multicast", lambda ip: ip.is_multicast),
    ("a carrier-grade NAT", lambda ip: isinstance(ip, IPv4Address) and ip in _CGNAT),
    ("a private", lambda ip: ip.is_private),
    ("a reserved", lambda ip: ip.is_reserved),
    ("a non-public", lambda ip: not ip.is_global),
)
# Sub-pages worth a summary, best first; matched against the link's path only.
_SECTIONS = ("about", "company", "product", "career", "jobs")

_log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class WebPolicy:
    """Limits and exceptions for website fetching (built from ``Settings.web``)."""

    allow_hosts: frozenset[str] = frozenset()
    """``host`` or ``host:port`` entries allowed although they resolve to non-public addresses."""
    mirror_url: str | None = None
    """Demo only: fetch ``https://acme.example/p`` from ``{mirror_url}/acme.example/p``."""
    timeout_s: float = default_of(WebSettings, "timeout_s")
    max_bytes: int = default_of(WebSettings, "max_bytes")
    max_redirects: int = default_of(WebSettings, "max_redirects")
    max_text_chars: int = default_of(WebSettings, "max_text_chars")

    @classmethod
    def from_settings(cls, web: WebSettings) -> WebPolicy:
        """Build from the ``web`` section of the settings."""
        return cls(
            allow_hosts=frozenset(web.allow_hosts),
            mirror_url=web.mirror_url,
            timeout_s=web.timeout_s,
            max_bytes=web.max_bytes,
            max_redirects=web.max_redirects,
            max_text_chars=web.max_text_chars,
        )


@dataclass(frozen=True, slots=True)
class SitePage:
    """One fetched page, reduced to what the analyze prompt needs."""

    url: str
    final_url: str
    status: int
    title: str
    text: str
    truncated: bool
    links: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Body:
    url: httpx.URL
    status: int
    mime: str
    text: str
    truncated: bool


def check_url(url: str, policy: WebPolicy, *, resolver: Resolver | None = None) -> None:
    """Refuse URLs that are not plain http(s) on the public internet.

    Checks, in order: scheme is http or https; no ``user@`` part; a host is present; the port
    is 80 or 443 unless ``host:port`` is allow-listed; every address the host resolves to (or
    the literal IP, including decimal/octal/hex IPv4 forms) is public. Hosts in
    ``policy.allow_hosts`` may resolve to private addresses, never to cloud metadata ones.

    Args:
        url: Absolute URL.
        policy: Allow-list and limits.
        resolver: ``resolver(host, port) -> [ip, ...]``; defaults to ``socket.getaddrinfo``.

    Raises:
        FetchRefused: With the reason, e.g. "127.0.0.1 is a loopback address".
        TransientError: DNS answered "try again" (EAI_AGAIN).
    """
    _check(_parse(url), policy, resolver)


def fetch_page(
    url: str,
    policy: WebPolicy,
    *,
    client: httpx.Client | None = None,
    resolver: Resolver | None = None,
) -> SitePage:
    """Fetch one page through the SSRF guard and reduce it to title, text and links.

    Args:
        url: Absolute http(s) URL; mapped onto ``policy.mirror_url`` when that is set.
        policy: Allow-list and limits.
        client: Client to send with; its cookies, auth, headers and params are never used.
            Default: a private client, closed afterwards.
        resolver: DNS override, see :func:`check_url`.

    Returns:
        The page; ``truncated`` is True when the body was cut at ``policy.max_bytes``.

    Raises:
        FetchRefused: Guard refusal, HTTP 4xx (not 429), not text, too many redirects.
        TransientError: Timeout (``timeout_s`` covers the whole page, redirects included),
            connection error, HTTP 429 or 5xx.
    """
    original = _parse(url)
    with _client_scope(client) as http:
        body = _fetch(http, _mirrored(original, policy), policy, resolver)
    base = _unmirrored(body.url, original, policy)
    title, text, links = page_content(
        body.text, mime=body.mime, base=base, max_chars=policy.max_text_chars, max_links=20
    )
    return SitePage(url, str(body.url), body.status, title, text, body.truncated, links)


def fetch_site(
    url: str,
    policy: WebPolicy,
    *,
    client: httpx.Client | None = None,
    resolver: Resolver | None = None,
    max_pages: int = 2,
) -> list[SitePage]:
    """Fetch a home page plus up to ``max_pages - 1`` of its about/company/product/career pages.

    Args:
        url: The home page.
        policy: Allow-list and limits (the timeout applies per page).
        client: See :func:`fetch_page`; one client serves every page.
        resolver: DNS override, see :func:`check_url`.
        max_pages: Total pages, home included (>= 1).

    Returns:
        The home page first. Sub-pages that fail are logged and left out.

    Raises:
        FetchRefused | TransientError: The home page failed (see :func:`fetch_page`).
        ValueError: ``max_pages < 1``.
    """
    if max_pages < 1:
        raise ValueError(f"max_pages must be >= 1, got {max_pages}")
    with _client_scope(client) as http:
        home = fetch_page(url, policy, client=http, resolver=resolver)
        pages = [home]
        for link in section_links(home.links, _SECTIONS)[: max_pages - 1]:
            try:
                pages.append(fetch_page(link, policy, client=http, resolver=resolver))
            except PipelineError as exc:  # the home page alone still makes a summary
                _log.info("site_page_skipped", url=_show(httpx.URL(link)), reason=str(exc))
    return pages


# --- the guard ------------------------------------------------------------------------------


def _parse(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise FetchRefused(f"refused: invalid URL ({exc})") from exc
    if parsed.scheme not in _DEFAULT_PORTS:
        raise FetchRefused(f"refused: scheme {parsed.scheme!r} is not http or https")
    if parsed.userinfo:
        raise FetchRefused("refused: credentials (user@) in the URL are not allowed")
    if not parsed.raw_host:
        raise FetchRefused("refused: the URL has no host")
    return parsed


def _check(url: httpx.URL, policy: WebPolicy, resolver: Resolver | None) -> tuple[IPAddress, ...]:
    host = url.raw_host.decode("ascii").rstrip(".").lower()  # IDNA-encoded, no brackets
    port = _DEFAULT_PORTS[url.scheme] if url.port is None else url.port  # ":0" is not default
    allowed = {entry.strip().lower() for entry in policy.allow_hosts}
    port_keys = {f"{host}:{port}", f"[{host}]:{port}"}
    if port not in (80, 443) and not port_keys & allowed:
        raise FetchRefused(f"refused {_show(url)}: port {port} needs '{host}:{port}' allow-listed")
    host_allowed = bool(({host} | port_keys) & allowed)
    addresses = _addresses(host, port, resolver)
    for ip in addresses:
        if _is_metadata(ip):
            raise FetchRefused(f"refused {_show(url)}: {ip} is a cloud metadata address")
        reason = _refusal(ip)
        if reason is not None and not host_allowed:
            raise FetchRefused(f"refused {_show(url)}: {ip} is {reason} address")
    return addresses


def _addresses(host: str, port: int, resolver: Resolver | None) -> tuple[IPAddress, ...]:
    literal = _literal_ip(host)
    if literal is not None:
        return (literal,)
    try:
        found = (resolver or _system_resolver)(host, port)
    except socket.gaierror as exc:
        if exc.errno == socket.EAI_AGAIN:
            raise TransientError(f"DNS lookup of {host} failed temporarily") from exc
        raise FetchRefused(f"refused: {host} does not resolve") from exc
    except (OSError, UnicodeError) as exc:
        raise FetchRefused(f"refused: {host} does not resolve ({exc})") from exc
    if not found:
        raise FetchRefused(f"refused: {host} does not resolve")
    try:
        return tuple(ip_address(a.split("%", 1)[0]) for a in found)
    except ValueError as exc:
        raise FetchRefused(f"refused: resolver gave a non-address for {host}") from exc


def _system_resolver(host: str, port: int) -> list[str]:
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def _literal_ip(host: str) -> IPAddress | None:
    # Also the forms inet_aton accepts: "2130706433", "0x7f.1", "017700000001", "127.1".
    with contextlib.suppress(ValueError):
        return ip_address(host)
    if not _NUMERIC_LABEL.fullmatch(host.rsplit(".", 1)[-1]):
        return None  # an ordinary name: DNS decides
    # A numeric last label makes resolvers read the host as an address, so must we.
    try:
        return IPv4Address(socket.inet_aton(host))
    except OSError as exc:
        raise FetchRefused(f"refused: {host!r} is a malformed IP address") from exc


def _embedded_ipv4(ip: IPAddress) -> IPv4Address | None:
    """The IPv4 address a mapped, compatible or NAT64 IPv6 address delivers to."""
    if isinstance(ip, IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if (ip in _IPV4_COMPAT and int(ip) > 1) or ip in _NAT64:  # "::" and "::1" are not v4
        return IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _is_metadata(ip: IPAddress) -> bool:
    return ip in _METADATA or _embedded_ipv4(ip) in _METADATA


def _refusal(ip: IPAddress) -> str | None:
    """Why an address is not public ("a loopback", ...), or None when it is."""
    inner = _embedded_ipv4(ip)
    if inner is not None:
        return _refusal(inner)  # the wrapped IPv4 address decides
    return next((label for label, test in _ADDRESS_CLASSES if test(ip)), None)


# --- fetching -------------------------------------------------------------------------------


SiteClient = httpx.Client
"""The client type :func:`make_site_client` returns (so callers need not import httpx)."""


def make_site_client() -> httpx.Client:
    """A client for website fetches, made once per worker process and shared by its threads.

    Building a client loads the CA certificates (~21 % of a lead's worker CPU when it was done
    per lead, issue 15); the connection behaviour stays the per-lead one: no keep-alive (a
    pooled connection pinned to one address must never serve another host name) and no cookie
    jar (no site's cookies are kept or sent).
    """
    return httpx.Client(
        trust_env=False,  # an HTTP(S)_PROXY from the environment would bypass address pinning
        follow_redirects=False,
        limits=httpx.Limits(max_keepalive_connections=0),
        cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])),
    )


def _client_scope(client: httpx.Client | None) -> contextlib.AbstractContextManager[httpx.Client]:
    if client is not None:
        return contextlib.nullcontext(client)
    return make_site_client()


@contextlib.contextmanager
def _http_errors(url: httpx.URL) -> Iterator[None]:
    try:
        yield
    except httpx.TimeoutException as exc:
        raise TransientError(f"timeout fetching {_show(url)}") from exc
    except httpx.TransportError as exc:  # connect/read errors, protocol errors
        raise TransientError(f"{type(exc).__name__} fetching {_show(url)}") from exc
    except httpx.DecodingError as exc:  # bad gzip/brotli: the same bytes come next time
        raise FetchRefused(f"undecodable body from {_show(url)}") from exc


class _Remaining(dict[str, float]):
    """httpx's timeout extension that answers the time left until the deadline.

    httpcore looks its timeouts up when it connects, writes, and starts reading the headers and
    the body, so each phase gets what is left of ``timeout_s``, not a fresh ``timeout_s``.
    """

    def __init__(self, deadline: float) -> None:
        super().__init__(dict.fromkeys(("connect", "read", "write", "pool"), 0.0))
        self.deadline = deadline

    def _left(self) -> float:
        return max(0.001, self.deadline - time.monotonic())

    def __getitem__(self, key: str) -> float:
        return self._left()

    def get(self, key: str, default: Any = None) -> Any:
        return self._left() if key in self else default


class _Watchdog:
    """Shuts the fetch's socket down at the deadline, so no slow drip outlasts ``timeout_s``.

    httpx bounds each socket read, not the fetch: a server sending a byte every few seconds
    keeps a read alive forever. httpcore's ``trace`` extension reports the socket it connects,
    the response carries the one it reuses; at the deadline a timer shuts it down and the
    blocked read ends at once.
    """

    def __init__(self, deadline: float) -> None:
        self.fired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire)
        self._timer.daemon = True

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._timer.cancel()

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's trace callback: watch every socket it connects."""
        if event == "connection.connect_tcp.complete":
            self.watch(info.get("return_value"))

    def watch(self, stream: Any) -> None:
        """Watch the socket under an httpcore network stream (None or unknown: ignored)."""
        sock = stream.get_extra_info("socket") if stream is not None else None
        if not isinstance(sock, socket.socket):
            return
        with self._lock:
            self._sockets.append(sock)
            if self.fired:
                self._shutdown(sock)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            for sock in self._sockets:
                self._shutdown(sock)

    @staticmethod
    def _shutdown(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _fetch(
    http: httpx.Client, url: httpx.URL, policy: WebPolicy, resolver: Resolver | None
) -> _Body:
    deadline = time.monotonic() + policy.timeout_s
    with _Watchdog(deadline) as watchdog:
        try:
            return _follow(http, url, policy, resolver, deadline, watchdog)
        except TransientError:
            if watchdog.fired:  # a shut-down socket reads as a protocol or read error
                raise TransientError(_timeout_message(url, policy)) from None
            raise


def _follow(
    http: httpx.Client,
    url: httpx.URL,
    policy: WebPolicy,
    resolver: Resolver | None,
    deadline: float,
    watchdog: _Watchdog,
) -> _Body:
    for _hop in range(policy.max_redirects + 1):
        addresses = _check(url, policy, resolver)  # every hop, so a redirect cannot reach in
        with _http_errors(url):
            request = _request(url, addresses[0], deadline, policy, watchdog)
            response = http.send(request, stream=True, auth=None, follow_redirects=False)
            watchdog.watch(response.extensions.get("network_stream"))
            try:
                location = _redirect_location(url, response)
                if location is None:
                    body = _read_body(url, response, policy, deadline)
                    if watchdog.fired:  # the body "ended" because its socket was shut down
                        raise TransientError(_timeout_message(url, policy))
                    return body
            finally:
                response.close()
        url = _parse(urljoin(str(url), location))
    raise FetchRefused(f"too many redirects (more than {policy.max_redirects}) for {_show(url)}")


def _timeout_message(url: httpx.URL, policy: WebPolicy) -> str:
    return f"timeout fetching {_show(url)} (over {policy.timeout_s}s)"


def _request(
    url: httpx.URL, address: IPAddress, deadline: float, policy: WebPolicy, watchdog: _Watchdog
) -> httpx.Request:
    if deadline - time.monotonic() <= 0:
        raise TransientError(_timeout_message(url, policy))
    # DNS rebinding: connect to the address just checked, not to a fresh DNS answer. The Host
    # header keeps the name for virtual hosting; for https, ``sni_hostname`` makes httpcore send
    # the name in the TLS handshake and verify the certificate against it, not the address.
    target = url.copy_with(host=str(address))
    # A bare Request: the client's cookies, auth, default headers and params are never merged.
    headers = {"User-Agent": USER_AGENT, "Accept": _ACCEPT, "Host": url.netloc.decode("ascii")}
    extensions: dict[str, Any] = {"timeout": _Remaining(deadline), "trace": watchdog.trace}
    if url.scheme == "https":
        extensions["sni_hostname"] = url.raw_host.decode("ascii")
    return httpx.Request("GET", target, headers=headers, extensions=extensions)


def _redirect_location(url: httpx.URL, response: httpx.Response) -> str | None:
    code = response.status_code
    if code in _REDIRECT_CODES:
        location = str(response.headers.get("location", ""))
        if not location:
            raise FetchRefused(f"HTTP {code} without Location from {_show(url)}")
        return location
    if code == 429 or code >= 500:  # house rule R3: rate limits and server errors are retried
        raise TransientError(f"HTTP {code} from {_show(url)}")
    if code >= 300:
        raise FetchRefused(f"HTTP {code} from {_show(url)}")
    return None


def _read_body(
    url: httpx.URL, response: httpx.Response, policy: WebPolicy, deadline: float
) -> _Body:
    mime = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if mime not in _TEXT_TYPES:
        raise FetchRefused(f"content type {mime or '(none)'!r} from {_show(url)} is not text")
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > policy.max_bytes:
            break  # keep what arrived, drop the rest unread
        if time.monotonic() > deadline:  # a slow drip never trips httpx's per-read timeout
            raise TransientError(_timeout_message(url, policy))
    text = decode_body(b"".join(chunks)[: policy.max_bytes], response.charset_encoding)
    return _Body(url, response.status_code, mime, text, truncated=size > policy.max_bytes)


def _show(url: httpx.URL) -> str:
    """The URL for messages and logs, without query or fragment (they may carry tokens)."""
    return str(url.copy_with(query=None, fragment=None))


def _mirrored(url: httpx.URL, policy: WebPolicy) -> httpx.URL:
    if policy.mirror_url is None:
        return url
    host, path = url.raw_host.decode("ascii"), url.raw_path.decode("ascii")
    return _parse(f"{policy.mirror_url.rstrip('/')}/{host}{path}")


def _unmirrored(final: httpx.URL, original: httpx.URL, policy: WebPolicy) -> str:
    """Where a mirrored page lives on the real site, so its links point at the real site."""
    prefix = f"{(policy.mirror_url or '').rstrip('/')}/{original.raw_host.decode('ascii')}/"
    if policy.mirror_url is None or not str(final).startswith(prefix):
        return str(final)
    return f"{original.scheme}://{original.netloc.decode('ascii')}/{str(final)[len(prefix) :]}"
