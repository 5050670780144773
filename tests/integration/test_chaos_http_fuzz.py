"""A short seeded version of chaos scenario 4: schemathesis against serving, a process of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.chaos.http_fuzz import fuzz_api, serving_document
from infra.chaos.stack import chaos_stack, http_json, wait_until
from infra.kafka.broker import free_port


@pytest.mark.timeout(300)
def test_serving_answers_no_5xx_to_schemathesis(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with chaos_stack(tmp_path, prefix="fuzz.") as stack:
        stack.start("serving", "serve", "--port", str(port))
        wait_until(lambda: http_json(f"{url}/health") is not None, timeout_s=120, what="serving",
                   alive=stack.supervisor.check)
        figures = fuzz_api(serving_document(), url, seed=20, examples=12)
        stack.supervisor.check()  # still running
        assert http_json(f"{url}/health") is not None
    assert figures["responses_5xx"] == 0 and figures["transport_errors"] == 0, figures
    # The fuzz got past validation, and was refused by it too.
    assert {"200", "400"} <= set(figures["statuses"]), figures
