"""Helpers for tests that drive the web app through the test client."""

from __future__ import annotations

from httpx import AsyncClient

TEST_PASSWORD = "a-long-test-password"


def csrf_token(client: AsyncClient) -> str:
    return client.cookies.get("liaison_csrf") or ""


async def fetch_csrf(client: AsyncClient, path: str = "/login") -> str:
    """GET a page so that the CSRF cookie is set; returns the token to submit with forms."""
    if not csrf_token(client):
        await client.get(path)
    return csrf_token(client)


async def login(client: AsyncClient, email: str, password: str = TEST_PASSWORD, next_url: str = "/"):
    token = await fetch_csrf(client)
    return await client.post(
        "/login",
        data={"email": email, "password": password, "next": next_url, "_csrf_token": token},
        follow_redirects=False,
    )


async def post_form(client: AsyncClient, path: str, data: dict | None = None):
    token = await fetch_csrf(client)
    return await client.post(path, data={**(data or {}), "_csrf_token": token}, follow_redirects=False)
