"""The console in a real browser: headless Debian chromium driven by Playwright, against the live demo stack.

The demo runs shortened (every process of it: broker, features worker, learner, serving,
aggregator, console); once its report is written and the decision recorded, while everything
still runs, the browser opens the console's list and the demo experiment's page, checks what an
owner must see and saves screenshots under ``report/``. ``make browser`` installs chromium.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infra.demo.run import ConsoleAccess, DemoOptions, demo_specs, run
from infra.settings import load_settings

CHROMIUM = Path("/usr/bin/chromium")
REPORT = Path(__file__).resolve().parents[2] / "report"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
SPEC = demo_specs()[0]  # the ranker experiment: a control and two treatments
EXPERIMENT = SPEC.id
COMPARISONS = len(SPEC.metrics) * (len(SPEC.variants) - 1)  # a row and a chart per metric and treatment


def browse(access: ConsoleAccess, seen: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    REPORT.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(f"{access.url}/experiments")
            seen["list_rows"] = page.locator("#experiments tr").all_inner_texts()
            page.screenshot(path=str(REPORT / "console-experiments.png"), full_page=True)
            page.click(f"text={EXPERIMENT}")
            page.wait_for_url(f"**/experiments/{EXPERIMENT}")
            seen["metric_rows"] = page.locator("#metrics tr").count()
            seen["charts"] = page.locator("#lift svg.lift").count()
            seen["points"] = [chart.locator("circle.point").count() for chart in page.locator("#lift svg.lift").all()]
            seen["health"] = page.locator("#health tr").all_inner_texts()
            seen["history"] = page.locator("#history tr").all_inner_texts()
            seen["decision"] = page.locator("#decision").inner_text()
            page.screenshot(path=str(REPORT / "console-experiment.png"), full_page=True)
        finally:
            browser.close()


@pytest.mark.timeout(900)
def test_the_console_in_chromium_shows_the_demo_experiment(tmp_path: Path) -> None:
    assert CHROMIUM.exists(), "Debian's chromium is missing: run `make browser`"
    seen: dict[str, Any] = {}
    options = DemoOptions(users=400, seed=5, out_dir=tmp_path / "report", state_dir=tmp_path / "state",
                          step_wall_s=0.05, progress_bar=False, while_live=lambda access: browse(access, seen))
    result = run(settings=load_settings({}), options=options)

    assert any(EXPERIMENT in row and "decided" in row for row in seen["list_rows"]), seen["list_rows"]
    assert seen["metric_rows"] == 1 + COMPARISONS  # header, then each metric of each treatment
    assert seen["charts"] == COMPARISONS and all(points > 1 for points in seen["points"]), seen["points"]
    health = " ".join(seen["health"])
    for check in ("srm", "guardrails", "late_records", "multi_variant_users"):
        assert check in health
    assert any("decided" in row and "demo" in row for row in seen["history"]), seen["history"]
    assert "the report says" in seen["decision"]
    assert result.console[EXPERIMENT]["decision"]["note"].startswith("the report says")
    for name in ("console-experiments.png", "console-experiment.png"):
        assert (REPORT / name).stat().st_size > 10_000
