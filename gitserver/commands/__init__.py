"""The SSH command set, one module per namespace; importing this package registers them all.

    base      the registry, Context (output, listings, app resolution, the app lock)
    apps      help, apps:*, push/fetch authorization
    config    config, config:set, config:unset, config:push, config:pull
    releases  releases, releases:info, releases:rollback
    builds    builds, builds:create
    limits    limits, limits:set, limits:unset
    tags      tags, tags:set, tags:unset
"""

from gitserver.commands import apps, builds, config, limits, releases, tags  # noqa: F401 - registers commands
from gitserver.commands.apps import authorize_fetch, authorize_push
from gitserver.commands.base import Context, command, registry

__all__ = ["Context", "apps", "authorize_fetch", "authorize_push", "command", "config", "registry"]
