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


async def test_admin_imports_filters_saves_a_segment_and_logs_a_visit(server, page):
    """The roster's whole path in a browser: upload a NUCC code set and an NPPES-format file,
    filter by role and specialty, save a segment, open a clinician, log a visit, see the timeline."""
    from pathlib import Path

    from liaison.synthetic_nppes import write_extract, write_taxonomy

    work = Path(server.log).parent
    nucc = write_taxonomy(work / "nucc.csv")
    extract = write_extract(work / "npidata_pfile.csv", clinicians=80, practices=12, seed=3).path

    await page.goto(server.url + "/login")
    await page.fill("#email", ADMIN_EMAIL)
    await page.fill("#password", ADMIN_PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(server.url + "/")

    for kind, path in (("taxonomy", nucc), ("clinicians", extract)):
        await page.click("nav >> text=Import")
        await page.check(f"input[name=kind][value={kind}]")
        await page.set_input_files("#file", str(path))
        await page.click("form[action='/imports'] button[type=submit]")
        await page.wait_for_selector("pre.report")
        assert "rejected:         0" in await page.inner_text("pre.report")

    await page.click("nav >> text=Clinicians")
    await page.wait_for_url(server.url + "/clinicians")
    assert await page.locator("#roster-results tbody tr").count() > 10

    # Filter by role and by specialty: the results change in place (htmx), the address follows.
    await page.check("input[name=role][value=primary_care]")
    await page.wait_for_url("**/clinicians?*role=primary_care*")
    await page.fill("#taxonomy", "207Q")
    await page.press("#taxonomy", "Tab")
    await page.wait_for_url("**taxonomy=207Q*")
    specialties = await page.locator("#roster-results tbody tr td:nth-child(2)").all_inner_texts()
    assert specialties and all("Family Medicine Physician" in text for text in specialties)

    # Save the same filters as a segment; its live count matches the list.
    await page.click("nav >> text=Segments")
    await page.click("text=New segment")
    await page.fill("#name", "Family medicine")
    await page.fill("#taxonomy", "207Q")
    async with page.expect_response(lambda r: "/segments/preview" in r.url and "taxonomy=207Q" in r.url
                                    and "role=primary_care" in r.url):
        await page.check("input[name=role][value=primary_care]")
    await page.wait_for_function("document.querySelector('#segment-preview li') !== null")
    preview = await page.inner_text("#segment-preview")
    await page.click("#segment-form button[type=submit]")
    await page.wait_for_url("**/segments/*?saved=1")
    count = int(preview.split(" clinicians match")[0].strip())
    # The list shows up to 50 rows a page: the segment counts exactly what the filters matched.
    assert count == len(specialties) if len(specialties) < 50 else count >= 50

    # Open a clinician from the segment and log a visit in two clicks.
    await page.locator("table.roster tbody tr td a").first.click()
    await page.wait_for_url("**/clinicians/*")
    await page.click("label.pill:has-text('Visit')")
    await page.fill("#notes", "Left referral pathway cards")
    await page.click("#log-touch button[type=submit]")
    await page.wait_for_url("**/clinicians/*#timeline")
    timeline = await page.inner_text("#timeline")
    assert "Visit" in timeline and "Left referral pathway cards" in timeline
    assert page.script_errors == []
    await page.screenshot(path=str(SCREENSHOTS / "clinician-timeline.png"), full_page=True)
