"""Retry decisions, Retry-After parsing and backoff: pure functions, table-driven."""

from __future__ import annotations

import email.utils
import random

import httpx
import pytest

import mountsea
from mountsea._errors import status_error
from mountsea._retry import MAX_RETRY_AFTER, is_retryable, parse_retry_after, retry_delay

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"retry-after": "2"}, 2.0),
        ({"Retry-After": "0"}, 0.0),
        ({"retry-after": " 1.5 "}, 1.5),
        ({"retry-after": "120"}, 120.0),
        ({"retry-after": "-10"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "inf"}, None),
        ({"retry-after": "1" * 35}, 1e34 + 1.111111111111111e33),
        ({"retry-after": "soon"}, None),
        ({"retry-after": ""}, None),
        ({"retry-after": email.utils.formatdate(NOW + 30, usegmt=True)}, 30.0),
        ({"retry-after": email.utils.formatdate(NOW - 30, usegmt=True)}, 0.0),
        ({"retry-after": "Fri, 31 Dec 99999 23:59:59 GMT"}, None),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after-ms": "junk", "retry-after": "9"}, 9.0),
        ({"retry-after-ms": "-1", "retry-after": "9"}, 9.0),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    result = parse_retry_after(httpx.Headers(headers), NOW)
    assert result == (pytest.approx(expected) if expected is not None else None)


def test_retry_delay_caps_retry_after_and_backoff() -> None:
    rng = random.Random(0)
    assert retry_delay(1, 2.0, rng) == 2.0
    assert retry_delay(1, 1e30, rng) == MAX_RETRY_AFTER
    assert 0.375 <= retry_delay(1, None, rng) <= 0.5
    assert 6.0 <= retry_delay(10**6, None, rng) <= 8.0


@pytest.mark.parametrize(
    ("status", "cls", "retryable"),
    [
        (300, mountsea.APIStatusError, False),
        (400, mountsea.BadRequestError, False),
        (401, mountsea.AuthenticationError, False),
        (403, mountsea.PermissionDeniedError, False),
        (404, mountsea.NotFoundError, False),
        (408, mountsea.APIStatusError, True),
        (409, mountsea.APIStatusError, False),
        (418, mountsea.APIStatusError, False),
        (429, mountsea.RateLimitError, True),
        (500, mountsea.ServerError, True),
        (503, mountsea.ServerError, True),
        (520, mountsea.ServerError, True),
        (599, mountsea.ServerError, True),
        (600, mountsea.APIStatusError, False),
    ],
)
def test_status_classes_and_retryability(status: int, cls: type[mountsea.APIStatusError], retryable: bool) -> None:
    assert status_error(status) is cls
    assert is_retryable(cls("x", status_code=status)) is retryable


def test_error_tree() -> None:
    assert issubclass(mountsea.APITimeoutError, mountsea.APIConnectionError)
    assert issubclass(mountsea.APIConnectionError, mountsea.APIError)
    assert issubclass(mountsea.ResponseValidationError, mountsea.APIError)
    assert issubclass(mountsea.ServerError, mountsea.APIStatusError)
    assert issubclass(mountsea.APIError, mountsea.MountseaError)
    assert issubclass(mountsea.TaskFailedError, mountsea.MountseaError)
    assert issubclass(mountsea.WaitTimeoutError, mountsea.MountseaError)
    assert issubclass(mountsea.WaitTimeoutError, TimeoutError)
    assert is_retryable(mountsea.APITimeoutError("t"))
    assert not is_retryable(mountsea.ResponseValidationError("bad"))
