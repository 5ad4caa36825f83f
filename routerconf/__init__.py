"""The router: nginx configuration rendered from templates, checked with `nginx -t`, reloaded gracefully.

    Router(settings)           start() / stop() / running() the nginx daemon under settings.nginx_dir;
                               publish(app, endpoints) / remove(app) / reload() its per-app blocks
    render_main(settings)      nginx.conf (pure)
    render_app(app, domain, endpoints, http_port)
                               apps/APP.conf (pure)
    nginx_argv, nginx_test_argv
                               the nginx command lines (pure)

routerconf.acme (imported on its own: it loads certbot's `acme` library) gets certificates over
ACME HTTP-01; the router answers the pending challenges it is given in `Site.challenges`.

Errors: RouterError when nginx refuses a config (the live one keeps serving), ServiceError when nginx
cannot be run, started or stopped; ValidationError for a bad app name.
"""

from routerconf.commands import NGINX_BIN, nginx_argv, nginx_test_argv
from routerconf.render import render_app, render_main
from routerconf.router import Router

__all__ = ["NGINX_BIN", "Router", "nginx_argv", "nginx_test_argv", "render_app", "render_main"]
