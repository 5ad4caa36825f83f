"""Settings persistence, with the build settings (CA bundle, build env) the hook and appliance read back."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from core import settings as settings_mod
from core.errors import ValidationError
from core.settings import Settings, check_ca_bundle, parse_build_env
from gitserver.admin import apply_acme_options, apply_build_options, apply_drain_options

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_build_settings_round_trip_through_config_json(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text(PEM)
    s = Settings(state_dir=tmp_path / "state", build_ca_bundle=bundle, build_env=("A=1", "B=x=y z"))
    s.save()
    back = Settings.load(tmp_path / "state")
    assert back.build_ca_bundle == bundle
    assert back.build_env == ("A=1", "B=x=y z")
    s.build_ca_bundle = None
    s.save()
    assert Settings.load(tmp_path / "state").build_ca_bundle is None


def test_default_bundle_is_the_system_one_when_present(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    present = tmp_path / "system.crt"
    present.write_text(PEM)
    monkeypatch.setattr(settings_mod, "SYSTEM_CA_BUNDLE", present)
    assert Settings().build_ca_bundle == present
    monkeypatch.setattr(settings_mod, "SYSTEM_CA_BUNDLE", tmp_path / "missing.crt")
    assert Settings().build_ca_bundle is None


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(
        "DEIS_BUILD_ENV", "PIP_INDEX_URL=https://mirror/simple\nNPM_CONFIG_REGISTRY=https://npm/"
    )
    monkeypatch.setenv("DEIS_BUILD_CA_BUNDLE", "")
    s = Settings.load(tmp_path)
    assert s.build_env == ("PIP_INDEX_URL=https://mirror/simple", "NPM_CONFIG_REGISTRY=https://npm/")
    assert s.build_ca_bundle is None


@pytest.mark.parametrize("item", ["NOEQUALS", "1A=x", "=x", "A-B=x", "A=x\ny", "A=x\0"])
def test_parse_build_env_refuses(item: str) -> None:
    with pytest.raises(ValueError, match="invalid build env"):
        parse_build_env([item])


def test_check_ca_bundle(tmp_path: Path) -> None:
    good = tmp_path / "ca.pem"
    good.write_text(PEM)
    assert check_ca_bundle(good) == good
    (tmp_path / "empty.pem").write_text("not a cert\n")
    with pytest.raises(ValueError, match="holds no PEM certificate"):
        check_ca_bundle(tmp_path / "empty.pem")
    with pytest.raises(ValueError, match="cannot read the build CA bundle"):
        check_ca_bundle(tmp_path / "missing.pem")
    with pytest.raises(ValueError, match="cannot read the build CA bundle"):
        check_ca_bundle(tmp_path)


def _args(**kw: object) -> argparse.Namespace:
    base: dict[str, object] = {
        "build_ca_bundle": None,
        "no_build_ca_bundle": False,
        "build_env": None,
        "no_build_env": False,
    }
    return argparse.Namespace(**(base | kw))


def test_up_options(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text(PEM)
    s = Settings(state_dir=tmp_path, build_ca_bundle=None, build_env=("OLD=1",))
    apply_build_options(s, _args(build_ca_bundle=str(bundle), build_env=["A=1", "B=2"]))
    assert (s.build_ca_bundle, s.build_env) == (bundle, ("A=1", "B=2"))
    apply_build_options(s, _args())  # nothing given: nothing changes
    assert (s.build_ca_bundle, s.build_env) == (bundle, ("A=1", "B=2"))
    apply_build_options(s, _args(no_build_ca_bundle=True, no_build_env=True))
    assert (s.build_ca_bundle, s.build_env) == (None, ())


def test_up_options_bad_input_changes_nothing(tmp_path: Path) -> None:
    s = Settings(state_dir=tmp_path, build_ca_bundle=None, build_env=("OLD=1",))
    with pytest.raises(ValidationError, match="cannot read the build CA bundle"):
        apply_build_options(s, _args(build_ca_bundle=str(tmp_path / "nope"), build_env=["A=1"]))
    with pytest.raises(ValidationError, match="invalid build env"):
        apply_build_options(s, _args(build_env=["A=1", "bad"]))
    assert (s.build_ca_bundle, s.build_env) == (None, ("OLD=1",))


def test_drain_ca_bundle_option(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text(PEM)
    s = Settings(state_dir=tmp_path)
    assert s.drain_ca_bundle is None
    apply_drain_options(s, argparse.Namespace(drain_ca_bundle=str(bundle), no_drain_ca_bundle=False))
    assert s.drain_ca_bundle == bundle
    s.save()
    assert Settings.load(tmp_path).drain_ca_bundle == bundle
    with pytest.raises(ValidationError, match="cannot read the drain CA bundle"):
        apply_drain_options(
            s, argparse.Namespace(drain_ca_bundle=str(tmp_path / "no"), no_drain_ca_bundle=False)
        )
    assert s.drain_ca_bundle == bundle
    apply_drain_options(s, argparse.Namespace(drain_ca_bundle=None, no_drain_ca_bundle=True))
    assert s.drain_ca_bundle is None


def _acme(**kw: object) -> argparse.Namespace:
    base: dict[str, object] = {
        "acme_directory": None,
        "acme_email": None,
        "acme_ca_bundle": None,
        "no_acme_ca_bundle": False,
        "acme_renew_days": None,
    }
    return argparse.Namespace(**(base | kw))


def test_acme_settings_default_to_lets_encrypt_and_round_trip(tmp_path: Path) -> None:
    s = Settings(state_dir=tmp_path / "state")
    assert s.acme_directory == "https://acme-v02.api.letsencrypt.org/directory"
    assert (s.acme_email, s.acme_ca_bundle, s.acme_renew_before) == ("", None, 30 * 86400)
    bundle = tmp_path / "ca.pem"
    bundle.write_text(PEM)
    apply_acme_options(
        s,
        _acme(
            acme_directory="https://127.0.0.1:14000/dir",
            acme_email="ops+tls@example.com",
            acme_ca_bundle=str(bundle),
            acme_renew_days=10,
        ),
    )
    s.save()
    back = Settings.load(tmp_path / "state")
    assert (back.acme_directory, back.acme_email, back.acme_ca_bundle, back.acme_renew_before) == (
        "https://127.0.0.1:14000/dir",
        "ops+tls@example.com",
        bundle,
        10 * 86400,
    )
    assert (tmp_path / "state" / "acme").stat().st_mode & 0o777 == 0o700
    apply_acme_options(back, _acme(no_acme_ca_bundle=True))
    assert back.acme_ca_bundle is None and back.acme_email == "ops+tls@example.com"


def test_a_config_json_from_before_acme_still_loads(tmp_path: Path) -> None:
    """A state dir saved by an earlier platform has no acme_* keys: the defaults apply."""
    (tmp_path / "config.json").write_text('{"http_port": 8080, "domain": "example.net"}\n')
    s = Settings.load(tmp_path)
    assert (s.http_port, s.domain, s.acme_email, s.acme_ca_bundle) == (8080, "example.net", "", None)
    assert s.acme_directory.startswith("https://acme-v02.api.letsencrypt.org/")


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"acme_directory": "http://acme.example.com/dir"}, "must be an https:// URL"),
        ({"acme_directory": "https://x/ dir"}, "must be an https:// URL"),
        ({"acme_email": "not-an-address"}, "must be an address"),
        ({"acme_email": "a@b.c\nX: y"}, "must be an address"),
        ({"acme_renew_days": 0}, "between 1 and 365"),
        ({"acme_ca_bundle": "/nonexistent.pem"}, "cannot read the ACME CA bundle"),
    ],
)
def test_acme_options_bad_input_changes_nothing(tmp_path: Path, kw: dict[str, object], message: str) -> None:
    s = Settings(state_dir=tmp_path)
    before = s.to_dict()
    with pytest.raises(ValidationError, match=message):
        apply_acme_options(
            s, _acme(acme_email="ok@example.com", **kw) if "acme_email" not in kw else _acme(**kw)
        )
    assert s.to_dict() == before


def test_the_build_user_is_never_root(tmp_path: Path) -> None:
    assert Settings.from_dict(tmp_path, {"build_uid": "60001"}).build_uid == 60001
    for bad in ("0", "-1"):
        with pytest.raises(ValueError, match="build_uid must be an unprivileged user's number"):
            Settings.from_dict(tmp_path, {"build_uid": bad})


def test_build_limits_from_up(tmp_path: Path) -> None:
    s = Settings(state_dir=tmp_path, build_ca_bundle=None)
    assert (s.build_memory, s.build_pids_limit) == (2 << 30, 1024)
    apply_build_options(s, _args(build_memory="3g", build_pids=2048))
    assert (s.build_memory, s.build_pids_limit) == (3 << 30, 2048)
    for bad in ({"build_memory": "1m"}, {"build_memory": "lots"}, {"build_pids": 1}):
        with pytest.raises(ValidationError):
            apply_build_options(s, _args(**bad))
    assert (s.build_memory, s.build_pids_limit) == (3 << 30, 2048)
    s.save()
    assert Settings.load(tmp_path).build_memory == 3 << 30
