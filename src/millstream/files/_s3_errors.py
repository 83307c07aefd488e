"""Translating what s3fs and botocore raise into millstream errors, by what a caller can do.

s3fs turns S3's error responses into builtin exceptions (``FileNotFoundError``,
``PermissionError``, ``OSError``) whose ``__cause__`` is botocore's ``ClientError`` holding
S3's error code and HTTP status; connection failures arrive as botocore or aiohttp errors.
This module reads the code first and the exception type second:

=========================================  ===========================  ==========
what S3 said                               millstream error             retriable
=========================================  ===========================  ==========
NoSuchBucket                               ``NotFoundError`` (bucket)   no
NoSuchKey, 404                             ``NotFoundError`` (object)   no
AccessDenied, InvalidAccessKeyId,          ``ConfigError`` (credentials) no
SignatureDoesNotMatch, 403, no credentials
SlowDown, 5xx, RequestTimeout, no answer   ``UnavailableError``         yes
any other 4xx                              ``InvalidRequestError``      no
anything else                              ``MillstreamError``          no
=========================================  ===========================  ==========
"""

from __future__ import annotations

from typing import Any

from millstream.errors import (
    ConfigError,
    InvalidRequestError,
    MillstreamError,
    NotFoundError,
    UnavailableError,
)

__all__ = ["MissingObjectError", "translate"]


class MissingObjectError(NotFoundError):
    """Raised when the object (not the bucket) is missing: the store's ``_head`` answers
    None for it; callers outside this package see a ``NotFoundError``."""

_BUCKET_MISSING = {"NoSuchBucket"}
_KEY_MISSING = {"NoSuchKey", "NoSuchUpload", "NoSuchVersion", "404", "NotFound"}
_DENIED = {"AccessDenied", "AccountProblem", "AllAccessDisabled", "InvalidAccessKeyId",
           "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "InvalidSecurity",
           "NotSignedUp", "RequestTimeTooSkewed", "AuthorizationHeaderMalformed", "403"}
_BUSY = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout",
         "OperationAborted", "Throttling", "ThrottlingException", "RequestLimitExceeded"}
#: botocore's errors for a request that never got an answer (by class name: botocore is
#: imported only with the s3 extra)
_NO_ANSWER = {"EndpointConnectionError", "ConnectionClosedError", "ConnectTimeoutError",
              "ReadTimeoutError", "HTTPClientError", "ProxyConnectionError", "ConnectionError",
              "ClientConnectorError", "ServerDisconnectedError", "ClientOSError",
              "ClientPayloadError", "IncompleteRead", "ResponseParserError", "FSTimeoutError"}
_NO_CREDENTIALS = {"NoCredentialsError", "PartialCredentialsError"}


def _response(exc: BaseException) -> dict[str, Any] | None:
    """The S3 error response in ``exc`` or what caused it (botocore's ``ClientError``)."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        response = getattr(seen, "response", None)
        if isinstance(response, dict) and "Error" in response:
            return response
        seen = seen.__cause__ or seen.__context__
    return None


def _classes(exc: BaseException) -> set[str]:
    names: set[str] = set()
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            break
        names.update(c.__name__ for c in type(seen).__mro__)
        seen = seen.__cause__ or seen.__context__
    return names


def translate(exc: BaseException, bucket: str, url: str, doing: str,
              endpoint: str | None = None) -> MillstreamError:
    """The millstream error for ``exc``, raised by s3fs while ``doing`` something in
    ``bucket`` (the store at ``url``); the message says what to do."""
    response = _response(exc)
    code = ""
    status = 0
    if response is not None:
        code = str(response.get("Error", {}).get("Code") or "")
        status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    where = f" at {endpoint}" if endpoint else ""
    said = f"{code or type(exc).__name__}: {exc}"
    if code in _BUCKET_MISSING:
        return NotFoundError(
            f"bucket {bucket!r} does not exist{where}: create it (aws s3 mb s3://{bucket}"
            + (f" --endpoint-url {endpoint}" if endpoint else "")
            + ") or point MILLSTREAM_FILES at an existing bucket")
    if code in _KEY_MISSING or (not code and isinstance(exc, FileNotFoundError)):
        return MissingObjectError(f"{url}: not found while {doing} ({said})")
    if code in _DENIED or status == 403 or isinstance(exc, PermissionError):
        return ConfigError(
            f"{url}: S3{where} refused the credentials while {doing} ({said}); check the key "
            "and secret (the key/secret options, or AWS_ACCESS_KEY_ID / "
            "AWS_SECRET_ACCESS_KEY) and that they may use the bucket")
    classes = _classes(exc)
    if classes & _NO_CREDENTIALS:
        return ConfigError(
            f"{url}: no S3 credentials were found while {doing}; give the key and secret "
            "options, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    if not code and classes & _NO_ANSWER:
        said = type(exc).__name__  # its text repeats the whole request URL
    if code in _BUSY or status >= 500 or status == 429 or isinstance(exc, TimeoutError) \
            or (not code and classes & _NO_ANSWER):
        return UnavailableError(
            f"{url}: S3{where} did not serve the request while {doing} ({said}); try again, "
            "and check that the endpoint is up and reachable")
    if code or 400 <= status < 500:
        return InvalidRequestError(f"{url}: S3 refused the request while {doing} ({said})")
    if isinstance(exc, ConnectionError):
        return UnavailableError(
            f"{url}: S3{where} could not be reached while {doing} ({said}); check that the "
            "endpoint is up and reachable")
    # not known to pass: retrying it blindly could go on forever
    return MillstreamError(f"{url}: S3 request failed while {doing} ({said})")
