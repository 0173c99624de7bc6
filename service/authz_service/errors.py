"""The one error family the API turns into `{"error": {"code", "message", "field"?}}`."""

from __future__ import annotations


class AppError(Exception):
    status = 500
    code = "internal"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInput(AppError):
    status = 400
    code = "invalid_request"


class Unauthorized(AppError):
    status = 401
    code = "unauthorized"


class Forbidden(AppError):
    status = 403
    code = "forbidden"


class NotFound(AppError):
    status = 404
    code = "not_found"


class Conflict(AppError):
    status = 409
    code = "conflict"


class DependencyUnavailable(AppError):
    """A dependency (database, redis, referral, statistics) cannot answer right now."""

    status = 503
    code = "dependency_unavailable"

    def __init__(self, dependency: str, detail: str = "", retry_after: int = 5) -> None:
        message = f"{dependency} is unavailable" + (f": {detail}" if detail else "")
        super().__init__(message)
        self.dependency = dependency
        self.retry_after = retry_after


class DeadlineExceeded(DependencyUnavailable):
    """The request ran out of its time: some dependency is slow or not answering."""

    def __init__(self, seconds: float) -> None:
        super().__init__("a dependency", f"the request did not finish within {seconds:g} s")
        self.message = (f"the request did not finish within {seconds:g} s: the database "
                        "or another dependency is slow or unavailable")
