"""The SSH command set, one module per namespace; importing this package registers them all.

    base      the registry, Context (output, listings, app resolution, the app lock)
    apps      help, apps:*, push/fetch authorization
    config    config, config:set, config:unset
    buildpacks  builds:purge-cache, buildpacks
"""

from gitserver.commands import apps, config
from gitserver.commands import buildpacks as buildpacks
from gitserver.commands.apps import authorize_fetch, authorize_push
from gitserver.commands.base import Context, command, registry

__all__ = ["Context", "apps", "authorize_fetch", "authorize_push", "command", "config", "registry"]
