import base64
import hashlib

from releaser.apps import _key_id, fingerprint


def test_fingerprint_is_openssh_sha256() -> None:
    blob = b"\x00\x00\x00\x0bssh-ed25519" + bytes(36)
    line = f"ssh-ed25519 {base64.b64encode(blob).decode()} me@host"
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    assert fingerprint(line) == f"SHA256:{digest}"


def test_key_ids_are_one_visible_path_element() -> None:
    # etcd v2 never lists a key starting with '_': such a key would log in yet be missing from keys:list.
    slash_first = "/" + "a+b/" * 10 + "cd"  # 43 characters, like every unpadded SHA256 in base64
    assert _key_id(f"SHA256:{slash_first}") == "k_" + "a-b_" * 10 + "cd"
    assert _key_id(f"SHA256:{slash_first[1:]}x") == "a-b_" * 10 + "cdx"
    assert len({_key_id(f"SHA256:{slash_first}"), _key_id(f"SHA256:k{slash_first[:-1]}")}) == 2
