"""Imports from the browser, for managers: the same importers as the CLI, with a size limit and a
result page; and the review list of rows an import would not merge on its own."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from litestar import Controller, Request, get, post
from litestar.datastructures import UploadFile
from litestar.exceptions import NotFoundException
from litestar.response import Redirect, Template

from crm import audit
from crm.access import allow
from crm.clinician_import import import_clinicians
from crm.csv_input import InputRefused
from crm.db import atomic
from crm.forms import ObjectId, request_actor
from crm.import_report import record_import
from crm.roles import Role
from crm.tables import ImportReview
from crm.taxonomy_import import import_taxonomy

UPLOAD_MAX_BYTES = 256 * 1024 * 1024  # larger NPPES files go through `liaison import`
KINDS = {"clinicians": "Clinicians (NPPES bulk file or CSV)", "taxonomy": "NUCC taxonomy code set"}
SHOWN_ERRORS = 500


class ImportController(Controller):
    path = "/imports"
    opt = allow(Role.manager)
    include_in_schema = False

    @get("/")
    async def form(self) -> Template:
        return Template(template_name="crm/import.html", context={"kinds": KINDS, "error": None,
                                                                  "limit_mb": UPLOAD_MAX_BYTES // 2**20})

    @post("/", request_max_body_size=UPLOAD_MAX_BYTES)
    async def upload(self, request: Request) -> Template:
        form = await request.form()
        kind = str(form.get("kind", ""))
        upload = form.get("file")
        dry_run = form.get("dry_run") == "on"
        error = None
        if kind not in KINDS:
            error = "Choose what the file holds."
        elif not isinstance(upload, UploadFile) or not upload.filename:
            error = "Choose a file to upload."
        if error:
            return Template(template_name="crm/import.html", status_code=422,
                            context={"kinds": KINDS, "error": error, "limit_mb": UPLOAD_MAX_BYTES // 2**20})
        name = Path(upload.filename).name[:200]
        with tempfile.TemporaryDirectory(prefix="liaison-upload-") as folder:
            path = Path(folder) / "upload.csv"
            with path.open("wb") as target:
                upload.file.seek(0)
                shutil.copyfileobj(upload.file, target, length=1 << 20)
            try:
                if kind == "taxonomy":
                    report = await import_taxonomy(path, dry_run=dry_run, display_name=name)
                else:
                    report = await import_clinicians(path, dry_run=dry_run, display_name=name)
            except InputRefused as refused:
                return Template(template_name="crm/import.html", status_code=422,
                                context={"kinds": KINDS, "error": f"Refused: {refused}",
                                         "limit_mb": UPLOAD_MAX_BYTES // 2**20})
        await record_import(report, request_actor(request))
        return Template(template_name="crm/import_result.html",
                        context={"report": report, "errors": report.rejected[:SHOWN_ERRORS]})

    @get("/review")
    async def review(self) -> Template:
        rows = await ImportReview.objects().where(ImportReview.resolved == False).order_by(  # noqa: E712
            ImportReview.id).limit(500).output(load_json=True).run()
        return Template(template_name="crm/import_review.html", context={"rows": rows})

    @post("/review/{review_id:int}/dismiss")
    async def dismiss(self, request: Request, review_id: ObjectId) -> Redirect:
        async with atomic():
            done = await ImportReview.update({ImportReview.resolved: True}).where(
                (ImportReview.id == review_id) & (ImportReview.resolved == False)  # noqa: E712
            ).returning(ImportReview.id).run()
            if not done:
                raise NotFoundException("No such open review item.")
            await audit.record("import_review.dismiss", actor=request_actor(request), object_type="import_review",
                               object_id=review_id)
        return Redirect("/imports/review", status_code=303)
