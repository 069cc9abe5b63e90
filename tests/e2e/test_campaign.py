"""A marketer builds a recurring campaign in a real browser; the worker inside ``liaison serve``
delivers its occurrence once, to the outbox."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import pytest

from crm.npi import with_check_digit
from tests.e2e.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, LIAISON

pytestmark = pytest.mark.e2e
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-results"
CLINICIANS = 12


def write_roster(path: Path) -> Path:
    """A liaison's own roster export: plain CSV with emails (NPPES files carry none)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["NPI", "First Name", "Last Name", "Credential", "Email Address", "State", "Practice"])
        for n in range(CLINICIANS):
            writer.writerow([with_check_digit(f"19{n:07d}"), "Siobhán" if n % 2 else "Peter", f"O'Brien-{n}", "MD",
                             f"doc{n}@clinic.test", "IL", "O'Neil & Sons Family Practice"])
    return path


async def test_a_marketer_builds_a_recurring_campaign_and_the_worker_delivers_it(server, page):
    roster = write_roster(Path(server.log).parent / "roster.csv")
    imported = subprocess.run([LIAISON, "import", "clinicians", str(roster)], env=server.env, capture_output=True,
                              text=True)
    assert imported.returncode == 0, imported.stdout + imported.stderr

    await page.goto(server.url + "/login")
    await page.fill("#email", ADMIN_EMAIL)
    await page.fill("#password", ADMIN_PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(server.url + "/")

    await page.goto(server.url + "/segments/new")
    await page.fill("#name", "Illinois clinicians")
    await page.fill("#state", "IL")
    await page.click("#segment-form button[type=submit]")
    await page.wait_for_url("**/segments/*?saved=1")

    await page.click("nav >> text=Campaigns")
    await page.click("text=New campaign")
    await page.fill("#name", "Referral pathway reminder")
    await page.fill("#goal", "Keep the rapid-consult pathway in mind")
    await page.select_option("#segment", label="Illinois clinicians")
    # An expert cadence that fires every minute, with a window open all week and all day, so
    # that the test sees an occurrence go out.
    await page.select_option("#cadence_kind", "cron")
    await page.fill("#cadence_expression", "* * * * *")
    for day in range(1, 8):
        await page.check(f"input[name=send_days][value='{day}']")
    await page.fill("#send_start_hour", "0")
    await page.fill("#send_end_hour", "24")
    async with page.expect_response(lambda r: "/campaigns/preview" in r.url and "send_end_hour=24" in r.url):
        await page.press("#send_end_hour", "Tab")
    # (Locators, not wait_for_function: the page's CSP forbids the eval that it needs.)
    await page.locator("#campaign-preview ol.times li").nth(9).wait_for()
    preview = await page.inner_text("#campaign-preview")
    assert f"{CLINICIANS} clinicians in the audience" in preview and "Cron: * * * * *" in preview
    await page.screenshot(path=str(SCREENSHOTS / "campaign-builder.png"), full_page=True)

    await page.click("#campaign-form button[type=submit] >> text=Save draft")
    await page.wait_for_url("**/campaigns/*/steps/new")
    await page.fill("#subject", "Referrals for {{ practice_name }}")
    await page.fill("#html_body", "<p>Dear {{ salutation }},</p><p>Our team sees new patients within 5 days.</p>")
    await page.locator("#step-preview iframe").wait_for()
    assert "Referrals for O'Neil & Sons Family Practice" in await page.inner_text("#step-preview")
    await page.click("#step-form button[type=submit]")
    await page.wait_for_url("**/campaigns/*?done=step")

    await page.click("form[action$='/schedule'] button")
    await page.wait_for_url("**/campaigns/*?done=schedule")
    assert "scheduled" in await page.inner_text("h1")
    assert await page.locator("ol.times li").count() == 10

    # The worker takes the lease, builds the trigger, fires within the minute and dispatches.
    campaign_url = page.url.split("?")[0]
    for _ in range(60):
        await page.goto(campaign_url)
        sent = await page.inner_text("table.funnel tbody td:nth-child(2)")
        if sent.strip() == str(CLINICIANS):
            break
        await page.wait_for_timeout(2000)
    assert sent.strip() == str(CLINICIANS), await page.inner_text("main")
    assert "active" in await page.inner_text("h1")
    await page.screenshot(path=str(SCREENSHOTS / "campaign-page.png"), full_page=True)

    await page.click("nav >> text=Outbox")
    rows = await page.locator("table tbody tr").all_inner_texts()
    assert len(rows) == CLINICIANS and all("Referrals for O'Neil & Sons Family Practice" in r for r in rows)
    await page.locator("table tbody tr a").first.click()
    assert "List-Unsubscribe" in await page.inner_text("main")
    assert page.script_errors == []
