"""ACME (RFC 8555) certificates over HTTP-01, with certbot's `acme` library doing the protocol.

    Account.load_or_register(path, directory, email, ca_bundle)
                                    the platform's ACME account: key and registration in one 0600 file
    Account.issue(domains, answer)  a new key and certificate chain for `domains`; `answer(tokens)` is
                                    called with {token: key authorization} to publish (and with {} after)
    check_token(token, key_auth)    what the router accepts to serve (routerconf.site.check_challenge)

Errors: every failure (the ACME server unreachable or refusing, a challenge that did not validate, a
timeout) becomes one AcmeError with a message for the user; nothing here touches a certificate in
use, so a failure leaves whatever serves as it was.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Final

import requests
from acme import challenges, client, crypto_util, errors, messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.jwa import ES256
from josepy.jwk import JWK, JWKEC

from core.errors import AcmeError, ValidationError
from routerconf import site
from routerconf.site import Cert

USER_AGENT: Final = "deis-appliance"
# From the order to the issued chain; pebble without its sleep takes 1-3 s, Let's Encrypt seconds.
ORDER_TIMEOUT: Final = 90.0
NET_TIMEOUT: Final = 30

Answer = Callable[[dict[str, str]], None]


def check_token(token: str, key_auth: str) -> str:
    """The token, if it and its key authorization are what the router may serve (an ACME server
    sending anything else is refused here, before it reaches nginx)."""
    try:
        return site.check_challenge(token, key_auth)[0]
    except ValidationError as exc:
        raise AcmeError(f"the ACME server sent an unusable challenge: {exc}") from exc


def _problem(exc: BaseException) -> str:
    if isinstance(exc, messages.Error):
        return exc.detail or exc.description or str(exc.typ)
    if isinstance(exc, errors.ValidationError):
        reasons = []
        for authzr in exc.failed_authzrs:
            for ch in authzr.body.challenges:
                if ch.error is not None:
                    reasons.append(f"{authzr.body.identifier.value}: {ch.error.detail or ch.error.typ}")
        return "; ".join(reasons) or "a challenge did not validate"
    if isinstance(exc, requests.exceptions.SSLError):
        return f"its TLS certificate is not trusted (give its CA with deis up --acme-ca-bundle): {exc}"
    return str(exc) or type(exc).__name__


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # 0600 from the start
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


def _registered(
    acme: client.ClientV2, saved: dict[str, str], directory: str, email: str
) -> messages.RegistrationResource:
    """The saved account as the server knows it (found by its key), or a new one if the file names
    another directory or the server does not know the key (a test CA restarted, an account deleted)."""
    if saved.get("directory") == directory and saved.get("regr"):
        regr = messages.RegistrationResource.json_loads(saved["regr"])
        acme.net.account = regr
        try:
            return acme.query_registration(regr)
        except messages.Error as exc:
            if not str(exc.typ).endswith("accountDoesNotExist"):
                raise
    acme.net.account = None
    return acme.new_account(
        messages.NewRegistration.from_data(email=email or None, terms_of_service_agreed=True)
    )


class Account:
    def __init__(self, acme: client.ClientV2, key: JWK, directory: str) -> None:
        self.acme = acme
        self.key = key
        self.directory = directory

    @classmethod
    def load_or_register(
        cls, path: Path, directory: str, email: str, ca_bundle: Path | None = None
    ) -> Account:
        """The account kept in `path` for `directory`, registered there once (again if the file is
        missing, names another directory, or the server no longer knows it)."""
        saved: dict[str, str] = {}
        try:
            saved = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            saved = {}
        if saved.get("key"):
            pem = saved["key"].encode()
        else:
            pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        key = JWKEC.load(pem)
        verify: bool | str = str(ca_bundle) if ca_bundle else True
        # verify_ssl goes to requests as `verify`, which also takes a CA bundle path (typed bool only).
        net = client.ClientNetwork(
            key,
            alg=ES256,
            verify_ssl=verify,  # type: ignore[arg-type]
            user_agent=USER_AGENT,
            timeout=NET_TIMEOUT,
        )
        try:
            acme = client.ClientV2(client.ClientV2.get_directory(directory, net), net)
            regr = _registered(acme, saved, directory, email)
            if regr.json_dumps() != saved.get("regr"):
                _write_private(
                    path, json.dumps({"key": pem.decode(), "directory": directory, "regr": regr.json_dumps()})
                )
        except (errors.Error, messages.Error, requests.exceptions.RequestException, ValueError) as exc:
            raise AcmeError(f"the ACME server at {directory} failed: {_problem(exc)}") from exc
        return cls(acme, key, directory)

    def issue(self, domains: list[str], answer: Answer) -> Cert:
        """A certificate for `domains` (all HTTP-01): a fresh EC key, a CSR, an order; the tokens go to
        `answer` before the challenges are answered, and `answer({})` is called on every way out."""
        key = ec.generate_private_key(ec.SECP256R1())
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        deadline = dt.datetime.now() + dt.timedelta(seconds=ORDER_TIMEOUT)
        try:
            order = self.acme.new_order(crypto_util.make_csr(key_pem, domains))
            pending = self._challenges(order)
            answer({token: key_auth for token, (_, _, key_auth) in pending.items()})
            try:
                for challb, response, _ in pending.values():
                    self.acme.answer_challenge(challb, response)
                order = self.acme.poll_and_finalize(order, deadline)
            finally:
                answer({})
        except AcmeError:
            raise
        except (errors.Error, messages.Error, requests.exceptions.RequestException, ValueError) as exc:
            failed = (
                tuple(a.body.identifier.value for a in exc.failed_authzrs)
                if isinstance(exc, errors.ValidationError)
                else ()
            )
            raise AcmeError(
                f"ACME could not issue a certificate for {', '.join(domains)}: {_problem(exc)}", failed
            ) from exc
        if not order.fullchain_pem:
            raise AcmeError(f"the ACME server sent no certificate for {', '.join(domains)}")
        return Cert(chain=order.fullchain_pem, key=key_pem.decode())

    def _challenges(
        self, order: messages.OrderResource
    ) -> dict[str, tuple[messages.ChallengeBody, challenges.ChallengeResponse, str]]:
        pending = {}
        for authzr in order.authorizations:
            if authzr.body.status == messages.STATUS_VALID:
                continue  # validated recently for this account: nothing to answer
            name = authzr.body.identifier.value
            http01 = [c for c in authzr.body.challenges if isinstance(c.chall, challenges.HTTP01)]
            if not http01:
                raise AcmeError(f"the ACME server offers no HTTP-01 challenge for {name}")
            challb = http01[0]
            response, key_auth = challb.response_and_validation(self.key)
            token = check_token(challb.chall.encode("token"), key_auth)
            pending[token] = (challb, response, key_auth)
        return pending
