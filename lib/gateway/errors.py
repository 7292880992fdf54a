"""The gateway's own errors, in Gemini's shape: {"error": {"code", "message", "status"}}."""

from __future__ import annotations

import json

from starlette.responses import Response

STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
          404: "NOT_FOUND", 413: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED",
          500: "INTERNAL", 502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


def gemini_error(code: int, message: str, *, retry_after: int | None = None) -> Response:
    body = {"error": {"code": code, "message": message, "status": STATUS.get(code, "UNKNOWN")}}
    headers = {"Retry-After": str(max(1, retry_after))} if retry_after is not None else None
    return Response(json.dumps(body), status_code=code, media_type="application/json",
                    headers=headers)
