"""A person signs in and out in a real browser, against a real ``liaison serve`` process."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import ADMIN_EMAIL, ADMIN_PASSWORD

pytestmark = pytest.mark.e2e
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-results"


async def test_admin_signs_in_sees_home_and_signs_out(server, page):
    await page.goto(server.url + "/admin/users")
    assert "/login?next=" in page.url
    await page.fill("#email", ADMIN_EMAIL.upper())
    await page.fill("#password", "wrong password here")
    await page.click("button[type=submit]")
    assert "The email or password is not right." in await page.inner_text("#login-error")

    await page.fill("#password", ADMIN_PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(server.url + "/admin/users")
    assert await page.inner_text("h1") == "Users"
    assert ADMIN_EMAIL in await page.inner_text("main")

    await page.click("nav >> text=Home")
    await page.wait_for_url(server.url + "/")
    assert "Welcome, Ada O'Neil" in await page.inner_text("h1")
    # htmx loaded from the package's static files, under a CSP that forbids inline script.
    assert await page.evaluate("typeof window.htmx") == "object"
    assert page.script_errors == []
    SCREENSHOTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / "home-admin.png"), full_page=True)

    await page.click("text=Sign out")
    await page.wait_for_url(server.url + "/login")
    await page.goto(server.url + "/")
    assert "/login?next=" in page.url


async def test_liaison_filters_the_roster_opens_a_clinician_and_logs_a_visit(server, page):
    """Import through the CLI (taxonomy + NPPES extract), then the browser path a liaison walks."""
    import subprocess
    from pathlib import Path

    from liaison.synthetic_nppes import write_extract
    from tests.crm.importing import write_nucc
    from tests.e2e.conftest import LIAISON

    work = Path(server.log).parent
    nucc = write_nucc(work / "nucc.csv")
    extract = write_extract(work / "npidata.csv", clinicians=60, practices=10, seed=3).path
    subprocess.run([LIAISON, "import", "taxonomy", str(nucc)], env=server.env, check=True, capture_output=True)
    imported = subprocess.run([LIAISON, "import", "clinicians", str(extract)], env=server.env,
                              capture_output=True, text=True)
    assert imported.returncode in (0, 3), imported.stderr

    await page.goto(server.url + "/login")
    await page.fill("#email", ADMIN_EMAIL)
    await page.fill("#password", ADMIN_PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(server.url + "/")
    await page.click("nav >> text=Clinicians")
    await page.wait_for_url(server.url + "/clinicians")
    total = await page.locator("#roster-results tbody tr").count()
    assert total > 10

    # Filter by role: the results change in place (htmx) and the address bar follows.
    await page.check("input[name=role][value=primary_care]")
    await page.wait_for_url("**/clinicians?*role=primary_care*")
    roles = await page.locator("#roster-results tbody tr td:nth-child(2)").all_inner_texts()
    assert roles and all(text.startswith("Primary care") for text in roles)

    # Live search by the first clinician's last name.
    first_name_cell = page.locator("#roster-results tbody tr td:first-child a").first
    last_name = (await first_name_cell.inner_text()).split(",")[0]
    await page.fill("#q", last_name)
    await page.wait_for_url(f"**q={last_name.replace(' ', '+')}*")
    await page.locator("#roster-results tbody tr td:first-child a").first.click()
    await page.wait_for_url("**/clinicians/*")
    assert last_name in await page.inner_text("h1")

    # Log a visit in two clicks.
    await page.click("label.pill:has-text('Visit')")
    await page.fill("#notes", "Left referral pathway cards")
    await page.click("#log-touch button[type=submit]")
    await page.wait_for_url("**/clinicians/*#timeline")
    timeline = await page.inner_text("#timeline")
    assert "Visit" in timeline and "Left referral pathway cards" in timeline
    assert page.script_errors == []
    await page.screenshot(path=str(SCREENSHOTS / "clinician-timeline.png"), full_page=True)
