"""Ordinary apps whose dependencies come from PyPI and npm (issue 14), pushed with stock git through the
router. Each kind builds cold once (module-scoped fixtures); every other push is warm and must download
nothing. The build containers trust the host's CA bundle (the harness's default build_ca_bundle)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.buildpack_apps import commit_files
from tests.harness import Harness, Key, unique

pytestmark = pytest.mark.e2e

App = tuple[str, Path, str]  # app, checkout, the cold push's output


def pushed(h: Harness, work: Path, key: Key) -> str:
    r = h.push(work, key)
    assert r.returncode == 0, r.stderr
    return r.stderr


def errors(out: str) -> list[str]:
    # git pads sideband lines with spaces
    return [line.rstrip() for line in out.splitlines() if line.startswith("remote:  !")]


def rejected(h: Harness, work: Path, key: Key, files: dict[str, str]) -> str:
    """Push a commit that must fail to build; the app's checkout is put back afterwards."""
    commit_files(h, work, files, "must not build")
    r = h.push(work, key)
    h.git(work, "reset", "-q", "--hard", "HEAD~1")
    assert r.returncode != 0
    assert "pre-receive hook declined" in r.stderr
    return r.stderr


def deploy(h: Harness, key: Key, fixture: str) -> App:
    app = unique(fixture)
    work = h.checkout(fixture, app)
    return app, work, pushed(h, work, key)


def warm(h: Harness, key: Key, app: App) -> str:
    """A push of a changed source file with the dependencies unchanged."""
    name, work, _ = app
    h.commit_change(work, "README", f"warm push of {name}\n")
    return pushed(h, work, key)


def assert_downloaded_nothing(out: str) -> None:
    for word in ("Collecting", "Downloading", "Installing dependencies", "added ", "Exporting"):
        assert word not in out, out


@pytest.fixture(scope="module")
def flask_app(platform: Harness, admin: Key) -> App:
    return deploy(platform, admin, "bp-flask")


@pytest.fixture(scope="module")
def fastapi_app(platform: Harness, admin: Key) -> App:
    return deploy(platform, admin, "bp-fastapi")


@pytest.fixture(scope="module")
def express_app(platform: Harness, admin: Key) -> App:
    return deploy(platform, admin, "bp-express")


@pytest.fixture(scope="module")
def ts_app(platform: Harness, admin: Key) -> App:
    return deploy(platform, admin, "bp-typescript")


def test_flask_and_gunicorn_from_requirements_txt(platform: Harness, flask_app: App) -> None:
    app, _, out = flask_app
    assert "remote: -----> Using Python 3.11.2" in out
    assert "remote: -----> Installing dependencies from requirements.txt with pip" in out
    assert "Downloading flask-3.0.3-py3-none-any.whl" in out  # from PyPI, through the CA bundle
    assert "Successfully installed" in out and "gunicorn-22.0.0" in out
    assert platform.get(app) == (200, "hello from flask\n")


def test_flask_warm_push_downloads_nothing(platform: Harness, admin: Key, flask_app: App) -> None:
    out = warm(platform, admin, flask_app)
    assert "remote: -----> Restoring cached dependencies (requirements unchanged)" in out
    assert_downloaded_nothing(out)
    assert platform.get(flask_app[0]) == (200, "hello from flask\n")


def test_wrong_runtime_txt_is_one_line(platform: Harness, admin: Key, flask_app: App) -> None:
    out = rejected(platform, flask_app[1], admin, {"runtime.txt": "python-3.12.1\n"})
    said = (
        "runtime.txt asks for Python 3.12.1, but this stack has Python 3.11.2 only:"
        " write python-3.11 in runtime.txt or remove it"
    )
    assert errors(out)[:2] == [f"remote:  !     {said}", f"remote:  !     python: {said}"]
    assert "Collecting" not in out  # refused before anything was installed
    out = rejected(platform, flask_app[1], admin, {".python-version": "3.10\n"})
    assert (
        "remote:  !     python: .python-version asks for Python 3.10, but this stack has Python 3.11.2"
        in (out)
    )


def test_flask_without_a_procfile_says_what_to_add(platform: Harness, admin: Key, flask_app: App) -> None:
    _, work, _ = flask_app
    (work / "Procfile").unlink()
    out = rejected(platform, work, admin, {"app.py": (work / "app.py").read_text()})
    assert (
        "remote:  !     python: this flask app has no Procfile: add one that says how to start it,"
        " for example `web: gunicorn -b 0.0.0.0:$PORT app:app`"
    ) in out


def test_fastapi_and_uvicorn_from_pyproject_toml(platform: Harness, admin: Key, fastapi_app: App) -> None:
    app, _, out = fastapi_app
    assert "remote: -----> Installing dependencies from pyproject.toml with pip" in out
    assert "fastapi-0.115.6" in out and "uvicorn-0.34.0" in out
    assert platform.get(app) == (200, "hello from fastapi\n")
    out = warm(platform, admin, fastapi_app)
    assert "remote: -----> Restoring cached dependencies (requirements unchanged)" in out
    # the app's own package is rebuilt offline with the stack's setuptools
    assert "remote: -----> Installing the app's own package from pyproject.toml" in out
    assert_downloaded_nothing(out)
    assert "from the index" not in out
    assert platform.get(app) == (200, "hello from fastapi\n")


def test_express_with_package_lock(platform: Harness, admin: Key, express_app: App) -> None:
    app, _, out = express_app
    assert "remote: -----> Using node v18.20.4" in out
    assert "remote: -----> Installing dependencies with npm ci (npm " in out
    assert "added 72 packages" in out
    assert "remote:        Default types for buildpack -> web" in out
    assert platform.get(app) == (200, "hello from express production\n")
    out = warm(platform, admin, express_app)
    assert "-----> Restoring cached node_modules (package.json and package-lock.json unchanged)" in out
    assert_downloaded_nothing(out)
    assert platform.get(app) == (200, "hello from express production\n")


def test_wrong_engines_node_is_one_line(platform: Harness, admin: Key, express_app: App) -> None:
    _, work, _ = express_app
    package = json.loads((work / "package.json").read_text())
    package["engines"] = {"node": ">=22 <23"}
    out = rejected(platform, work, admin, {"package.json": json.dumps(package)})
    said = (
        "package.json asks for node '>=22 <23' (engines.node), but this stack has node v18.20.4 only:"
        " allow 18.20.4 in engines.node or remove it"
    )
    assert errors(out)[:2] == [f"remote:  !     {said}", f"remote:  !     nodejs: {said}"]


def test_yarn_lock_is_refused_in_one_line(platform: Harness, admin: Key, express_app: App) -> None:
    _, work, _ = express_app
    platform.git(work, "rm", "-q", "package-lock.json")
    out = rejected(platform, work, admin, {"yarn.lock": "# yarn lockfile v1\n"})
    assert (
        "remote:  !     nodejs: yarn.lock needs corepack, which this stack's node (v18.20.4, Debian's)"
        " does not have: commit a package-lock.json (npm install) instead"
    ) in out


def test_typescript_build_script_and_pruned_dev_dependencies(
    platform: Harness, admin: Key, ts_app: App
) -> None:
    app, _, out = ts_app
    assert "remote: -----> Running the build script (npm run build)" in out
    assert "remote:        > tsc" in out
    assert "remote: -----> Pruning devDependencies" in out
    assert platform.get(app) == (200, "hello from typescript, devDependencies pruned\n")
    out = warm(platform, admin, ts_app)
    assert "remote: -----> Restoring cached node_modules" in out
    assert "remote:        > tsc" in out  # the build runs on every push
    assert_downloaded_nothing(out)
    assert platform.get(app) == (200, "hello from typescript, devDependencies pruned\n")


@pytest.mark.parametrize(
    ("fixture", "installed"),
    [
        ("bp-pipenv", "Reading Pipfile.lock's default packages"),
        ("bp-uv", "Exporting uv.lock's locked requirements"),
        ("bp-poetry", "Exporting poetry.lock's main requirements"),
    ],
)
def test_python_lockfiles(platform: Harness, admin: Key, fixture: str, installed: str) -> None:
    app, _, out = deploy(platform, admin, fixture)
    assert f"remote: -----> {installed}" in out
    assert "Successfully installed blinker-1.9.0" in out
    assert platform.get(app) == (200, "blinker ok, six False\n")  # the dev group is left out


def reconfigure(h: Harness, build_env: tuple[str, ...]) -> None:
    h.settings.build_env = build_env
    h.settings.save()
    h.start_appliance()  # changed settings: another container spec, handed over to


def test_operator_build_env_and_ca_bundle_reach_the_build(
    platform: Harness, admin: Key, tmp_path: Path
) -> None:
    """`deis up --build-env K=V` (saved settings, read by every push) and the CA bundle's mount."""
    bp = tmp_path / "buildpack"
    (bp / "bin").mkdir(parents=True)
    scripts = {
        "detect": "#!/bin/sh\necho Env\n",
        "compile": '#!/bin/sh\necho "mirror=$PIP_INDEX_URL proxy=$https_proxy"\n'
        "for v in PIP_CERT NODE_EXTRA_CA_CERTS SSL_CERT_FILE GIT_SSL_CAINFO REQUESTS_CA_BUNDLE; do\n"
        '  eval "echo $v=\\$$v"; done\nhead -n 1 "$SSL_CERT_FILE"\n'
        'touch "$SSL_CERT_FILE" 2>/dev/null && echo writable || echo read-only\n',
        "release": "#!/bin/sh\nprintf -- '---\\ndefault_process_types:\\n"
        "  web: python3 -m http.server $PORT\\n'\n",
    }
    for name, text in scripts.items():
        (bp / "bin" / name).write_text(text)
        (bp / "bin" / name).chmod(0o755)
    saved = platform.settings.build_env
    # what `deis up --build-env ...` does with a running platform: save, restart the appliance
    reconfigure(platform, ("PIP_INDEX_URL=https://mirror.invalid/simple", "https_proxy=http://proxy:1"))
    try:
        app = unique("bpenv")
        assert platform.ssh(admin, "apps:create", app).returncode == 0
        assert platform.ssh(admin, "config:set", "--app", app, f"BUILDPACK_URL={bp}").returncode == 0
        out = pushed(platform, platform.checkout("bp-static", app), admin)
    finally:
        reconfigure(platform, saved)
    said = [line.rstrip() for line in out.splitlines()]  # git pads sideband lines with spaces
    assert "remote: mirror=https://mirror.invalid/simple proxy=http://proxy:1" in said
    for var in ("PIP_CERT", "NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "GIT_SSL_CAINFO", "REQUESTS_CA_BUNDLE"):
        assert f"remote: {var}=/etc/deis/build-ca.pem" in said
    assert "remote: -----BEGIN CERTIFICATE-----" in said
    assert "remote: read-only" in said
