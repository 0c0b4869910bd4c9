"""Error codes, their Thai and English texts, and the handlers that render the contract's shape.

Every error a client sees is ``{"error": {"code", "message", "details"}}``. ``code`` is stable;
``message`` follows ``Accept-Language`` (Thai unless English is preferred). Internals (stack
traces, SQL, class names) never reach the body: unknown exceptions become ``internal_error``.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import MediaType, Request, Response
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_422_UNPROCESSABLE_ENTITY,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from chatrt.db.errors import is_unavailable
from chatrt.observability import metrics
from chatrt.settings import Locale

logger = logging.getLogger("chatrt.errors")

# code -> (Thai, English)
MESSAGES: dict[str, tuple[str, str]] = {
    "bad_request": ("คำขอไม่ถูกต้อง", "The request is malformed."),
    "validation_error": ("ข้อมูลที่ส่งมาไม่ถูกต้อง", "The request data is invalid."),
    "not_authenticated": ("กรุณาเข้าสู่ระบบ", "Please sign in."),
    "invalid_credentials": ("อีเมลหรือรหัสผ่านไม่ถูกต้อง", "Wrong email or password."),
    "forbidden": ("คุณไม่มีสิทธิ์ทำรายการนี้", "You are not allowed to do this."),
    "csrf_failed": (
        "โทเค็น CSRF ขาดหายหรือไม่ถูกต้อง",
        "The CSRF token is missing or wrong.",
    ),
    "origin_not_allowed": (
        "ไม่อนุญาตให้เว็บไซต์นี้ส่งคำขอ",
        "Requests from this site are not allowed.",
    ),
    "not_found": ("ไม่พบสิ่งที่ต้องการ", "Not found."),
    "conversation_not_found": ("ไม่พบบทสนทนา", "Conversation not found."),
    "message_not_found": ("ไม่พบข้อความ", "Message not found."),
    "method_not_allowed": ("ไม่รองรับเมธอดนี้", "This method is not allowed here."),
    "email_taken": ("อีเมลนี้ถูกใช้แล้ว", "This email is already registered."),
    "generation_in_progress": (
        "กำลังสร้างคำตอบอยู่ กรุณารอให้เสร็จก่อน",
        "An answer is still being generated; wait for it to finish.",
    ),
    "restore_period_expired": (
        "เลยระยะเวลาที่กู้คืนได้แล้ว",
        "The restore period has passed.",
    ),
    "conflict": ("ข้อมูลขัดแย้งกับสถานะปัจจุบัน", "This conflicts with the current state."),
    "invalid_cursor": ("เคอร์เซอร์ของหน้าไม่ถูกต้อง", "The page cursor is invalid."),
    "payload_too_large": ("ข้อมูลมีขนาดใหญ่เกินไป", "The request is too large."),
    "content_too_long": ("ข้อความยาวเกินกำหนด", "The message is too long."),
    "rate_limited": ("ส่งคำขอถี่เกินไป กรุณารอสักครู่", "Too many requests; slow down."),
    "quota_exceeded": ("ใช้โควตาโทเค็นของวันนี้หมดแล้ว", "Today's token budget is used up."),
    "all_providers_failed": (
        "ขออภัย ตอนนี้ไม่สามารถติดต่อโมเดล AI ได้ กรุณาลองใหม่อีกครั้ง",
        "Sorry, no AI model could be reached just now. Please try again.",
    ),
    "provider_failed": (
        "ขออภัย การสร้างคำตอบหยุดกลางคัน กรุณาลองใหม่อีกครั้ง",
        "Sorry, the answer broke off. Please try again.",
    ),
    "answer_too_long": (
        "คำตอบยาวเกินกำหนด จึงถูกตัดไว้เท่านี้",
        "The answer reached the length limit and was cut off there.",
    ),
    "shutdown": (
        "ขออภัย เซิร์ฟเวอร์รีสตาร์ตระหว่างสร้างคำตอบ กรุณาลองใหม่",
        "Sorry, the server restarted while answering. Please try again.",
    ),
    "instance_lost": (
        "ขออภัย การสร้างคำตอบถูกขัดจังหวะ กรุณาลองใหม่",
        "Sorry, the answer was interrupted. Please try again.",
    ),
    "shutting_down": (
        "เซิร์ฟเวอร์กำลังรีสตาร์ต กรุณาลองใหม่ในอีกสักครู่",
        "The server is restarting; please retry in a moment.",
    ),
    "stream_history_lost": (
        "ประวัติการสตรีมหายไป โปรดโหลดข้อความจากประวัติแทน",
        "The stream history is gone; reload the message from the history.",
    ),
    "bad_frame": ("ข้อความที่ส่งมาไม่ถูกรูปแบบ", "The frame is malformed."),
    "internal_error": (
        "เกิดข้อผิดพลาดภายในระบบ กรุณาลองใหม่",
        "Something went wrong on our side; please try again.",
    ),
    "service_unavailable": (
        "ระบบยังไม่พร้อมให้บริการ",
        "The service is not ready.",
    ),
}

# Default code per status, for exceptions raised by the framework itself.
STATUS_CODES: dict[int, str] = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}


class ErrorBody(msgspec.Struct, frozen=True):
    code: str
    message: str
    details: Any = None


class ErrorResponse(msgspec.Struct, frozen=True):
    """The contract's error envelope (also used in OpenAPI)."""

    error: ErrorBody


class AppError(HTTPException):
    """An error with a stable contract code; raise it from handlers and services."""

    def __init__(
        self,
        status_code: int,
        code: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail=code, status_code=status_code, headers=headers)
        self.code = code
        self.details = details


_STATUS_TEXT = {
    400: "Malformed request body",
    401: "Not signed in, or wrong credentials",
    403: "CSRF token missing or wrong",
    404: "Not found (also: soft-deleted, or someone else's)",
    409: "Conflicts with the current state",
    413: "Body or content too large",
    422: "Validation failed; details name the field",
    429: "Rate limit or token budget exceeded",
    503: "A dependency is down",
}


def error_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the errors a route can answer, all in the contract's shape."""
    return {
        status: ResponseSpec(
            data_container=ErrorResponse, description=_STATUS_TEXT[status], generate_examples=False
        )
        for status in statuses
    }


def preferred_locale(accept_language: str | None, default: Locale) -> Locale:
    """Pick ``en`` or ``th`` from an ``Accept-Language`` header by q-value."""
    if not accept_language:
        return default
    best: tuple[float, Locale] | None = None
    for part in accept_language.split(","):
        lang, _, params = part.strip().partition(";")
        primary = lang.strip().lower().split("-")[0]
        if primary not in ("th", "en"):
            continue
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        locale: Locale = "th" if primary == "th" else "en"
        if quality > 0 and (best is None or quality > best[0]):
            best = (quality, locale)
    return best[1] if best else default


def localize(code: str, locale: Locale) -> str:
    thai, english = MESSAGES.get(code, MESSAGES["internal_error"])
    return thai if locale == "th" else english


def error_body(code: str, locale: Locale, details: Any = None) -> ErrorResponse:
    return ErrorResponse(ErrorBody(code=code, message=localize(code, locale), details=details))


def _validation_details(exc: ValidationException) -> list[dict[str, Any]]:
    details: list[dict[str, Any]] = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if isinstance(item, dict):
            details.append(
                {
                    "field": item.get("key"),
                    "source": item.get("source"),
                    "message": str(item.get("message", "")),
                }
            )
    return details


def is_dependency_down(exc: BaseException) -> bool:
    """True when ``exc`` means PostgreSQL or Redis cannot be reached right now (retry later)."""
    return is_unavailable(exc) or isinstance(exc, (RedisConnectionError, RedisTimeoutError))


def http_exception_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Render any exception in the contract's shape, localized by ``Accept-Language``."""
    locale: Locale = request.app.state.settings.server.default_locale
    locale = preferred_locale(request.headers.get("accept-language"), locale)
    headers: dict[str, str] | None = None
    details: Any = None
    if isinstance(exc, AppError):
        status, code, details, headers = exc.status_code, exc.code, exc.details, exc.headers
    elif isinstance(exc, ValidationException):
        status, code = HTTP_422_UNPROCESSABLE_ENTITY, "validation_error"
        details = _validation_details(exc)
        if not details:
            # Unparseable bodies ("Malformed JSON" and the like) are a 400.
            status, code = HTTP_400_BAD_REQUEST, "bad_request"
    elif isinstance(exc, PermissionDeniedException) and "CSRF" in str(exc.detail):
        status, code, headers = exc.status_code, "csrf_failed", exc.headers
    elif isinstance(exc, NotAuthorizedException):
        status, code, headers = exc.status_code, "not_authenticated", exc.headers
    elif isinstance(exc, HTTPException):
        status, headers = exc.status_code, exc.headers
        code = STATUS_CODES.get(status, "internal_error" if status >= 500 else "bad_request")
    elif isinstance(exc, (UnicodeDecodeError, RecursionError)):
        # Undecodable or absurdly nested bodies: the client's fault, not ours.
        status, code = HTTP_400_BAD_REQUEST, "bad_request"
    elif is_dependency_down(exc):
        # PostgreSQL or Redis is down or restarting: the client may retry; not a bug report.
        logger.warning(
            "dependency unavailable",
            extra={"path": request.url.path, "method": request.method, "error": repr(exc)},
        )
        status, code = HTTP_503_SERVICE_UNAVAILABLE, "service_unavailable"
        headers = {"Retry-After": "1"}
    else:
        logger.exception(
            "unhandled error", extra={"path": request.url.path, "method": request.method}
        )
        status, code = HTTP_500_INTERNAL_SERVER_ERROR, "internal_error"
    if code not in MESSAGES:
        code = STATUS_CODES.get(status, "internal_error")
    metrics.ERRORS.labels(code, "http").inc()
    return Response(
        content=error_body(code, locale, details),
        status_code=status,
        headers=headers,
        media_type=MediaType.JSON,
    )


EXCEPTION_HANDLERS = {Exception: http_exception_handler}
