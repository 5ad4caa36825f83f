"""One error tree for the whole platform. Every message is written for the user who sees it.

    DeisError                 exit 1, printed as one line
    ├── UsageError            exit 2: a bad command line, an unknown command
    ├── ValidationError       bad input: an app name, a config key, a ref
    ├── NotFound              an unknown app, release, key, user
    ├── PermissionDenied      the caller may not do this
    ├── Conflict              the thing exists already, or someone else holds the app's lock
    ├── BuildError            the build failed (the message says why)
    ├── DeployError           the new release could not be brought up; the old one keeps serving
    │   └── HealthCheckFailed
    ├── RouterError           nginx refused the rendered config
    ├── AcmeError             the ACME server refused, a challenge failed: the old certificate stays
    └── ServiceError          a backing service (etcd, docker, registry, nginx) failed or is unreachable
        └── StoreUnavailable  etcd does not answer: "try again shortly"

Third-party errors are converted once, where they happen (``raise ServiceError(...) from exc``).
"""

from __future__ import annotations


class DeisError(Exception):
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        # One line: a multi-line cause would break ` !     ` error formatting.
        return " ".join(self.message.split("\n")).strip()


class UsageError(DeisError):
    exit_code = 2


class ValidationError(DeisError):
    pass


class NotFound(DeisError):
    pass


class PermissionDenied(DeisError):
    pass


class Conflict(DeisError):
    pass


class BuildError(DeisError):
    pass


class DeployError(DeisError):
    pass


class HealthCheckFailed(DeployError):
    pass


class RouterError(DeisError):
    pass


class AcmeError(DeisError):
    """`failed`: the names whose validation failed, when that is what went wrong."""

    def __init__(self, message: str, failed: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.failed = failed


class ServiceError(DeisError):
    pass


class StoreUnavailable(ServiceError):
    """etcd does not answer: transient (it restarts under supervision), so users are told to retry."""

    def __init__(self, detail: str = "") -> None:
        super().__init__("platform state store unavailable, try again shortly")
        self.detail = detail
