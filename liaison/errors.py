"""Error responses: friendly pages for people, short JSON for programs, no internals for either."""

from __future__ import annotations

import logging
import secrets
from urllib.parse import quote

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, NotAuthorizedException, ValidationException
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from crm.access import SESSION_EXPIRED

log = logging.getLogger("liaison.errors")

TITLES = {
    400: "That request could not be read",
    401: "Please sign in",
    403: "You do not have access to this page",
    404: "Page not found",
    405: "That action is not allowed here",
    413: "That upload is too large",
    422: "Some values need fixing",
    429: "Too many attempts",
    500: "Something went wrong on our side",
    503: "Liaison is temporarily unavailable",
}

MESSAGES = {
    404: "The page you asked for does not exist, or you followed an old link.",
    500: "The problem has been logged. Please try again, and tell your administrator if it persists.",
}


def wants_json(request: Request) -> bool:
    path = request.scope.get("path", "")
    if path.startswith(("/api/", "/webhooks/", "/schema")) or path == "/healthz":
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def _safe_next(request: Request) -> str:
    path = request.scope.get("path", "/")
    query = request.scope.get("query_string", b"").decode("latin-1")
    return path + (f"?{query}" if query else "")


def _page(request: Request, status: int, detail: str, reference: str | None = None) -> Response:
    return Template(
        template_name="errors/error.html",
        context={
            "status": status,
            "title": TITLES.get(status, "Request refused"),
            "detail": detail,
            "reference": reference,
        },
        status_code=status,
        media_type=MediaType.HTML,
    )


CSRF_FAILURE = "CSRF token verification failed"


def http_exception_handler(request: Request, exc: HTTPException) -> Response:
    status = exc.status_code
    detail = exc.detail if status < 500 else MESSAGES[500]
    if status == 404 and request.scope.get("path", "").startswith(("/static/", "/vendor/")):
        detail = MESSAGES[404]  # the static files handler names server paths
    if status >= 500:
        reference = secrets.token_hex(4)
        log.error("HTTP %s on %s (reference %s): %s", status, request.url.path, reference, exc)
    else:
        reference = None
    if wants_json(request):
        body: dict = {"status_code": status, "detail": detail}
        if isinstance(exc, ValidationException) and exc.extra:
            body["extra"] = exc.extra
        headers = dict(exc.headers or {})
        if status == 401:
            headers.setdefault("WWW-Authenticate", 'Bearer realm="liaison"')
        return Response(body, status_code=status, headers=headers or None)
    if isinstance(exc, NotAuthorizedException):
        target = "/login?next=" + quote(_safe_next(request), safe="")
        if request.scope.get(SESSION_EXPIRED):
            target += "&expired=1"
        if request.headers.get("hx-request") == "true":
            return Response(b"", status_code=401, headers={"HX-Redirect": target})
        return Redirect(target, status_code=303)
    if status == 404 and detail in ("Not Found", ""):
        detail = MESSAGES[404]
    if detail == CSRF_FAILURE:
        detail = (
            "This form has expired or did not come from Liaison. Go back, reload the page and "
            "try again."
        )
    response = _page(request, status, detail, reference)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def internal_error_handler(request: Request, exc: Exception) -> Response:
    reference = secrets.token_hex(4)
    log.exception("Unhandled error on %s (reference %s)", request.url.path, reference)
    if wants_json(request):
        return Response(
            {"status_code": 500, "detail": MESSAGES[500], "reference": reference},
            status_code=HTTP_500_INTERNAL_SERVER_ERROR,
        )
    return _page(request, 500, MESSAGES[500], reference)


def unstorable_input_handler(request: Request, exc: Exception) -> Response:
    """Values the database cannot hold (a NUL character, a number out of range) are the
    client's mistake: 400, logged without a traceback."""
    log.warning("refused input on %s: %s", request.url.path, exc)
    return http_exception_handler(
        request,
        HTTPException(status_code=400, detail="The request holds a value that cannot be stored."),
    )


def busy_handler(request: Request, exc: Exception) -> Response:
    """SQLite's write lock was held past the busy timeout (a long import): 503, try again."""
    log.warning("database busy on %s: %s", request.url.path, exc)
    return http_exception_handler(
        request,
        HTTPException(status_code=503, detail="Liaison is busy writing (an import?). Try again in a moment.",
                      headers={"Retry-After": "10"}),
    )


def nested_input_handler(request: Request, exc: Exception) -> Response:
    """A body nested so deeply that decoding it overflows the stack is the client's mistake."""
    log.warning("refused deeply nested input on %s", request.url.path)
    return http_exception_handler(
        request, HTTPException(status_code=400, detail="The request is nested too deeply."),
    )
