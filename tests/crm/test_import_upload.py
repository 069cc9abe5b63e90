"""Imports through the browser: managers only, same importers, size limit, result and review pages."""

from __future__ import annotations

from crm.import_controller import UPLOAD_MAX_BYTES
from crm.tables import AuditEvent, Clinician, ImportReview, Taxonomy
from liaison.synthetic_nppes import nppes_header
from tests.crm.importing import individual, npi, organization, write_csv, write_nppes, write_nucc
from tests.helpers import fetch_csrf


async def upload(client, path, kind: str, dry_run: bool = False):
    token = await fetch_csrf(client)
    data = {"kind": kind, "_csrf_token": token}
    if dry_run:
        data["dry_run"] = "on"
    with open(path, "rb") as handle:
        return await client.post("/imports", data=data, files={"file": (path.name, handle, "text/csv")})


async def test_manager_uploads_the_taxonomy_then_an_nppes_file(client, signed_in, tmp_path):
    await signed_in("manager")
    response = await upload(client, write_nucc(tmp_path / "nucc.csv"), "taxonomy")
    assert response.status_code == 200 and "created:          8" in response.text
    header = nppes_header()
    nppes = write_nppes(tmp_path / "npidata.csv", [organization(header, 1), individual(header, 2)])
    dry = await upload(client, nppes, "clinicians", dry_run=True)
    assert "dry run" in dry.text and await Clinician.count().run() == 0
    real = await upload(client, nppes, "clinicians")
    assert real.status_code == 200 and "created:          1" in real.text
    assert await Clinician.count().run() == 1 and await Taxonomy.count().run() == 8
    event = await AuditEvent.objects().output(load_json=True).get(AuditEvent.action == "import.clinician").run()
    assert event.object_id == "npidata.csv" and event.after["created"] == 1


async def test_rejected_rows_are_listed_and_refusals_explained(client, signed_in, tmp_path):
    await signed_in("admin")
    roster = write_csv(tmp_path / "roster.csv", ["NPI", "Last Name"], [["1234567890", "Bad"], [npi(3), "Good"]])
    response = await upload(client, roster, "clinicians")
    assert "<td>2</td><td>NPI</td>" in response.text and "wrong check digit" in response.text
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    refused = await upload(client, empty, "clinicians")
    assert refused.status_code == 422 and "the file is empty" in refused.text


async def test_only_managers_import(client, signed_in, tmp_path):
    await signed_in("liaison")
    assert (await client.get("/imports")).status_code == 403
    response = await upload(client, write_nucc(tmp_path / "nucc.csv"), "taxonomy")
    assert response.status_code == 403 and await Taxonomy.count().run() == 0


async def test_an_upload_over_the_limit_is_refused_without_reading_it(client, signed_in):
    await signed_in("manager")
    token = await fetch_csrf(client)
    boundary = "liaisonboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"_csrf_token\"\r\n\r\n{token}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"huge.csv\"\r\n\r\n").encode()
    claimed = 2 * 1024**3  # a 2 GB upload, as the browser announces it

    async def body():
        yield head
        chunk = b"x" * (1 << 20)
        for _ in range(UPLOAD_MAX_BYTES // len(chunk) + 2):
            yield chunk

    response = await client.post(
        "/imports", content=body(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}", "content-length": str(claimed),
                 "x-csrftoken": token},
    )
    assert response.status_code == 413
    streamed = await client.post(
        "/imports", content=body(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}", "x-csrftoken": token},
    )
    assert streamed.status_code == 413
    assert await Clinician.count().run() == 0


async def test_review_list_shows_conflicts_and_dismisses_them(client, signed_in, tmp_path):
    await signed_in("manager")
    await upload(client, write_nucc(tmp_path / "nucc.csv"), "taxonomy")
    header = ["NPI", "Last Name", "Email"]
    await upload(client, write_csv(tmp_path / "a.csv", header, [[npi(1), "Lee", "lee@clinic.org"]]), "clinicians")
    result = await upload(client, write_csv(tmp_path / "b.csv", header, [[npi(2), "Other", "lee@clinic.org"]]),
                          "clinicians")
    assert "Review 1 row<" in result.text
    page = await client.get("/imports/review")
    assert "belongs to the clinician with NPI " + npi(1) in page.text
    item = await ImportReview.objects().first().run()
    token = await fetch_csrf(client)
    done = await client.post(f"/imports/review/{item.id}/dismiss", data={"_csrf_token": token}, follow_redirects=False)
    assert done.status_code == 303
    assert "Nothing waits for review" in (await client.get("/imports/review")).text
