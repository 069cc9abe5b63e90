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
