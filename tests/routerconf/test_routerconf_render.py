"""Pure parts of routerconf: rendering, escaping, argv builders. Exact comparisons; no nginx runs here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.errors import RouterError, ValidationError
from core.settings import Settings
from routerconf import nginx_argv, nginx_test_argv, render_app, render_main
from routerconf.render import default_user, environment

MAIN_DEFAULT = """\
# The router's main configuration. Rendered by routerconf from templates/nginx.conf.j2: edits are overwritten.
# Relative paths are relative to this directory (nginx runs with `-p` set to it).
# No `daemon` here: nginx daemonizes by default, and the router's container runs it with
# `-g 'daemon off;'` (the engine supervises the master).
master_process on;
worker_processes auto;
worker_rlimit_nofile 17408;
pid nginx.pid;
error_log logs/error.log warn;

events {
    worker_connections 8192;
}

http {
    default_type application/octet-stream;
    server_tokens off;
    server_names_hash_bucket_size 128;
    server_names_hash_max_size 16384;
    sendfile on;
    tcp_nodelay on;
    keepalive_timeout 65s;
    client_max_body_size 100m;

    client_body_temp_path temp/client_body;
    proxy_temp_path temp/proxy;
    fastcgi_temp_path temp/fastcgi;
    uwsgi_temp_path temp/uwsgi;
    scgi_temp_path temp/scgi;

    log_format deis '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
                    '"$http_referer" "$http_user_agent" $request_time $upstream_addr '
                    '$upstream_status $upstream_response_time $request_id';
    access_log logs/access.log deis;
    # Each app's servers log in this one (routerconf.accesslog; the metrics read it).
    log_format deis_metrics '$msec\\t$status\\t$request_time\\t$upstream_response_time\\t'
                            '$bytes_sent\\t$upstream_addr\\t$request_method\\t$uri';

    gzip on;
    gzip_comp_level 5;
    gzip_min_length 256;
    gzip_proxied any;
    gzip_vary on;
    gzip_types text/plain text/css text/xml text/javascript application/javascript application/json
               application/xml application/rss+xml image/svg+xml;

    # Websockets: pass Upgrade through. Without it, send an empty Connection header so that the
    # keepalive connections to the upstreams stay open.
    map $http_upgrade $connection_upgrade {
        default upgrade;
        ''      '';
    }

    proxy_http_version 1.1;
    proxy_set_header Host $host;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_set_header X-Forwarded-Port $server_port;
    proxy_set_header X-Request-Id $request_id;
    proxy_set_header Upgrade $http_upgrade;
    proxy_set_header Connection $connection_upgrade;
    proxy_connect_timeout 10s;
    proxy_send_timeout 1200s;
    proxy_read_timeout 1200s;

    # One app may hold at most this many connections at once (each app's servers set $deis_app);
    # beyond it its clients get a 503 and every other app keeps being served.
    limit_conn_zone $deis_app zone=deis_apps:10m;
    limit_conn deis_apps 512;
    limit_conn_status 503;
    limit_conn_log_level warn;

    # TLS. Only servers with their own certificate load one; an app's APP.DOMAIN server has none
    # and so answers with the default server's (the platform certificate), which keeps reloads
    # cheap with many apps.
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_prefer_server_ciphers off;
    ssl_session_cache shared:deis_tls:10m;
    ssl_session_timeout 1h;

    # Hosts that name no app. reuseport: a replacement router listens beside this one before it quits.
    server {
        listen 80 default_server reuseport;
        listen 443 ssl default_server reuseport;
        ssl_certificate certs/_platform.crt;
        ssl_certificate_key certs/_platform.key;
        server_name _;
        set $deis_app "";
        default_type text/plain;
        return 404 "no app here\\n";
    }

    include apps/*.conf;
}
"""

APP_TWO_ENDPOINTS = """\
# App myapp. Rendered by routerconf from templates/app.conf.j2, replaced on every deploy.
upstream app_myapp {
    server 127.0.0.1:32768 max_fails=0;
    server 127.0.0.1:32769 max_fails=0;
    keepalive 64;
}

server {
    listen 80;
    server_name myapp.localhost;
    access_log logs/myapp.access.log deis_metrics buffer=64k flush=1s;
    set $deis_app myapp;

    location / {
        proxy_pass http://app_myapp;
        proxy_next_upstream error timeout http_502 http_503;
        # No container answered (all stopped or crashed since the last deploy): a clear 503, not
        # nginx's bare 502. An app's own 502 passes through unchanged.
        error_page 502 =503 @unavailable;
    }

    location @unavailable {
        default_type text/plain;
        return 503 "myapp has no healthy web process right now; please try again later\\n";
    }
}
"""

APP_NO_ENDPOINTS = """\
# App my-app2. Rendered by routerconf from templates/app.conf.j2, replaced on every deploy.
server {
    listen 8080;
    server_name my-app2.example.com;
    access_log logs/my-app2.access.log deis_metrics buffer=64k flush=1s;
    set $deis_app my-app2;
    default_type text/plain;
    return 503 "my-app2 has no running web process\\n";
}
"""


# -- argv builders ---------------------------------------------------------------------------------
def test_nginx_argv() -> None:
    assert nginx_argv(Path("/var/lib/deis/nginx/nginx.conf"), Path("/var/lib/deis/nginx")) == [
        "/usr/sbin/nginx",
        "-c",
        "/var/lib/deis/nginx/nginx.conf",
        "-p",
        "/var/lib/deis/nginx/",
    ]


def test_nginx_argv_keeps_one_trailing_slash_and_takes_a_binary() -> None:
    assert nginx_argv("/s/nginx/nginx.conf", "/s/nginx/", binary="/opt/nginx") == [
        "/opt/nginx",
        "-c",
        "/s/nginx/nginx.conf",
        "-p",
        "/s/nginx/",
    ]


def test_nginx_test_argv() -> None:
    assert nginx_test_argv(Path("/s/nginx/.nginx-test.abc.conf"), Path("/s/nginx")) == [
        "/usr/sbin/nginx",
        "-t",
        "-q",
        "-c",
        "/s/nginx/.nginx-test.abc.conf",
        "-p",
        "/s/nginx/",
    ]


def test_argv_with_spaces_stays_one_argument() -> None:
    argv = nginx_argv("/my state/nginx/nginx.conf", "/my state/nginx")
    assert argv[2] == "/my state/nginx/nginx.conf"
    assert argv[4] == "/my state/nginx/"
    assert len(argv) == 5


# -- render_app ------------------------------------------------------------------------------------
def test_render_app_with_endpoints_drops_duplicates_keeps_order() -> None:
    text = render_app("myapp", "localhost", ["127.0.0.1:32768", "127.0.0.1:32769", "127.0.0.1:32768"], 80)
    assert text == APP_TWO_ENDPOINTS


def test_render_app_without_endpoints_serves_503_and_has_no_upstream() -> None:
    assert render_app("my-app2", "example.com", [], 8080) == APP_NO_ENDPOINTS


def test_render_app_lowercases_domain_and_takes_other_hosts() -> None:
    text = render_app("web", "Example.COM", ["10.0.0.5:32768"], 80)
    assert "    server_name web.example.com;\n" in text
    assert "    server 10.0.0.5:32768 max_fails=0;\n" in text


# -- render_main -----------------------------------------------------------------------------------
def test_render_main_default() -> None:
    assert render_main(Settings(), user=None) == MAIN_DEFAULT


def test_render_main_as_root_sets_user() -> None:
    text = render_main(Settings(), user="www-data")
    assert text == MAIN_DEFAULT.replace("# No `daemon`", "user www-data;\n# No `daemon`", 1)


def test_render_main_port_and_explicit_includes() -> None:
    text = render_main(Settings(http_port=8080), user=None, includes=["apps/a.conf", "staging/b.x1.conf"])
    expected = MAIN_DEFAULT.replace(
        "listen 80 default_server reuseport;", "listen 8080 default_server reuseport;"
    ).replace("    include apps/*.conf;\n", "    include apps/a.conf;\n    include staging/b.x1.conf;\n")
    assert text == expected


def test_render_main_no_includes() -> None:
    text = render_main(Settings(), user=None, includes=[])
    assert "include" not in text


def test_render_main_default_user_follows_euid() -> None:
    text = render_main(Settings())
    if os.geteuid() == 0:
        assert default_user() in ("www-data", "nobody")
        assert f"\nuser {default_user()};\n" in text
    else:
        assert default_user() is None
        assert "\nuser " not in text


# -- escaping and injection ------------------------------------------------------------------------
BAD_APPS = ["a;b", "a b", "a\n", "a}", "App", "-a", "1a", "a" * 64, "a$b", "a'b", 'a"b', "", "a.b", "a/b"]


@pytest.mark.parametrize("app", BAD_APPS)
def test_bad_app_name_rejected(app: str) -> None:
    with pytest.raises(ValidationError):
        render_app(app, "localhost", ["127.0.0.1:5000"], 80)


BAD_DOMAINS = [
    "localhost;",
    "local host",
    "localhost\ninclude /etc/passwd",
    "localhost; include /etc/passwd",
    "a..b",
    "",
    ".localhost",
    "$host",
    "{x}",
    "ex'ample.com",
    'ex"ample.com',
    "-a.com",
    "a" * 64 + ".com",
    "localhost#",
]


@pytest.mark.parametrize("domain", BAD_DOMAINS)
def test_bad_domain_rejected(domain: str) -> None:
    with pytest.raises(RouterError):
        render_app("myapp", domain, ["127.0.0.1:5000"], 80)


BAD_ENDPOINTS = [
    "127.0.0.1:80; include /etc/passwd",
    "127.0.0.1:80;",
    "127.0.0.1",
    "127.0.0.1:",
    "127.0.0.1:0",
    "127.0.0.1:08",
    "127.0.0.1:65536",
    "127.0.0.1:99999",
    "256.0.0.1:80",
    "127.0.0.01:80",
    "localhost:80",
    "127.0.0.1:80\n",
    " 127.0.0.1:80",
    "127.0.0.1:80 backup",
    "127.0.0.1:80 max_fails=0; } server { listen 80",
    "unix:/tmp/app.sock",
    "[::1]:80",
    "",
]


@pytest.mark.parametrize("endpoint", BAD_ENDPOINTS)
def test_bad_endpoint_rejected(endpoint: str) -> None:
    with pytest.raises(RouterError):
        render_app("myapp", "localhost", ["127.0.0.1:5000", endpoint], 80)


@pytest.mark.parametrize("port", [0, -1, 65536, True, "80", "80; include x", 80.0])
def test_bad_port_rejected(port: object) -> None:
    with pytest.raises(RouterError):
        render_app("myapp", "localhost", [], port)  # type: ignore[arg-type]
    with pytest.raises(RouterError):
        render_main(Settings(http_port=port), user=None)  # type: ignore[arg-type]


@pytest.mark.parametrize("user", ["www data", "www-data;", "root\ndaemon off", "$USER", ""])
def test_bad_user_rejected(user: str) -> None:
    with pytest.raises(RouterError):
        render_main(Settings(), user=user)


@pytest.mark.parametrize("path", ["apps/*.conf; evil", "apps/a b.conf", "apps/{a}.conf", "a\nb", "$x", "'a'"])
def test_bad_include_rejected(path: str) -> None:
    with pytest.raises(RouterError):
        render_main(Settings(), user=None, includes=["apps/ok.conf", path])


UNSAFE_VALUES: list[object] = [
    "a b",
    "a;b",
    "a{",
    "a}",
    '"',
    "'",
    "$host",
    "a\nb",
    "a\rb",
    "a\tb",
    "a#b",
    "a\\b",
    "",
    "-",
    None,
    True,
    1.5,
    ["a"],
    "x" * 256,
]


@pytest.mark.parametrize("value", UNSAFE_VALUES)
def test_finalize_refuses_unsafe_values(value: object) -> None:
    with pytest.raises(RouterError):
        environment().from_string("server_name {{ value }};").render(value=value)


@pytest.mark.parametrize("value", ["myapp.localhost", "127.0.0.1:5000", "apps/x.conf", "/var/lib/deis", 8080])
def test_finalize_passes_safe_values(value: object) -> None:
    assert environment().from_string("x {{ value }};").render(value=value) == f"x {value};"


def test_undefined_variable_is_an_error() -> None:
    with pytest.raises(RouterError):
        environment().from_string("x {{ nothing }};").render()
