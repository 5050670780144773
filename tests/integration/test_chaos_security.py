"""A short version of chaos scenario 6: the listeners of serving and the console bind loopback, and
the console token appears in none of their outputs (logs, /metrics, /health, refusals)."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from infra.chaos.security import LOOPBACK, _console_refusals, _http_bodies, find_secrets, listeners_of
from infra.chaos.stack import chaos_stack, http_json, wait_until
from infra.kafka.broker import free_port


@pytest.mark.timeout(300)
def test_listeners_on_loopback_and_no_secret_in_outputs(tmp_path: Path) -> None:
    token = secrets.token_hex(16)
    serve_port, console_port = free_port(), free_port()
    with chaos_stack(tmp_path, prefix="sec.", extra_env={"TANDEM_CONSOLE_TOKEN": token}) as stack:
        stack.start("serving", "serve", "--port", str(serve_port))
        stack.start("console", "console", "--port", str(console_port), "--no-monitor")
        for url in (f"http://127.0.0.1:{serve_port}/health", f"http://127.0.0.1:{console_port}/openapi.json"):
            wait_until(lambda url=url: http_json(url) is not None, timeout_s=120, what=url,  # type: ignore[misc]
                       alive=stack.supervisor.check)
        listeners = {name: listeners_of(process.pid) for name, process in stack.supervisor.processes.items()}
        listeners["broker"] = listeners_of(stack.broker.pid)
        texts = _http_bodies({f"{name} {address}{path}": f"http://{address}{path}"
                              for name, addresses in listeners.items() if name != "broker"
                              for address in addresses for path in ("/metrics", "/health")})
        texts.update(_console_refusals(f"http://127.0.0.1:{console_port}", token))
    texts.update({path.name: path.read_text(errors="replace") for path in tmp_path.rglob("*.log")})
    assert f"127.0.0.1:{serve_port}" in listeners["serving"] and f"127.0.0.1:{console_port}" in listeners["console"]
    assert all(address.rsplit(":", 1)[0] in LOOPBACK for addresses in listeners.values() for address in addresses)
    assert any("401" in text for name, text in texts.items() if name.startswith("console write"))
    assert find_secrets(texts, {"console_token": token}) == []
    assert find_secrets({**texts, "planted": f"x{token}x"}, {"console_token": token}) == ["planted: console_token"]
