import pytest

from core.errors import ValidationError
from core.names import ContainerName, app_from_repo_path, check_app, check_config_key, check_config_value


@pytest.mark.parametrize("name", ["a", "myapp", "my-app-2", "a" * 63])
def test_valid_app_names(name: str) -> None:
    assert check_app(name) == name


@pytest.mark.parametrize("name", ["", "Hello", "a;b", "../x", "1app", "-x", "a" * 64, "a b", "a\nb", "é"])
def test_invalid_app_names(name: str) -> None:
    with pytest.raises(ValidationError, match="invalid app name"):
        check_app(name)


@pytest.mark.parametrize(
    ("path", "app"),
    [("myapp.git", "myapp"), ("/myapp.git", "myapp"), ("~/myapp.git", "myapp"), ("myapp", "myapp")],
)
def test_repo_paths(path: str, app: str) -> None:
    assert app_from_repo_path(path) == app


@pytest.mark.parametrize("path", ["../x.git", "a/b.git", "x/../../etc.git", "..", "/etc/passwd"])
def test_repo_paths_with_traversal_are_refused(path: str) -> None:
    with pytest.raises(ValidationError):
        app_from_repo_path(path)


def test_config_keys_and_values() -> None:
    assert check_config_key("DATABASE_URL") == "DATABASE_URL"
    assert check_config_key("_x1") == "_x1"
    for bad in ("1X", "A-B", "A B", "", "A=B"):
        with pytest.raises(ValidationError):
            check_config_key(bad)
    odd = 'it\'s $(rm -rf /) `x` "q"\nline2 ü =='
    assert check_config_value("K", odd) == odd
    with pytest.raises(ValidationError, match="NUL"):
        check_config_value("K", "a\x00b")


def test_container_names_round_trip() -> None:
    n = ContainerName("myapp", 2, "web", 1)
    assert str(n) == "myapp_v2.web.1"
    assert ContainerName.parse("/myapp_v2.web.1") == n
    assert ContainerName.parse("my-app_v10.worker_x.3") == ContainerName("my-app", 10, "worker_x", 3)
    assert ContainerName.parse("registry") is None


def test_memory_sizes_as_limits_keep_them() -> None:
    from core.names import memory_bytes

    assert memory_bytes("512m") == 512 << 20
    assert memory_bytes("1g") == 1 << 30 and memory_bytes("1024k") == 1 << 20 and memory_bytes("77") == 77
    with pytest.raises(ValidationError):
        memory_bytes("lots")
