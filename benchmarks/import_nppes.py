"""Benchmark: importing an NPPES-format file (issue targets: 100,000 rows in ≤ 10 s on SQLite and
≤ 5 s on PostgreSQL, peak memory under 300 MB whatever the file size).

    .venv/bin/python benchmarks/import_nppes.py [--rows 100000 20000] \
        [--postgres postgresql://postgres@127.0.0.1:5432/test]

Writes synthetic extracts (all 330 columns) under var/bench/, imports each into a fresh database
in a child process (first import, then a re-import of the same file), and prints a table of wall
time, rows per second and the child's peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def child(url: str, nucc: str, path: str, passes: int) -> None:
    """Run in a fresh process: migrate, load the taxonomy, import ``passes`` times; print JSON."""
    import asyncio

    import liaison  # noqa: F401
    from crm.clinician_import import import_clinicians
    from crm.taxonomy_import import import_taxonomy
    from liaison import db
    from liaison.settings import Settings

    settings = Settings(database_url=url, var_dir=ROOT / "var")

    async def main() -> list[dict]:
        await db.check_connection(settings, create=True)
        db.activate(db.engine_for(settings))
        await db.migrate()
        await import_taxonomy(nucc)
        results = []
        for _ in range(passes):
            started = time.perf_counter()
            report = await import_clinicians(path)
            results.append({
                "seconds": time.perf_counter() - started,
                "rows": report.rows_read,
                "created": report.created,
                "updated": report.updated,
                "rejected": len(report.rejected),
            })
        return results

    results = asyncio.run(main())
    # VmHWM, not ru_maxrss: the latter keeps the parent's peak across fork and exec.
    status = Path("/proc/self/status").read_text()
    peak_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    peak_mb = peak_kb / 1024
    print(json.dumps({"passes": results, "peak_mb": peak_mb}))


def nucc_file(directory: Path) -> Path:
    """A taxonomy file with the codes the synthetic extract uses (written, not copied)."""
    from liaison.synthetic_nppes import write_taxonomy

    return write_taxonomy(directory / "nucc-bench.csv")


def fresh_postgres(base: str) -> tuple[str, str]:
    import asyncio

    import asyncpg

    name = f"liaison_bench_{secrets.token_hex(4)}"

    async def create() -> None:
        connection = await asyncpg.connect(base)
        await connection.execute(f'CREATE DATABASE "{name}"')
        await connection.close()

    asyncio.run(create())
    return urlunsplit(urlsplit(base)._replace(path=f"/{name}")), name


def drop_postgres(base: str, name: str) -> None:
    import asyncio

    import asyncpg

    async def drop() -> None:
        connection = await asyncpg.connect(base)
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.close()

    asyncio.run(drop())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 20_000])
    parser.add_argument("--postgres", default=os.environ.get("LIAISON_TEST_POSTGRES_URL"))
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        url, nucc, path, passes = args.child
        child(url, nucc, path, int(passes))
        return

    from liaison.synthetic_nppes import write_extract

    work = ROOT / "var" / "bench"
    work.mkdir(parents=True, exist_ok=True)
    nucc = nucc_file(work)
    table = []
    for rows in args.rows:
        extract = work / f"nppes-{rows}.csv"
        if not extract.exists():
            write_extract(extract, clinicians=rows - rows // 20, practices=rows // 20, seed=rows)
        size_mb = extract.stat().st_size / 1e6
        backends = [("SQLite", None)] + ([("PostgreSQL", args.postgres)] if args.postgres else [])
        for label, base in backends:
            cleanup = None
            if base is None:
                database = work / f"bench-{rows}-{secrets.token_hex(3)}.sqlite3"
                url = f"sqlite:///{database}"
            else:
                url, cleanup = fresh_postgres(base)
            try:
                out = subprocess.run(
                    [sys.executable, __file__, "--child", url, str(nucc), str(extract), "2"],
                    capture_output=True, text=True, check=True,
                ).stdout
            finally:
                if base is None:
                    for suffix in ("", "-wal", "-shm"):
                        Path(f"{database}{suffix}").unlink(missing_ok=True)
                elif cleanup:
                    drop_postgres(base, cleanup)
            result = json.loads(out.strip().splitlines()[-1])
            first, again = result["passes"]
            table.append((label, rows, size_mb, first["seconds"], rows / first["seconds"],
                          again["seconds"], result["peak_mb"], first["rejected"]))

    print()
    print(f"{'database':<11} {'rows':>8} {'file MB':>8} {'import s':>9} {'rows/s':>8} "
          f"{'re-import s':>12} {'peak MB':>8} {'rejected':>9}")
    for label, rows, size, seconds, rate, again, peak, rejected in table:
        print(f"{label:<11} {rows:>8} {size:>8.1f} {seconds:>9.2f} {rate:>8.0f} {again:>12.2f} "
              f"{peak:>8.0f} {rejected:>9}")


if __name__ == "__main__":
    main()
