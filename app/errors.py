"""Every way a request can fail, each mapped once to an HTTP status and a Splunk HEC answer.

Answers follow the HEC contract (https://docs.splunk.com/Documentation/Splunk/latest/Data/TroubleshootHTTPEventCollector):
a JSON body `{"text": ..., "code": ...}`, extended with `detail` (what exactly was wrong and how
to fix it) and, where it helps, more keys such as `offset`. One exception handler in `main.py`
turns an `IngestError` into its answer, so this module is the whole error table:

    IngestError                       status  code  text
    ├── AuthError
    │   ├── MissingToken               401     2    Token is required
    │   └── InvalidToken               401     4    Invalid authorization
    ├── LogTypeNotAllowed              403     7    Incorrect index (the source may not post this log type)
    ├── BodyTimeout                    408     6    Request timeout (the body was not received in time)
    ├── PayloadTooLarge                413     6    Request entity too large
    │   ├── BodyTooLarge                            (raw body over max_body_bytes)
    │   ├── DecompressedTooLarge                    (decoded body over max_decompressed_bytes)
    │   └── TooManyRecords                          (more than max_records records)
    ├── UnsupportedEncoding            415     6    Unsupported Content-Encoding
    ├── InvalidData                    400     6    Invalid data format
    │   ├── DecodeError                             (corrupt or truncated gzip/zstd/deflate)
    │   ├── FramingError                            (not JSON, truncated, wrong top-level value)
    │   └── NestingTooDeep                          (JSON nested deeper than max_depth)
    └── ServerBusy                     503     9    Server is busy (+ Retry-After)
        ├── StorageUnavailable                      (the data directory cannot be written)
        └── Overloaded                              (max_concurrent_requests already in progress)

Each class carries a short machine-readable `reason`, used as the metric label.
"""

from __future__ import annotations

from typing import Any, ClassVar


class IngestError(Exception):
    """Base of every error that becomes an HTTP answer."""

    status: ClassVar[int] = 500
    hec_code: ClassVar[int] = 8
    text: ClassVar[str] = "Internal server error"
    reason: ClassVar[str] = "internal"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """The JSON answer: HEC's `text` and `code`, then what went wrong."""
        return {"text": self.text, "code": self.hec_code, "detail": self.detail, **self.extra}

    def headers(self) -> dict[str, str]:
        return {}


class AuthError(IngestError):
    status = 401
    hec_code = 4
    text = "Invalid authorization"
    reason = "invalid_token"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="tailscribe"'}


class MissingToken(AuthError):
    hec_code = 2
    text = "Token is required"
    reason = "missing_token"


class InvalidToken(AuthError):
    pass


class PayloadTooLarge(IngestError):
    status = 413
    hec_code = 6
    text = "Request entity too large"
    reason = "too_large"


class BodyTooLarge(PayloadTooLarge):
    reason = "body_too_large"


class DecompressedTooLarge(PayloadTooLarge):
    reason = "decompressed_too_large"


class TooManyRecords(PayloadTooLarge):
    reason = "too_many_records"


class UnsupportedEncoding(IngestError):
    status = 415
    hec_code = 6
    text = "Unsupported Content-Encoding"
    reason = "unsupported_encoding"


class InvalidData(IngestError):
    status = 400
    hec_code = 6
    text = "Invalid data format"
    reason = "invalid_data"


class DecodeError(InvalidData):
    reason = "decode_error"


class FramingError(InvalidData):
    """The body is not a JSON object stream; `offset` is the byte offset in the decoded body."""

    reason = "invalid_json"

    def __init__(self, detail: str, *, offset: int) -> None:
        super().__init__(f"{detail} (at byte {offset})", offset=offset)
        self.offset = offset


class NestingTooDeep(InvalidData):
    reason = "nesting_too_deep"


class LogTypeNotAllowed(IngestError):
    status = 403
    hec_code = 7
    text = "Incorrect index"
    reason = "log_type_not_allowed"


class BodyTimeout(IngestError):
    status = 408
    hec_code = 6
    text = "Request timeout"
    reason = "body_timeout"


class ServerBusy(IngestError):
    """Nothing was acknowledged; the sender should retry after `Retry-After` seconds."""

    status = 503
    hec_code = 9
    text = "Server is busy"
    reason = "busy"

    def __init__(self, detail: str, *, retry_after: int = 5) -> None:
        super().__init__(detail)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class StorageUnavailable(ServerBusy):
    reason = "storage_unavailable"


class Overloaded(ServerBusy):
    reason = "overloaded"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, retry_after=1)
