"""Benchmark: the clinician list page and a segment's live count with 100,000 clinicians
(issue targets on SQLite: list page p95 under 50 ms, segment count under 100 ms).

    .venv/bin/python benchmarks/roster.py [--clinicians 100000] [--repeat 40] [--database-url URL]

Builds (once) a database from a synthetic NPPES extract under var/bench/, starts a real
``liaison serve`` process, signs in as a marketer, and times each request from a client on
loopback, one at a time (a manager's first pages also count the matches, for bulk changes).
Prints p50/p95 per kind of request.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
LIAISON = str(Path(sys.executable).with_name("liaison"))
EMAIL, PASSWORD = "bench@example.org", "benchmark-password"

REQUESTS = [
    ("list, no filter", "/clinicians"),
    ("list, role + state", "/clinicians?role=surgeon&state=VA"),
    ("list, search 'smi'", "/clinicians?q=smi"),
    ("list, search practice", "/clinicians?q=riverside"),
    ("list, ZIP prefix, by city", "/clinicians?zip=232&sort=city"),
    ("list, taxonomy prefix", "/clinicians?taxonomy=207Q"),
    ("list, taxonomy group", "/clinicians?group=Allopathic+%26+Osteopathic+Physicians"),
    ("list, page 3", None),  # filled in from the page 2 cursor
    ("live search (htmx)", "/clinicians?q=o%27d"),
    ("segment count, role", "/segments/preview?role=primary_care"),
    ("segment count, role+ZIP", "/segments/preview?role=primary_care&zip=23"),
    ("segment count, search", "/segments/preview?q=smi&state=VA"),
]


def run(args: list[str], env: dict[str, str], stdin: str | None = None) -> None:
    subprocess.run([LIAISON, *args], env=env, input=stdin, text=True, check=True, capture_output=True)


def build(env: dict[str, str], clinicians: int, work: Path) -> None:
    from liaison.synthetic_nppes import write_extract, write_taxonomy

    extract = work / f"roster-nppes-{clinicians}.csv"
    if not extract.exists():
        write_extract(extract, clinicians=clinicians, practices=max(10, clinicians // 20), seed=11)
    nucc = write_taxonomy(work / "roster-nucc.csv")
    run(["db", "migrate"], env)
    run(["import", "taxonomy", str(nucc)], env)
    subprocess.run([LIAISON, "import", "clinicians", str(extract)], env=env, check=False, capture_output=True)
    run(["users", "create", EMAIL, "--role", "marketer"], env, stdin=PASSWORD + "\n")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clinicians", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--database-url", help="an existing, migrated and filled database instead")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    work = ROOT / "var" / "bench"
    work.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIAISON_")}
    env.update(LIAISON_VAR_DIR=str(work / "var"), LIAISON_PASSWORD_HASH="cheapest")
    if args.database_url:
        env["LIAISON_DATABASE_URL"] = args.database_url
    else:
        database = work / f"roster-{args.clinicians}.sqlite3"
        env["LIAISON_DATABASE_URL"] = f"sqlite:///{database}"
        if not database.exists():
            print(f"building {database.name} …", flush=True)
            build(env, args.clinicians, work)
    port = free_port()
    server = subprocess.Popen([LIAISON, "serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if httpx.get(base + "/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        client = httpx.Client(base_url=base)
        client.get("/login")
        client.post("/login", data={"email": EMAIL, "password": PASSWORD,
                                    "_csrf_token": client.cookies["liaison_csrf"]})
        page2 = client.get("/clinicians?after=" + _cursor(client.get("/clinicians").text))
        requests = [(label, path or "/clinicians?after=" + _cursor(page2.text)) for label, path in REQUESTS]
        print(f"\n{'request':<28} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}  rows")
        for label, path in requests:
            headers = {"HX-Request": "true", "HX-Target": "roster-results"} if "htmx" in label else {}
            if path.startswith("/segments/preview"):
                headers = {"HX-Request": "true"}
            timings, response = [], None
            for _ in range(args.repeat):
                started = time.perf_counter()
                response = client.get(path, headers=headers)
                timings.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, (path, response.status_code)
            timings.sort()
            p95 = timings[max(0, int(len(timings) * 0.95) - 1)]
            rows = response.text.count('href="/clinicians/') if "segments" not in path else _count(response.text)
            print(f"{label:<28} {statistics.median(timings):>8.1f} {p95:>8.1f} {timings[-1]:>8.1f}  {rows}")
    finally:
        server.terminate()
        server.wait(timeout=10)


def _cursor(html: str) -> str:
    import re

    match = re.search(r"after=([A-Za-z0-9_-]+)", html)
    return match.group(1) if match else ""


def _count(html: str) -> str:
    import re

    match = re.search(r"<strong>(\d+)</strong>", html)
    return match.group(1) + " match" if match else "?"


if __name__ == "__main__":
    main()
