"""The house rules, read from the source so they cannot rot (docs/architecture.md draws them).

Floors: a package imports only packages on lower floors (and itself). Late imports inside
functions count too: a loop hidden in a function is still a loop.

    edge          gitserver  (may import hooks: it serves the hook's socket)
                  hooks
    composition   appliance
    capability    builders  releaser  scheduler  routerconf  addons   (never each other)
    ground        core
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FLOORS: dict[str, int] = {
    "core": 0,
    "builders": 1,
    "releaser": 1,
    "scheduler": 1,
    "routerconf": 1,
    "addons": 1,
    "appliance": 2,
    "hooks": 3,
    "gitserver": 4,
}
# Where the docker SDK may be imported: one module per floor that talks to the engine (the scheduler
# speaks two of its APIs, containers and swarm services: one module for each backend).
DOCKER_SDK = {
    "scheduler/docker.py",
    "scheduler/swarm.py",
    "builders/engine.py",
    "appliance/services.py",
    "addons/engine.py",
}
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60


def modules() -> list[Path]:
    return sorted(p for pkg in FLOORS for p in (ROOT / pkg).rglob("*.py"))


def imported(path: Path) -> set[str]:
    """Every module `path` imports, anywhere in it, as dotted names."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def package_of(path: Path) -> str:
    return path.relative_to(ROOT).parts[0]


def test_every_package_has_a_floor() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py") if p.parent.name not in ("tests",)}
    assert packages <= set(FLOORS) | {"benchmarks", "contrib"}, packages - set(FLOORS)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_go_down_the_floors(path: Path) -> None:
    mine = package_of(path)
    wrong = []
    for name in imported(path):
        other = name.split(".")[0]
        if other in FLOORS and other != mine and FLOORS[other] >= FLOORS[mine]:
            wrong.append(name)
    assert not wrong, f"{mine} (floor {FLOORS[mine]}) imports {sorted(wrong)}"


def test_no_package_level_import_cycle() -> None:
    graph: dict[str, set[str]] = {pkg: set() for pkg in FLOORS}
    for path in modules():
        for name in imported(path):
            other = name.split(".")[0]
            if other in FLOORS and other != package_of(path):
                graph[package_of(path)].add(other)
    seen: set[str] = set()

    def visit(node: str, trail: list[str]) -> None:
        assert node not in trail, f"import cycle: {' -> '.join([*trail, node])}"
        if node in seen:
            return
        for nxt in sorted(graph[node]):
            visit(nxt, [*trail, node])
        seen.add(node)

    for pkg in sorted(graph):
        visit(pkg, [])


def test_the_edge_never_reaches_a_backend() -> None:
    """Commands and the hook go through the composition; they may name the seam's types only."""
    for path in modules():
        if package_of(path) in ("gitserver", "hooks"):
            backends = {
                n for n in imported(path) if n.startswith("scheduler") and not n.startswith("scheduler.base")
            }
            assert not backends, f"{path.relative_to(ROOT)} imports {sorted(backends)}"


def test_the_docker_sdk_stays_in_its_modules() -> None:
    users = {
        str(p.relative_to(ROOT)) for p in modules() if any(n.split(".")[0] == "docker" for n in imported(p))
    }
    assert users <= DOCKER_SDK, users - DOCKER_SDK


def test_docker_command_lines_are_built_in_one_module() -> None:
    for path in modules():
        if path.relative_to(ROOT).as_posix() == "core/dockercli.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.List) and node.elts and isinstance(node.elts[0], ast.Constant):
                assert node.elts[0].value != "docker", (
                    f"{path.relative_to(ROOT)}:{node.lineno} builds a docker argv"
                )


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_and_functions_stay_small(path: Path) -> None:
    lines = path.read_text().count("\n")
    assert lines <= MAX_MODULE_LINES, f"{lines} lines"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            assert length <= MAX_FUNCTION_LINES, f"{node.name} at line {node.lineno} has {length} lines"
