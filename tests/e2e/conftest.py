"""A real ``liaison serve`` process and a headless Chromium driven by Playwright."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Iterator

import pytest

from tests.conftest import skip_or_fail

CHROMIUM = os.environ.get("LIAISON_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
LIAISON = str(Path(sys.executable).with_name("liaison"))
ADMIN_EMAIL = "admin@example.org"
ADMIN_PASSWORD = "browser-test-password"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    url: str
    env: dict[str, str]
    log: Path


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    """``liaison serve`` on a fresh SQLite database, with one admin, on a free port."""
    tmp = tmp_path_factory.mktemp("e2e")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIAISON_")}
    env.update(
        LIAISON_DATABASE_URL=f"sqlite:///{tmp / 'e2e.sqlite3'}",
        LIAISON_VAR_DIR=str(tmp / "var"),
        LIAISON_PASSWORD_HASH="cheapest",
    )
    subprocess.run([LIAISON, "db", "migrate"], env=env, check=True, capture_output=True)
    subprocess.run(
        [LIAISON, "users", "create", ADMIN_EMAIL, "--role", "admin", "--name", "Ada O'Neil"],
        env=env, input=ADMIN_PASSWORD + "\n", text=True, check=True, capture_output=True,
    )
    port = free_port()
    log = tmp / "serve.log"
    with log.open("w") as log_file:
        process = subprocess.Popen(
            [LIAISON, "serve", "--port", str(port)], env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"liaison serve did not start:\n{log.read_text()}")
            time.sleep(0.2)
        try:
            yield Server(url=url, env=env, log=log)
        finally:
            process.terminate()
            process.wait(timeout=15)


@pytest.fixture
async def page() -> AsyncIterator:
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        skip_or_fail("chromium", "Playwright for Python is not installed")
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        skip_or_fail("chromium", f"Chromium not found at {CHROMIUM} (apt-get install -y chromium)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS
        )
        context = await browser.new_context(viewport={"width": 1280, "height": 800})
        page = await context.new_page()
        # Script errors and CSP violations; a 401 page load is logged too, and is expected.
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on(
            "console",
            lambda message: errors.append(message.text)
            if message.type == "error" and "Failed to load resource" not in message.text
            else None,
        )
        page.script_errors = errors  # type: ignore[attr-defined]
        try:
            yield page
        finally:
            await browser.close()
