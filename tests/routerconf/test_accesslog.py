"""The metrics access log's lines (pure) and that the templates write exactly that format."""

from __future__ import annotations

import re

from core.settings import Settings
from routerconf import accesslog
from routerconf.render import render_app, render_main


def line(*fields: str) -> str:
    return "\t".join(fields) + "\n"


def test_a_line_parses() -> None:
    hit = accesslog.parse(
        line("1700000000.123", "200", "0.005", "0.004", "612", "127.0.0.1:4000", "GET", "/a")
    )
    assert hit == accesslog.Hit(1700000000.123, 200, 0.004, 612, "127.0.0.1:4000", "GET", "/a")


def test_retries_redirects_and_router_pages() -> None:
    tried = accesslog.parse(
        line("1.0", "200", "1.0", "0.25, 0.5", "10", "127.0.0.1:1, 127.0.0.1:2", "GET", "/")
    )
    assert tried is not None and tried.latency == 0.75 and tried.upstream == "127.0.0.1:2"
    redirected = accesslog.parse(
        line("1.0", "200", "1.0", "0.1 : 0.2", "10", "127.0.0.1:1 : 127.0.0.1:3", "GET", "/")
    )
    assert redirected is not None and abs((redirected.latency or 0) - 0.3) < 1e-9
    assert redirected.upstream == "127.0.0.1:3"
    page = accesslog.parse(line("1.0", "503", "0.000", "-", "180", "-", "GET", "/"))
    assert page is not None and page.latency is None and page.upstream == ""


def test_bad_lines_are_skipped() -> None:
    assert accesslog.parse("") is None
    assert accesslog.parse(line("x", "200", "0", "0", "0", "-", "GET", "/")) is None
    assert accesslog.parse("1.0\t200\n") is None
    # nginx escapes a tab in a path as \x09, so a path never adds a field
    assert accesslog.parse(line("1.0", "404", "0", "-", "1", "-", "GET", "/a\\x09b")) is not None


def test_the_templates_write_this_format() -> None:
    main = render_main(Settings())
    directive = main.split(f"log_format {accesslog.FORMAT_NAME} ", 1)[1].split(";", 1)[0]
    assert "".join(re.findall(r"'([^']*)'", directive)) == accesslog.FORMAT
    app = render_app("myapp", "localhost", ["127.0.0.1:4000"], 80)
    assert f"access_log {accesslog.log_file('myapp')} {accesslog.FORMAT_NAME} {accesslog.BUFFER};" in app
