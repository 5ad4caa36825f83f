"""The appliance's container spec (pure): what it may do, what it mounts, what makes another spec."""

from __future__ import annotations

from pathlib import Path

from appliance import components, services
from core.settings import Settings


def settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(state_dir=tmp_path / "state", **kw)  # type: ignore[arg-type]


def test_the_appliance_gets_the_capabilities_it_uses_and_is_not_privileged(tmp_path: Path) -> None:
    kw = components.appliance_kwargs(settings(tmp_path, build_ca_bundle=None), "deis/appliance:abc")
    assert "privileged" not in kw
    assert kw["cap_add"] == list(components.APPLIANCE_CAPS)
    assert "SYS_RESOURCE" not in kw["cap_add"]  # the host's bounding set lacks it here
    assert kw["network_mode"] == "host" and kw["pid_mode"] == "host"
    assert kw["restart_policy"] == {"Name": "unless-stopped"}
    assert kw["stop_signal"] == "SIGTERM"
    assert kw["image"] == "deis/appliance:abc"
    state = str((tmp_path / "state").absolute())
    assert kw["command"] == ["--state-dir", state, "serve"]
    assert kw["volumes"] == {
        state: {"bind": state, "mode": "rw"},
        "/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "rw"},
        "/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"},
    }
    assert kw["labels"][components.LABEL_COMPONENT] == "appliance"


def test_the_ca_bundles_and_local_buildpacks_are_mounted_read_only_at_their_paths(tmp_path: Path) -> None:
    bundle, drains = tmp_path / "ca.pem", tmp_path / "drains.pem"
    s = settings(
        tmp_path, build_ca_bundle=bundle, drain_ca_bundle=drains, local_buildpacks=f"{tmp_path}/bp:/srv/packs"
    )
    volumes = components.appliance_kwargs(s, "i")["volumes"]
    assert volumes[str(bundle)] == {"bind": str(bundle), "mode": "ro"}
    assert volumes[str(drains)] == {"bind": str(drains), "mode": "ro"}
    assert volumes[f"{tmp_path}/bp"] == {"bind": f"{tmp_path}/bp", "mode": "ro"}
    assert volumes["/srv/packs"] == {"bind": "/srv/packs", "mode": "ro"}


def test_other_code_or_other_settings_make_another_spec(tmp_path: Path) -> None:
    def spec(s: Settings, image: str) -> str:
        return str(components.appliance_kwargs(s, image)["labels"][services.SPEC_LABEL])

    s = settings(tmp_path)
    first = spec(s, "deis/appliance:a")
    assert spec(s, "deis/appliance:a") == first  # the same again: left running by `up`
    assert spec(s, "deis/appliance:b") != first  # a newer checkout: handed over
    s.build_timeout = 99
    assert spec(s, "deis/appliance:a") != first  # it reads the settings at its start


def test_the_stop_timeout_covers_a_build(tmp_path: Path) -> None:
    s = settings(tmp_path)
    assert components.appliance_stop_timeout(s) >= s.build_timeout
