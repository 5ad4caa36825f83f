"""The SSH command set, one module per namespace; importing this package registers them all.

base      the registry, Context (output, listings, app resolution, the app lock)
apps      help, apps:*, push/fetch authorization
config    config, config:set, config:unset, config:push, config:pull
releases  releases, releases:info, releases:rollback
builds    builds, builds:create
limits    limits, limits:set, limits:unset
tags      tags, tags:set, tags:unset
ps        ps, ps:scale (scale), ps:restart
logs      logs [-n N] [-f] [--type T] [--source S] [--release vN] [--since AGE] [--grep TEXT]
drains    drains, drains:add, drains:remove (syslog over TCP or TLS, HTTPS)
metrics   metrics [--since AGE] [--prometheus]: requests and containers
run       run [--] CMD...: a one-off container, attached
scheduler scheduler, scheduler:set (which backend runs the apps; admins switch it)
domains   domains:*, certs:*, router:* (what the router serves for an app)
certs_auto  certs:auto, certs:auto:off (certificates from ACME)
keys      keys:add, keys:list, keys:remove
perms     perms:list, perms:create, perms:delete, users:list
buildpacks  buildpacks, builds:purge-cache
services  services:* (postgres, redis: create, link, backup, restore, connect, ...)
storage   storage:mount, storage:list, storage:unmount (an app's volumes)
"""

from gitserver.commands import (  # noqa: F401 - registers the commands
    apps,
    buildpacks,
    builds,
    certs_auto,
    config,
    domains,
    drains,
    keys,
    limits,
    logs,
    metrics,
    perms,
    ps,
    releases,
    run,
    scheduler,
    services,
    storage,
    tags,
)
from gitserver.commands.apps import authorize_fetch, authorize_push
from gitserver.commands.base import Context, command, registry

__all__ = ["Context", "authorize_fetch", "authorize_push", "command", "registry"]
