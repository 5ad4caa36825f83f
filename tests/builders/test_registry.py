import pytest

from builders.registry import blob_digests, blob_url, manifest_url, tags_url
from core.errors import ValidationError


def test_urls_of_the_registry_api() -> None:
    assert tags_url("127.0.0.1:5000", "web") == "https://127.0.0.1:5000/v2/web/tags/list"
    assert manifest_url("127.0.0.1:5000", "web", "git-0123abcd") == (
        "https://127.0.0.1:5000/v2/web/manifests/git-0123abcd"
    )
    assert (
        manifest_url("127.0.0.1:5000", "web", "sha256:ab")
        == "https://127.0.0.1:5000/v2/web/manifests/sha256:ab"
    )
    assert blob_url("127.0.0.1:5000", "web", "sha256:cd") == "https://127.0.0.1:5000/v2/web/blobs/sha256:cd"


def test_urls_refuse_names_that_are_not_apps() -> None:
    with pytest.raises(ValidationError):
        tags_url("127.0.0.1:5000", "../other")


def test_blob_digests_of_an_image_manifest_and_an_index() -> None:
    manifest = {
        "schemaVersion": 2,
        "config": {"digest": "sha256:c0", "size": 1},
        "layers": [{"digest": "sha256:l1"}, {"digest": "sha256:l2"}],
    }
    assert blob_digests(manifest) == ["sha256:c0", "sha256:l1", "sha256:l2"]
    assert blob_digests({"schemaVersion": 2, "manifests": [{"digest": "sha256:m"}]}) == []
