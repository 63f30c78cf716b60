"""The S3 client behind :class:`~pipetrail.store.s3.S3Store`: settings, and one-line failures.

Owns :func:`make_client` (an obstore ``S3Store`` from explicit settings or the usual
``AWS_*`` variables, with short connection timeouts so that an unreachable endpoint fails
in seconds rather than minutes) and :func:`store_failure` (a client error turned into a
one-line :class:`~pipetrail.errors.StoreError` that names the endpoint and the bucket and
says what to fix). Secrets never appear in a message: only the endpoint, the bucket and
the cause do.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from pipetrail.errors import StoreError

__all__ = ["make_client", "store_failure"]

# Connection refused or a name that does not resolve fails fast; a blackholed address
# waits CONNECT_TIMEOUT per attempt. Server errors are retried within RETRY_TIMEOUT.
_CONNECT_TIMEOUT = "5s"
_RETRY: Any = {"max_retries": 4, "retry_timeout": timedelta(seconds=30)}


def make_client(
    bucket: str,
    *,
    endpoint: str | None,
    region: str | None,
    access_key_id: str | None,
    secret_access_key: str | None,
) -> Any:
    """Return an obstore S3 client for ``bucket``.

    Arguments left as None come from ``AWS_ENDPOINT_URL``, ``AWS_REGION`` (or
    ``AWS_DEFAULT_REGION``, else ``us-east-1``), ``AWS_ACCESS_KEY_ID`` and
    ``AWS_SECRET_ACCESS_KEY``; without a key the client uses the usual AWS credential
    chain (instance profile, ``AWS_PROFILE`` ...).
    """
    from obstore.store import S3Store as Client

    settings: dict[str, Any] = {
        "region": region
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or "us-east-1",
    }
    if endpoint:
        settings["endpoint"] = endpoint
        settings["allow_http"] = endpoint.startswith("http://")
        settings["virtual_hosted_style_request"] = False
    key_id = access_key_id or os.environ.get("AWS_ACCESS_KEY_ID")
    if key_id:
        settings["access_key_id"] = key_id
        settings["secret_access_key"] = secret_access_key or os.environ.get(
            "AWS_SECRET_ACCESS_KEY", ""
        )
        token = os.environ.get("AWS_SESSION_TOKEN")
        if token and not access_key_id:
            settings["token"] = token
    return Client(
        bucket,
        client_options={"connect_timeout": _CONNECT_TIMEOUT},
        retry_config=_RETRY,
        **settings,
    )


def _cause(exc: BaseException) -> tuple[str, str]:
    """Classify a client error: (what went wrong, how to fix it)."""
    from obstore.exceptions import PermissionDeniedError, UnauthenticatedError

    text = str(exc)
    if "NoSuchBucket" in text or "bucket does not exist" in text.lower():
        return "the bucket does not exist", "create it, or fix the bucket in the store URL"
    if (
        isinstance(exc, PermissionDeniedError | UnauthenticatedError)
        or "SignatureDoesNotMatch" in text
        or "InvalidAccessKeyId" in text
        or "AccessDenied" in text
        or "403 Forbidden" in text
    ):
        return (
            "access denied (wrong or missing credentials)",
            "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or [store.s3] in pipetrail.toml)",
        )
    if "error sending request" in text or "connect" in text.lower() or "dns" in text.lower():
        return (
            "the endpoint cannot be reached",
            "check AWS_ENDPOINT_URL (or endpoint in [store.s3]) and that the server is running",
        )
    first = text.splitlines()[0] if text else type(exc).__name__
    # The client's text may quote whole URLs and request timings: keep the start only.
    return first[:200], "check the endpoint, the credentials and that the bucket exists"


def store_failure(bucket: str, endpoint: str | None, action: str, exc: BaseException) -> StoreError:
    """Return a one-line error for a failed client call on ``bucket``.

    Args:
        bucket: the bucket.
        endpoint: the server's URL (None: the default AWS endpoint).
        action: what the store was doing ("write an object").
        exc: the client's error.
    """
    what, fix = _cause(exc)
    where = endpoint or "the default AWS endpoint"
    return StoreError(f"S3 store s3://{bucket} at {where}: cannot {action}: {what}; {fix}")
