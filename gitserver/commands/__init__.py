"""The SSH command set, one module per namespace; importing this package registers them all.

    base      the registry, Context (output, listings, app resolution, the app lock)
    apps      help, apps:*, push/fetch authorization
    config    config, config:set, config:unset
    ps        ps, ps:scale (scale), ps:restart
    logs      logs [-n N] [-f] [--type TYPE]
    run       run [--] CMD...: a one-off container, attached
"""

from gitserver.commands import apps, config, logs, ps, run  # noqa: F401 - registers the process commands
from gitserver.commands.apps import authorize_fetch, authorize_push
from gitserver.commands.base import Context, command, registry

__all__ = ["Context", "apps", "authorize_fetch", "authorize_push", "command", "config", "registry"]
