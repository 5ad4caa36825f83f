"""The kinds of backing service and how each runs inside the addons image (pure: data and text).

    Kind          port, the app's variable, its URL, the container's start script, health check,
                  and the in-container commands of backup, restore and connect

Credentials never reach an argv: the password is a file mounted read-only at SECRET (0600, root),
which the scripts read with shell builtins and `cat FILE` (whose argv names the file, not its
content). Each service's data lives in DATA, a directory under the platform's state dir.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

SECRET_DIR = "/run/deis-addon"
SECRET = f"{SECRET_DIR}/password"
DATA = "/var/lib/deis-addon"
PG_BIN = "/usr/lib/postgresql/15/bin"
# The app's role and database in every postgres service (one database per service).
PG_USER = "app"
PG_DB = "app"

# The data mount is the host's 0700 directory: the server's user must be able to go through it.
_POSTGRES_RUN = f"""set -eu
chmod 711 {DATA}
D={DATA}/pgdata
install -d -o postgres -g postgres -m 700 "$D"
if [ ! -s "$D/PG_VERSION" ]; then
  runuser -u postgres -- {PG_BIN}/initdb -D "$D" -U postgres -E UTF8 --locale=C.UTF-8 \\
    --auth-local=peer --auth-host=scram-sha-256 >/dev/null
  printf 'host all all 0.0.0.0/0 scram-sha-256\\nhost all all ::/0 scram-sha-256\\n' >> "$D/pg_hba.conf"
  pw=$(cat {SECRET})
  printf "CREATE ROLE {PG_USER} LOGIN PASSWORD '%s';\\n" "$pw" \\
    | runuser -u postgres -- {PG_BIN}/postgres --single -D "$D" postgres >/dev/null
  printf 'CREATE DATABASE {PG_DB} OWNER {PG_USER};\\n' \\
    | runuser -u postgres -- {PG_BIN}/postgres --single -D "$D" postgres >/dev/null
  unset pw
  echo "initialised a new database"
fi
exec runuser -u postgres -- {PG_BIN}/postgres -D "$D" -c listen_addresses='*' -c unix_socket_directories=/tmp
"""

_REDIS_RUN = f"""set -eu
chmod 711 {DATA}
D={DATA}/redis
install -d -o redis -g redis -m 700 "$D"
umask 077
{{ printf 'requirepass %s\\n' "$(cat {SECRET})"
  printf 'dir %s\\nappendonly yes\\nrepl-diskless-sync no\\n' "$D"
  printf 'bind * -::*\\nprotected-mode no\\nport 6379\\n'
}} > /tmp/redis.conf
chown redis /tmp/redis.conf
exec runuser -u redis -- redis-server /tmp/redis.conf
"""

# redis-cli reads its password from REDISCLI_AUTH: set from the file, it stays out of every argv.
_REDIS_AUTH = f'REDISCLI_AUTH="$(cat {SECRET})"; export REDISCLI_AUTH; '


@dataclass(frozen=True)
class Kind:
    name: str
    port: int
    variable: str  # what `services:link` sets on the app
    run_script: str  # the container's command: sh -c SCRIPT
    health: tuple[str, ...]  # the engine's health check (CMD form)
    version: tuple[str, ...]  # prints the server's version
    backup: tuple[str, ...]  # writes a consistent dump to stdout
    restore: tuple[str, ...]  # reads one from stdin
    connect: tuple[str, ...]  # the native client on the session
    exec_user: str  # the in-container user of backup, restore and connect

    def url(self, host: str, password: str) -> str:
        secret = quote(password, safe="")
        if self.name == "postgres":
            return f"postgres://{PG_USER}:{secret}@{host}:{self.port}/{PG_DB}"
        return f"redis://:{secret}@{host}:{self.port}/0"


def _sh(script: str) -> tuple[str, ...]:
    return ("/bin/sh", "-c", script)


POSTGRES = Kind(
    name="postgres",
    port=5432,
    variable="DATABASE_URL",
    run_script=_POSTGRES_RUN,
    health=("CMD", f"{PG_BIN}/pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"),
    version=(f"{PG_BIN}/postgres", "--version"),
    # Over the local socket as the database's superuser (peer auth): no password anywhere.
    backup=(f"{PG_BIN}/pg_dump", "-h", "/tmp", "-Fc", "-d", PG_DB),
    # Objects restored belong to the app's role, whatever role owned them where the dump was made.
    restore=(
        f"{PG_BIN}/pg_restore",
        "-h",
        "/tmp",
        "-d",
        PG_DB,
        "--clean",
        "--if-exists",
        "--no-owner",
        "--no-acl",
        f"--role={PG_USER}",
        "--exit-on-error",
        "--single-transaction",
    ),
    # As the database's superuser over the socket, acting as the app's role: what it makes is the app's.
    connect=_sh(f"PGOPTIONS='-c role={PG_USER}' exec {PG_BIN}/psql -X -v ON_ERROR_STOP=1 -h /tmp -d {PG_DB}"),
    exec_user="postgres",
)

REDIS = Kind(
    name="redis",
    port=6379,
    variable="REDIS_URL",
    run_script=_REDIS_RUN,
    health=("CMD", "/bin/sh", "-c", _REDIS_AUTH + "redis-cli -p 6379 ping | grep -q PONG"),
    version=("redis-server", "--version"),
    # Not diskless: a diskless transfer ends in a marker redis-cli can only cut off a file, not a pipe.
    backup=_sh(_REDIS_AUTH + "exec redis-cli -p 6379 --rdb - 2>/dev/null"),
    restore=(),  # an RDB replaces the data files while the server is stopped (addons.engine)
    connect=_sh(_REDIS_AUTH + "exec redis-cli -p 6379"),
    exec_user="root",
)

KINDS = {k.name: k for k in (POSTGRES, REDIS)}
