"""The security scenario's checks: the unpickling scan, /proc's listening addresses, the secret scan."""

from __future__ import annotations

import socket
from pathlib import Path

from infra.chaos.security import _address, find_secrets, listeners_of, scan_unsafe_deserialization

ROOT = Path(__file__).resolve().parents[4]


def test_no_package_of_the_project_can_unpickle_anything() -> None:
    assert scan_unsafe_deserialization(ROOT) == []


def test_the_scan_finds_every_kind_of_unsafe_deserialization(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "bad.py").write_text(
        "import pickle\n"
        "from marshal import loads\n"
        "import yaml\n"
        "yaml.load(text)\n"
        "yaml.load(text, Loader=yaml.SafeLoader)\n"
        "yaml.unsafe_load(text)\n"
        "eval(text)\n"
        "app.topic('t', value_serializer='pickle')\n"
        "app.topic('t', value_serializer='json', key_serializer='raw')\n"
    )
    found = scan_unsafe_deserialization(tmp_path, packages=["pkg"])
    assert found == [
        "pkg/bad.py:1: imports pickle",
        "pkg/bad.py:2: imports from marshal",
        "pkg/bad.py:4: calls yaml.load without a safe loader",
        "pkg/bad.py:6: calls yaml.unsafe_load without a safe loader",
        "pkg/bad.py:7: calls eval",
        "pkg/bad.py:8: value_serializer='pickle'",
    ]


def test_proc_addresses_are_read_in_host_order() -> None:
    assert _address("0100007F", 8) == "127.0.0.1"
    assert _address("00000000", 8) == "0.0.0.0"  # noqa: S104 - the address the check must catch
    assert _address("00000000000000000000000001000000", 32) == "::1"
    assert _address("0000000000000000FFFF00000100007F", 32) == "::ffff:127.0.0.1"


def test_the_listeners_of_this_process_include_a_socket_it_binds() -> None:
    import os

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert f"127.0.0.1:{port}" in listeners_of(os.getpid())
    assert f"127.0.0.1:{port}" not in listeners_of(os.getpid())


def test_a_secret_is_found_wherever_it_appears() -> None:
    secrets = {"console_token": "tok-123", "sasl_password": "pw-456"}
    texts = {"log serving.log": "started; token tok-123", "metrics": "requests 5", "--help": "pw-456 and tok-123"}
    assert find_secrets(texts, secrets) == ["--help: console_token", "--help: sasl_password",
                                            "log serving.log: console_token"]
