"""pipeline.web: SSRF guard, fetch limits, HTML to text. No internet: MockTransport + fake DNS."""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from pipeline.errors import FetchRefused, TransientError
from pipeline.web.fetch import SitePage, WebPolicy, check_url, fetch_page, fetch_site, html_to_text

PUBLIC_IP = "93.184.216.34"
Handler = Callable[[httpx.Request], httpx.Response]


def fake_dns(table: dict[str, list[str]]) -> Callable[[str, int], list[str]]:
    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[host]

    return resolve


DNS = fake_dns(
    {
        "acme.example": [PUBLIC_IP],
        "www.acme.example": [PUBLIC_IP],
        "other.example": ["93.184.216.35"],
        "evil.example": [PUBLIC_IP, "10.0.0.5"],
        "rebind.example": ["192.168.1.20"],
        "intranet.corp": ["10.1.2.3"],
        "meta.corp": ["169.254.169.254"],
    }
)


class Recorder:
    """A MockTransport handler that answers from a path table and records every request."""

    def __init__(self, routes: dict[str, Handler]) -> None:
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        key = f"{request.headers['host']}{request.url.path}"
        return self.routes[key](request)

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self))


def html(body: str, status: int = 200, ctype: str = "text/html; charset=utf-8") -> Handler:
    return lambda request: httpx.Response(status, headers={"content-type": ctype}, text=body)


def redirect(location: str, status: int = 302) -> Handler:
    return lambda request: httpx.Response(status, headers={"location": location})


def refused(url: str, policy: WebPolicy | None = None) -> str:
    with pytest.raises(FetchRefused) as info:
        check_url(url, policy or WebPolicy(), resolver=DNS)
    return str(info.value)


# --- check_url: refusals ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1/", "127.0.0.1 is a loopback address"),
        ("http://10.20.30.40/", "10.20.30.40 is a private address"),
        ("http://172.16.0.1/", "172.16.0.1 is a private address"),
        ("http://172.31.255.254/", "172.31.255.254 is a private address"),
        ("http://192.168.1.1/", "192.168.1.1 is a private address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a cloud metadata"),
        ("http://100.100.100.200/", "100.100.100.200 is a cloud metadata"),
        ("http://169.254.1.1/", "169.254.1.1 is a link-local address"),
        ("http://100.64.0.1/", "100.64.0.1 is a carrier-grade NAT address"),
        ("http://100.127.255.254/", "is a carrier-grade NAT address"),
        ("http://0.0.0.0/", "0.0.0.0 is an unspecified address"),
        ("http://224.0.0.1/", "224.0.0.1 is a multicast address"),
        ("http://240.0.0.1/", "240.0.0.1 is a private address"),  # 240/4 counts as private
        ("http://[::1]/", ":1 is a loopback address"),
        ("http://[fd00:ec2::254]/", "fd00:ec2::254 is a cloud metadata address"),
        ("http://[fd12:3456::1]/", "is a private address"),
        ("http://[::ffff:127.0.0.1]/", "::ffff:7f00:1 is a loopback address"),
        ("http://[::ffff:10.0.0.1]/", "::ffff:a00:1 is a private address"),
        ("http://[::ffff:169.254.169.254]/", "is a cloud metadata address"),
        ("http://[::127.0.0.1]/", "::7f00:1 is a loopback address"),  # IPv4-compatible
        ("http://2130706433/", "127.0.0.1 is a loopback address"),  # decimal
        ("http://0x7f.1/", "127.0.0.1 is a loopback address"),  # hex + short form
        ("http://0x7f000001/", "127.0.0.1 is a loopback address"),
        ("http://017700000001/", "127.0.0.1 is a loopback address"),  # octal
        ("http://0251.0376.43518/", "169.254.169.254 is a cloud metadata"),
        ("http://0251.0376.0251.0376/", "invalid URL"),  # httpx rejects dotted-quad octal
        ("http://127.1/", "127.0.0.1 is a loopback address"),
        ("http://08.1/", "'08.1' is a malformed IP address"),
        ("http://1.2.3.4.5/", "'1.2.3.4.5' is a malformed IP address"),
        ("ftp://acme.example/", "scheme 'ftp' is not http or https"),
        ("file:///etc/passwd", "scheme 'file' is not http or https"),
        ("gopher://acme.example:70/", "scheme 'gopher' is not http or https"),
        ("javascript:alert(1)", "scheme 'javascript' is not http or https"),
        ("//acme.example/", "scheme '' is not http or https"),
        ("http://user@acme.example/", "credentials (user@) in the URL are not allowed"),
        ("https://user:pw@acme.example/", "credentials (user@) in the URL are not allowed"),
        ("http://acme.example\\@127.0.0.1/", "credentials (user@)"),
        ("http:///path", "the URL has no host"),
        ("http://acme.example:8080/", "port 8080 needs 'acme.example:8080' allow-listed"),
        ("https://acme.example:22/", "port 22 needs 'acme.example:22' allow-listed"),
        ("http://acme.example:0/", "port 0 needs"),
        ("http://evil.example/", "10.0.0.5 is a private address"),  # ANY record counts
        ("https://rebind.example/", "192.168.1.20 is a private address"),
        ("http://nowhere.example/", "nowhere.example does not resolve"),
    ],
)
def test_check_url_refuses(url: str, reason: str) -> None:
    assert reason in refused(url)


def test_temporary_dns_failure_is_transient() -> None:
    def flaky(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    with pytest.raises(TransientError, match="failed temporarily"):
        check_url("https://acme.example/", WebPolicy(), resolver=flaky)


def test_resolver_gets_host_and_effective_port() -> None:
    calls: list[tuple[str, int]] = []

    def spy(host: str, port: int) -> list[str]:
        calls.append((host, port))
        return [PUBLIC_IP]

    check_url("https://ACME.example./x", WebPolicy(), resolver=spy)
    check_url("http://acme.example/", WebPolicy(), resolver=spy)
    assert calls == [("acme.example", 443), ("acme.example", 80)]


def test_default_resolver_catches_localhost() -> None:
    with pytest.raises(FetchRefused, match=r"127\.0\.0\.1 is a loopback address"):
        check_url("http://localhost/", WebPolicy())  # real getaddrinfo, /etc/hosts


# --- check_url: what passes -------------------------------------------------------------------


def test_public_urls_pass() -> None:
    asked: list[tuple[str, int]] = []

    def spy(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return [PUBLIC_IP, "2606:2800:220:1:248:1893:25c8:1946"]

    for url in ("https://acme.example/", "http://acme.example:80/a?b=1", "https://acme.example"):
        check_url(url, WebPolicy(), resolver=spy)  # does not raise
    check_url(f"http://{PUBLIC_IP}/", WebPolicy(), resolver=spy)  # a literal needs no DNS
    assert asked == [("acme.example", 443), ("acme.example", 80), ("acme.example", 443)]


def test_allow_list_host_port_lets_loopback_through_on_that_port_only() -> None:
    policy = WebPolicy(allow_hosts=frozenset({"127.0.0.1:8765"}))
    check_url("http://127.0.0.1:8765/acme.example/", policy)  # does not raise
    assert "port 8766 needs" in refused("http://127.0.0.1:8766/", policy)
    assert "127.0.0.1 is a loopback address" in refused("http://127.0.0.1/", policy)


def test_allow_list_bare_host_allows_private_name_on_default_ports() -> None:
    policy = WebPolicy(allow_hosts=frozenset({"Intranet.Corp"}))
    check_url("https://intranet.corp/", policy, resolver=DNS)  # does not raise
    assert "port 8443 needs 'intranet.corp:8443'" in refused("https://intranet.corp:8443/", policy)
    assert "10.1.2.3 is a private address" in refused("https://intranet.corp/")


def test_metadata_refused_even_when_allow_listed() -> None:
    policy = WebPolicy(
        allow_hosts=frozenset(
            {"169.254.169.254", "meta.corp", "[fd00:ec2::254]:80", "fd00:ec2::254"}
        )
    )
    assert "169.254.169.254 is a cloud metadata address" in refused(
        "http://169.254.169.254/", policy
    )
    assert "169.254.169.254 is a cloud metadata address" in refused("http://meta.corp/", policy)
    assert "fd00:ec2::254 is a cloud metadata address" in refused("http://[fd00:ec2::254]/", policy)


# --- fetch_page -------------------------------------------------------------------------------

HOME = """<html><head><title> Acme  Robotics </title><style>.x{color:red}</style></head>
<body><h1>Acme   builds robots</h1><script>var secret = 1;</script>
<p>Warehouse&nbsp;automation &amp; more.</p>
<a href="/about-us#team">About</a> <a href="careers/">Careers</a>
<a href="https://www.acme.example/products">Products</a> <a href="https://other.example/about">x</a>
<a href="mailto:hi@acme.example">Mail</a> <a href="/blog">Blog</a> <a href="/about-us">dup</a>
</body></html>"""


def test_fetch_page_pins_http_to_checked_ip_and_sends_only_our_headers() -> None:
    rec = Recorder({"acme.example/": html(HOME)})
    client = httpx.Client(
        transport=httpx.MockTransport(rec),
        headers={"Authorization": "Bearer secret"},
        cookies={"session": "abc"},
        auth=("user", "pw"),
        params={"token": "t"},
    )
    page = fetch_page("http://acme.example/", WebPolicy(), client=client, resolver=DNS)
    sent = rec.requests[0]
    assert sent.url == httpx.URL(f"http://{PUBLIC_IP}/")  # connected to the checked address
    assert sent.headers["host"] == "acme.example"
    assert sent.headers["user-agent"] == "leadpipe/0.1 (+website analysis)"
    assert {"authorization", "cookie"}.isdisjoint(k.lower() for k in sent.headers)
    assert page == SitePage(
        url="http://acme.example/",
        final_url="http://acme.example/",
        status=200,
        title="Acme Robotics",
        text=(
            "Acme builds robots\nWarehouse automation & more.\n"
            "About Careers Products x Mail Blog dup"
        ),
        truncated=False,
        links=(
            "http://acme.example/about-us",
            "http://acme.example/careers/",
            "https://www.acme.example/products",
            "http://acme.example/blog",
        ),
    )


def test_https_pins_the_checked_ip_and_keeps_the_name_for_sni_and_host() -> None:
    rec = Recorder({"acme.example/": html("<p>hi</p>")})
    page = fetch_page("https://acme.example/", WebPolicy(), client=rec.client(), resolver=DNS)
    sent = rec.requests[0]
    assert sent.url == httpx.URL(f"https://{PUBLIC_IP}/")  # no second DNS answer to rebind
    assert sent.extensions["sni_hostname"] == "acme.example"  # TLS name and certificate check
    assert sent.headers["host"] == "acme.example"
    assert (page.text, page.final_url) == ("hi", "https://acme.example/")


def test_relative_redirect_is_followed_and_rechecked() -> None:
    rec = Recorder(
        {
            "acme.example/": redirect("/en/", 301),
            "acme.example/en/": redirect("https://www.acme.example/en/home"),
            "www.acme.example/en/home": html("<title>Home</title><p>Welcome</p>"),
        }
    )
    page = fetch_page("http://acme.example/", WebPolicy(), client=rec.client(), resolver=DNS)
    assert [str(r.url) for r in rec.requests] == [
        f"http://{PUBLIC_IP}/",
        f"http://{PUBLIC_IP}/en/",
        f"https://{PUBLIC_IP}/en/home",
    ]
    assert rec.requests[2].extensions["sni_hostname"] == "www.acme.example"
    assert (page.url, page.final_url, page.title, page.text) == (
        "http://acme.example/",
        "https://www.acme.example/en/home",
        "Home",
        "Welcome",
    )


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("http://127.0.0.1/admin", "127.0.0.1 is a loopback address"),
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata address"),
        ("http://rebind.example/", "192.168.1.20 is a private address"),
        ("file:///etc/passwd", "scheme 'file'"),
        ("http://acme.example:6379/", "port 6379 needs"),
    ],
)
def test_redirect_to_forbidden_target_is_refused_before_connecting(
    location: str, reason: str
) -> None:
    rec = Recorder({"acme.example/": redirect(location)})
    with pytest.raises(FetchRefused) as info:
        fetch_page("https://acme.example/", WebPolicy(), client=rec.client(), resolver=DNS)
    assert reason in str(info.value)
    assert len(rec.requests) == 1  # the forbidden hop was never requested


def test_too_many_redirects() -> None:
    rec = Recorder({f"acme.example/{i}": redirect(f"/{i + 1}") for i in range(10)})
    policy = WebPolicy(max_redirects=3)
    with pytest.raises(FetchRefused, match=r"too many redirects \(more than 3\)"):
        fetch_page("https://acme.example/0", policy, client=rec.client(), resolver=DNS)
    assert [r.url.path for r in rec.requests] == ["/0", "/1", "/2", "/3"]


def test_redirect_without_location_is_refused() -> None:
    rec = Recorder({"acme.example/": lambda request: httpx.Response(302)})
    with pytest.raises(FetchRefused, match="HTTP 302 without Location"):
        fetch_page("https://acme.example/", WebPolicy(), client=rec.client(), resolver=DNS)


def test_mirror_maps_url_and_links_back_to_the_real_site() -> None:
    rec = Recorder(
        {
            "127.0.0.1:9000/acme.example/": redirect("/acme.example/index.html"),
            "127.0.0.1:9000/acme.example/index.html": html(
                '<title>Acme</title><a href="about.html">About</a><a href="/x/y">Y</a>'
            ),
        }
    )
    policy = WebPolicy(
        mirror_url="http://127.0.0.1:9000/", allow_hosts=frozenset({"127.0.0.1:9000"})
    )
    page = fetch_page("https://acme.example/", policy, client=rec.client(), resolver=DNS)
    assert str(rec.requests[0].url) == "http://127.0.0.1:9000/acme.example/"
    assert page.url == "https://acme.example/"
    assert page.final_url == "http://127.0.0.1:9000/acme.example/index.html"
    assert page.links == ("https://acme.example/about.html", "https://acme.example/x/y")


def test_mirror_keeps_path_and_query() -> None:
    rec = Recorder({"mirror.test:8000/acme.example/about.html": html("<p>About</p>")})
    policy = WebPolicy(
        mirror_url="http://mirror.test:8000", allow_hosts=frozenset({"mirror.test:8000"})
    )
    resolver = fake_dns({"mirror.test": ["127.0.0.1"]})
    page = fetch_page(
        "https://acme.example/about.html?lang=en", policy, client=rec.client(), resolver=resolver
    )
    assert str(rec.requests[0].url) == "http://127.0.0.1:8000/acme.example/about.html?lang=en"
    assert rec.requests[0].headers["host"] == "mirror.test:8000"
    assert page.text == "About"


def test_mirror_host_must_pass_the_guard() -> None:
    rec = Recorder({})
    policy = WebPolicy(mirror_url="http://127.0.0.1:9000")  # not allow-listed
    with pytest.raises(FetchRefused, match=r"port 9000 needs '127\.0\.0\.1:9000'"):
        fetch_page("https://acme.example/", policy, client=rec.client(), resolver=DNS)
    assert rec.requests == []


def test_body_is_capped_and_the_rest_never_read() -> None:
    pulled: list[int] = []

    def chunks() -> Iterator[bytes]:
        yield b"<title>Big</title><p>Start of the page</p><p>" + b"a" * 400
        for i in range(1, 100):
            pulled.append(i)
            yield b"b" * 500 + b" END-MARKER "

    rec = Recorder(
        {
            "acme.example/": lambda request: httpx.Response(
                200, headers={"content-type": "text/html"}, content=chunks()
            )
        }
    )
    policy = WebPolicy(max_bytes=1000)
    page = fetch_page("https://acme.example/", policy, client=rec.client(), resolver=DNS)
    assert page.truncated is True
    assert page.title == "Big"
    assert page.text.startswith("Start of the page\naaaa")
    assert "END-MARKER" in page.text  # from the first 1000 bytes ...
    assert page.text.count("END-MARKER") == 1  # ... and nothing after them
    assert len(pulled) == 2  # stopped reading one chunk past the cap


def test_body_exactly_at_cap_is_not_truncated() -> None:
    body = "<p>" + "x" * 93 + "</p>"  # 100 bytes
    rec = Recorder({"acme.example/": html(body)})
    policy = WebPolicy(max_bytes=100)
    page = fetch_page("https://acme.example/", policy, client=rec.client(), resolver=DNS)
    assert (page.truncated, page.text) == (False, "x" * 93)


def test_text_is_limited_to_max_text_chars() -> None:
    rec = Recorder({"acme.example/": html("<p>" + "word " * 1000 + "</p>")})
    policy = WebPolicy(max_text_chars=50)
    page = fetch_page("https://acme.example/", policy, client=rec.client(), resolver=DNS)
    assert page.text == ("word " * 10).strip()
    assert page.truncated is False


@pytest.mark.parametrize("ctype", ["image/png", "application/json", "application/pdf", None])
def test_non_text_content_type_is_refused(ctype: str | None) -> None:
    headers = {"content-type": ctype} if ctype else {}
    rec = Recorder({"acme.example/": lambda request: httpx.Response(200, headers=headers)})
    with pytest.raises(FetchRefused) as info:
        fetch_page("https://acme.example/", WebPolicy(), client=rec.client(), resolver=DNS)
    assert f"content type {ctype or '(none)'!r}" in str(info.value)
    assert "is not text" in str(info.value)


def test_plain_text_and_xhtml_are_read() -> None:
    rec = Recorder(
        {
            "acme.example/robots.txt": html("User-agent: *\n\n  Allow:   /\n", ctype="text/plain"),
            "acme.example/x": html("<title>X</title><p>x</p>", ctype="application/xhtml+xml"),
        }
    )
    client = rec.client()
    txt = fetch_page("https://acme.example/robots.txt", WebPolicy(), client=client, resolver=DNS)
    xhtml = fetch_page("https://acme.example/x", WebPolicy(), client=client, resolver=DNS)
    assert (txt.title, txt.text, txt.links) == ("", "User-agent: *\nAllow: /", ())
    assert (xhtml.title, xhtml.text) == ("X", "x")


def test_charset_from_header_and_utf8_fallback() -> None:
    latin = "<p>Caf\u00e9 M\u00fcller</p>".encode("iso-8859-1")
    rec = Recorder(
        {
            "acme.example/latin": lambda request: httpx.Response(
                200, headers={"content-type": "text/html; charset=ISO-8859-1"}, content=latin
            ),
            "acme.example/bad": lambda request: httpx.Response(
                200, headers={"content-type": "text/html; charset=nope"}, content=b"<p>ok\xff</p>"
            ),
        }
    )
    client = rec.client()
    page = fetch_page("https://acme.example/latin", WebPolicy(), client=client, resolver=DNS)
    bad = fetch_page("https://acme.example/bad", WebPolicy(), client=client, resolver=DNS)
    assert page.text == "Caf\u00e9 M\u00fcller"
    assert bad.text == "ok\ufffd"


@pytest.mark.parametrize(
    ("status", "error", "message"),
    [
        (404, FetchRefused, "HTTP 404 from https://acme.example/"),
        (403, FetchRefused, "HTTP 403"),
        (410, FetchRefused, "HTTP 410"),
        (429, TransientError, "HTTP 429"),
        (500, TransientError, "HTTP 500"),
        (503, TransientError, "HTTP 503 from https://acme.example/"),
    ],
)
def test_http_status_errors(status: int, error: type[Exception], message: str) -> None:
    rec = Recorder({"acme.example/": html("<p>nope</p>", status=status)})
    with pytest.raises(error) as info:
        fetch_page("https://acme.example/?t=secret", WebPolicy(), client=rec.client(), resolver=DNS)
    assert message in str(info.value)
    assert "secret" not in str(info.value)  # query strings stay out of messages


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        (httpx.ReadTimeout("slow"), "timeout fetching https://acme.example/"),
        (httpx.ConnectTimeout("slow"), "timeout fetching"),
        (httpx.ConnectError("refused"), "ConnectError fetching https://acme.example/"),
        (httpx.RemoteProtocolError("bad"), "RemoteProtocolError fetching"),
    ],
)
def test_transport_errors_are_transient(exc: Exception, message: str) -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise exc

    rec = Recorder({"acme.example/": boom})
    with pytest.raises(TransientError) as info:
        fetch_page("https://acme.example/", WebPolicy(), client=rec.client(), resolver=DNS)
    assert message in str(info.value)
    assert info.value.__cause__ is exc


def test_total_timeout_covers_a_slow_drip() -> None:
    def drip() -> Iterator[bytes]:
        for _ in range(50):
            time.sleep(0.01)
            yield b"<p>x</p>"

    rec = Recorder(
        {
            "acme.example/": lambda request: httpx.Response(
                200, headers={"content-type": "text/html"}, content=drip()
            )
        }
    )
    with pytest.raises(TransientError, match=r"over 0.05s"):
        fetch_page(
            "https://acme.example/", WebPolicy(timeout_s=0.05), client=rec.client(), resolver=DNS
        )


def test_request_carries_remaining_time_as_timeout() -> None:
    rec = Recorder({"acme.example/": html("<p>x</p>")})
    fetch_page("https://acme.example/", WebPolicy(timeout_s=7.0), client=rec.client(), resolver=DNS)
    timeout = rec.requests[0].extensions["timeout"]
    assert 6.0 < timeout["read"] <= 7.0
    assert 6.0 < timeout["connect"] <= 7.0


# --- html_to_text -----------------------------------------------------------------------------


def test_html_to_text_drops_invisible_content_and_collapses_whitespace() -> None:
    doc = """<!doctype html><html><head>
      <title>
         Acme   &amp; Sons
      </title>
      <style>body { color: red }</style>
      <script>alert("x")</script>
    </head><body>
      <noscript>Enable JS</noscript>
      <svg><text>logo text</text></svg><svg/>
      <template><p>hidden template</p></template>
      <h1>We   build
          robots</h1>
      <p>Fast&nbsp;and <b>cheap</b>.<br>Since 1999</p>
      <img src="a.png" alt="alt text">
      <ul><li>One</li><li>Two</li></ul>
    </body></html>"""
    title, text = html_to_text(doc, max_chars=1000)
    assert title == "Acme & Sons"
    assert text == "We build robots\nFast and cheap.\nSince 1999\nOne\nTwo"  # &nbsp; too


def test_html_to_text_limits_and_handles_broken_markup() -> None:
    title, text = html_to_text("<p>one two three<div>four <i>five", max_chars=12)
    assert (title, text) == ("", "one two thre")
    assert html_to_text("", max_chars=10) == ("", "")
    assert html_to_text("<p>a</p><p>b</p>", max_chars=0) == ("", "")


# --- fetch_site -------------------------------------------------------------------------------


def site_recorder(about_status: int = 200) -> Recorder:
    return Recorder(
        {
            "acme.example/": html(HOME),
            "acme.example/about-us": html("<title>About</title><p>Founded 1999</p>", about_status),
            "acme.example/careers/": html("<title>Jobs</title><p>Hiring</p>"),
            "www.acme.example/products": html("<title>Products</title><p>Arms</p>"),
        }
    )


def test_fetch_site_follows_about_then_other_sections_never_off_site() -> None:
    rec = site_recorder()
    pages = fetch_site("http://acme.example/", WebPolicy(), client=rec.client(), resolver=DNS)
    assert [p.title for p in pages] == ["Acme Robotics", "About"]
    assert pages[1].url == "http://acme.example/about-us"
    assert pages[1].text == "Founded 1999"

    rec = site_recorder()
    pages = fetch_site(
        "http://acme.example/", WebPolicy(), client=rec.client(), resolver=DNS, max_pages=5
    )
    assert [p.title for p in pages] == ["Acme Robotics", "About", "Products", "Jobs"]
    hosts = {r.headers["host"] for r in rec.requests}
    assert hosts == {"acme.example", "www.acme.example"}  # other.example never contacted
    assert "/blog" not in [r.url.path for r in rec.requests]


def test_fetch_site_skips_a_failing_section_page() -> None:
    rec = site_recorder(about_status=404)
    pages = fetch_site("http://acme.example/", WebPolicy(), client=rec.client(), resolver=DNS)
    assert [p.title for p in pages] == ["Acme Robotics"]
    assert [r.url.path for r in rec.requests] == ["/", "/about-us"]


def test_fetch_site_home_errors_propagate_and_max_pages_validated() -> None:
    rec = Recorder({"acme.example/": html("x", status=503)})
    with pytest.raises(TransientError, match="HTTP 503"):
        fetch_site("https://acme.example/", WebPolicy(), client=rec.client(), resolver=DNS)
    with pytest.raises(ValueError, match="max_pages"):
        fetch_site("https://acme.example/", WebPolicy(), resolver=DNS, max_pages=0)
    rec = site_recorder()
    pages = fetch_site(
        "http://acme.example/", WebPolicy(), client=rec.client(), resolver=DNS, max_pages=1
    )
    assert len(pages) == 1 and len(rec.requests) == 1


def test_links_are_capped_at_20_same_site_only() -> None:
    body = "".join(
        f'<a href="/p{i}">p</a><a href="https://other.example/{i}">o</a>' for i in range(30)
    )
    rec = Recorder({"acme.example/": html(body)})
    page = fetch_page("https://acme.example/", WebPolicy(), client=rec.client(), resolver=DNS)
    assert page.links == tuple(f"https://acme.example/p{i}" for i in range(20))


# --- the real network path: a local http.server, allow-listed ---------------------------------


class _SiteHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path in ("/", "/acme.example/"):
            self.send_response(302)
            self.send_header("Location", self.path + "home.html")
            self.end_headers()
            return
        if self.path.endswith("/home.html"):
            body = b'<title>Local Acme</title><p>Served locally</p><a href="about.html">About</a>'
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_error(404)

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def local_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SiteHandler)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_real_local_server_with_redirect(local_server: int) -> None:
    port = local_server
    policy = WebPolicy(allow_hosts=frozenset({f"127.0.0.1:{port}"}), timeout_s=5)
    page = fetch_page(f"http://127.0.0.1:{port}/", policy)
    assert page.status == 200
    assert page.final_url == f"http://127.0.0.1:{port}/home.html"
    assert (page.title, page.text) == ("Local Acme", "Served locally\nAbout")
    assert page.links == (f"http://127.0.0.1:{port}/about.html",)
    with pytest.raises(FetchRefused, match=re.escape(f"port {port} needs '127.0.0.1:{port}'")):
        fetch_page(f"http://127.0.0.1:{port}/", WebPolicy(allow_hosts=frozenset({"127.0.0.1"})))

    mirrored = WebPolicy(mirror_url=f"http://127.0.0.1:{port}", allow_hosts=policy.allow_hosts)
    pages = fetch_site("https://acme.example/", mirrored)  # about.html is 404: skipped
    assert [p.final_url for p in pages] == [f"http://127.0.0.1:{port}/acme.example/home.html"]
    assert pages[0].links == ("https://acme.example/about.html",)


@pytest.fixture
def dripping_server() -> Iterator[int]:
    """A real socket server that sends its headers, then one body byte every 0.9 s."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n")
            for _ in range(20):
                if stop.wait(0.9):
                    return
                try:
                    conn.sendall(b"x")
                except OSError:
                    return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def test_the_timeout_is_a_total_deadline_against_a_real_slow_drip(dripping_server: int) -> None:
    port = dripping_server
    policy = WebPolicy(allow_hosts=frozenset({f"127.0.0.1:{port}"}), timeout_s=1.0)
    started = time.monotonic()
    with pytest.raises(TransientError, match=r"over 1.0s"):
        fetch_page(f"http://127.0.0.1:{port}/", policy)
    assert time.monotonic() - started < 1.5  # each byte came within any per-read timeout


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A real HTTPS server on 127.0.0.1 whose certificate names only ``acme.test``."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subject = ["-days", "1", "-subj", "/CN=acme.test", "-addext", "subjectAltName=DNS:acme.test"]
    files = ["-keyout", str(key), "-out", str(cert)]
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", *subject, *files],
        check=True,
        capture_output=True,
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SiteHandler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1], cert
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_https_connects_to_the_checked_address_and_verifies_the_name(
    tls_server: tuple[int, Path],
) -> None:
    port, cert = tls_server
    answers: list[str] = []

    def resolver(host: str, _port: int) -> list[str]:
        answers.append(host)  # "acme.test" resolves nowhere else: httpcore cannot look it up
        return ["127.0.0.1"]

    policy = WebPolicy(allow_hosts=frozenset({f"acme.test:{port}"}), timeout_s=5)
    trusting = httpx.Client(verify=ssl.create_default_context(cafile=str(cert)), trust_env=False)
    with trusting:
        page = fetch_page(f"https://acme.test:{port}/", policy, client=trusting, resolver=resolver)
    assert (page.title, page.final_url) == ("Local Acme", f"https://acme.test:{port}/home.html")
    assert answers == ["acme.test", "acme.test"]  # one checked answer per hop, used as is
