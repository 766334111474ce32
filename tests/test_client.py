"""The clients over a mocked transport (pytest-httpx): request shape, error mapping, retries.

Every test runs through both front ends via the ``front`` fixture.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from typing import Any

import httpx
import pytest
from pytest_httpx import HTTPXMock

import mountsea
from tests.helpers import Front


@pytest.fixture(params=["sync", "async-httpx"])
def front(request: pytest.FixtureRequest) -> Front:
    """Both clients on httpx, which pytest-httpx mocks; the async default (httpcore) is tested over sockets."""
    return Front(request.param)


KEY = "sk-live-0123456789abcdef"
BASE = "https://api.example.test"
URL = f"{BASE}/producer/tasks?taskId=t-1"
NO_WAIT = {"retry-after": "0"}


def _task(status: str = "pending", **fields: Any) -> dict[str, Any]:
    return {"taskId": "t-1", "status": status, **fields}


def _get(front: Front, task_id: str = "t-1", service: str = "producer", **kwargs: Any) -> Any:
    return front.run(lambda c: getattr(c, service).tasks.get(task_id), api_key=KEY, base_url=BASE, **kwargs)


@pytest.mark.parametrize("service", ["producer", "xai"])
def test_get_sends_one_authorised_get_with_the_id_in_the_query(
    front: Front, httpx_mock: HTTPXMock, service: str
) -> None:
    httpx_mock.add_response(json={"taskId": "a/b c?&", "status": "processing"})
    task = _get(front, "a/b c?&", service)
    assert task == mountsea.Task(id="a/b c?&", service=service, status=mountsea.TaskStatus.PROCESSING)  # type: ignore[arg-type]
    [request] = httpx_mock.get_requests()
    assert request.method == "GET"
    assert request.url.path == f"/{service}/tasks"
    assert request.url.params["taskId"] == "a/b c?&"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["accept"] == "application/json"


def test_base_url_path_prefix_is_kept(front: Front, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url="http://gateway.test/v2/xai/tasks?taskId=t-1", json=_task())
    front.run(lambda c: c.xai.tasks.get("t-1"), api_key=KEY, base_url="http://gateway.test/v2/")


def test_key_and_base_url_come_from_the_environment(
    front: Front, httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOUNTSEA_API_KEY", "env-key")
    monkeypatch.setenv("MOUNTSEA_BASE_URL", "http://env.test")
    httpx_mock.add_response(
        url="http://env.test/xai/tasks?taskId=t-1", match_headers={"Authorization": "Bearer env-key"}, json=_task()
    )
    front.run(lambda c: c.xai.tasks.get("t-1"))


def test_the_default_base_url_is_the_public_gateway(front: Front) -> None:
    client = front.client(api_key=KEY)
    assert client.base_url == "https://api.mountsea.ai"


def test_no_key_at_all_says_how_to_set_one(front: Front) -> None:
    with pytest.raises(mountsea.MountseaError, match="MOUNTSEA_API_KEY"):
        front.client()
    with pytest.raises(mountsea.MountseaError, match="MOUNTSEA_API_KEY"):
        front.client(api_key="")


@pytest.mark.parametrize(
    ("base_url", "why"),
    [
        ("api.mountsea.ai", "absolute http:// or https://"),
        ("ftp://api.mountsea.ai", "absolute http:// or https://"),
        ("https://user:pw@api.mountsea.ai", "must not hold credentials"),
        ("https://api.mountsea.ai/?x=1", "query"),
    ],
)
def test_bad_base_urls_are_rejected_before_any_request(front: Front, base_url: str, why: str) -> None:
    with pytest.raises(mountsea.MountseaError, match=why) as caught:
        front.client(api_key=KEY, base_url=base_url)
    assert isinstance(caught.value, ValueError)
    assert "pw" not in str(caught.value)


@pytest.mark.parametrize(
    "kwargs", [{"max_retries": -1}, {"max_retries": 1.5}, {"timeout": 0}, {"timeout": float("nan")}]
)
def test_bad_client_settings_are_value_errors(front: Front, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"max_retries|timeout"):
        front.client(api_key=KEY, **kwargs)


@pytest.mark.parametrize("task_id", ["", " ", "a\tb", None, 7, "x" * 1025])
def test_bad_task_ids_fail_before_any_request(front: Front, task_id: Any) -> None:
    with pytest.raises(ValueError, match="task_id"):
        _get(front, task_id)
    with pytest.raises(ValueError, match="task_id"):
        front.run(lambda c: c.xai.tasks.wait(task_id), api_key=KEY, base_url=BASE)


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"timeout": -1}, "timeout"),
        ({"timeout": float("inf")}, "timeout"),
        ({"poll": "fast"}, "poll"),
        ({"poll": 0}, "PollPolicy"),
    ],
)
def test_bad_wait_arguments_fail_before_any_request(front: Front, kwargs: dict[str, Any], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        front.run(lambda c: c.producer.tasks.wait("t-1", **kwargs), api_key=KEY, base_url=BASE)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, mountsea.BadRequestError),
        (401, mountsea.AuthenticationError),
        (403, mountsea.PermissionDeniedError),
        (404, mountsea.NotFoundError),
        (409, mountsea.APIStatusError),
        (302, mountsea.APIStatusError),
    ],
)
def test_permanent_statuses_raise_their_class_after_one_request(
    front: Front, httpx_mock: HTTPXMock, status: int, cls: type[mountsea.APIStatusError]
) -> None:
    body = {"statusCode": status, "message": "Task not found", "traceId": "tr-404"}
    httpx_mock.add_response(status_code=status, json=body, headers={"x-request-id": "req-7"})
    with pytest.raises(cls) as caught:
        _get(front)
    error = caught.value
    assert type(error) is cls
    assert (error.status_code, error.body, error.request_id, error.trace_id) == (status, body, "req-7", "tr-404")
    assert (error.service, error.task_id) == ("producer", "t-1")
    assert str(error) == f"producer task 't-1': HTTP {status}: Task not found"
    assert len(httpx_mock.get_requests()) == 1


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (408, mountsea.APIStatusError),
        (429, mountsea.RateLimitError),
        (500, mountsea.ServerError),
        (503, mountsea.ServerError),
        (520, mountsea.ServerError),
    ],
)
@pytest.mark.parametrize("max_retries", [0, 2])
def test_transient_statuses_are_retried_max_retries_times(
    front: Front, httpx_mock: HTTPXMock, status: int, cls: type[mountsea.APIStatusError], max_retries: int
) -> None:
    httpx_mock.add_response(status_code=status, text="<html>bad gateway</html>", headers=NO_WAIT, is_reusable=True)
    with pytest.raises(cls) as caught:
        _get(front, max_retries=max_retries)
    assert caught.value.status_code == status
    assert caught.value.body == "<html>bad gateway</html>"
    assert caught.value.retry_after == 0.0
    assert len(httpx_mock.get_requests()) == max_retries + 1


@pytest.mark.parametrize("failures", [1, 2])
def test_get_succeeds_after_transient_failures(front: Front, httpx_mock: HTTPXMock, failures: int) -> None:
    for _ in range(failures):
        httpx_mock.add_response(status_code=503, headers=NO_WAIT)
    httpx_mock.add_response(json=_task("completed", result={"u": 1}))
    assert _get(front).result == {"u": 1}
    assert len(httpx_mock.get_requests()) == failures + 1


@pytest.mark.parametrize(
    ("exception", "cls"),
    [
        (httpx.ConnectError("refused"), mountsea.APIConnectionError),
        (httpx.RemoteProtocolError("peer closed connection"), mountsea.APIConnectionError),
        (httpx.ReadTimeout("timed out"), mountsea.APITimeoutError),
        (httpx.ConnectTimeout("timed out"), mountsea.APITimeoutError),
    ],
)
def test_transport_failures_become_connection_errors_after_retries(
    front: Front, httpx_mock: HTTPXMock, exception: Exception, cls: type[mountsea.APIError]
) -> None:
    httpx_mock.add_exception(exception, is_reusable=True)
    with pytest.raises(cls) as caught:
        _get(front, max_retries=1)
    assert type(caught.value) is cls
    assert isinstance(caught.value.__cause__, httpx.HTTPError)
    assert len(httpx_mock.get_requests()) == 2


def test_redirect_loops_are_not_retried(front: Front, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_exception(httpx.TooManyRedirects("Exceeded maximum allowed redirects."))
    with pytest.raises(mountsea.APIError, match="redirects"):
        _get(front)


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"<!doctype html><h1>502</h1>", "not JSON: <!doctype html>"),
        (b"", r"not JSON: \(empty body\)"),
        (b'{"taskId": "t-1", "status": "pend', "not JSON"),
        (b'{"taskId": "t-1", "status": "\xff\xfe"}', "not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
        (b'{"taskId": "t-1"}', "'status' must be a string"),
        (b'{"taskId": "t-1", "status": "done", "createdAt": "never"}', "ValueError"),
        (b'{"taskId": "t-1", "status": "done", "errorCode": 1e999}', "not JSON"),
        (b'{"taskId": "t-1", "status": "done", "errorCode": NaN}', "not JSON"),
    ],
    ids=["html", "empty", "truncated", "bad-utf8", "deep", "no-status", "bad-date", "infinite", "nan"],
)
def test_unusable_success_answers_raise_response_validation_error(
    front: Front, httpx_mock: HTTPXMock, content: bytes, why: str
) -> None:
    httpx_mock.add_response(content=content)
    with pytest.raises(mountsea.ResponseValidationError, match=why):
        _get(front)
    assert len(httpx_mock.get_requests()) == 1


def test_wait_polls_until_done_and_reports_each_change(front: Front, httpx_mock: HTTPXMock) -> None:
    for status in ["pending", "pending", "processing", "processing"]:
        httpx_mock.add_response(json=_task(status))
    httpx_mock.add_response(json=_task("completed", result={"url": "u"}))
    seen: list[str] = []
    task = front.run(
        lambda c: c.producer.tasks.wait("t-1", poll=0.001, on_update=lambda t: seen.append(t.raw_status)),
        api_key=KEY,
        base_url=BASE,
    )
    assert task.succeeded
    assert task.result == {"url": "u"}
    assert seen == ["pending", "processing", "completed"]
    assert len(httpx_mock.get_requests()) == 5


@pytest.mark.parametrize("status", ["failed", "cancelled", "timeout"])
def test_wait_raises_task_failed_error_or_returns_the_task(front: Front, httpx_mock: HTTPXMock, status: str) -> None:
    httpx_mock.add_response(json=_task(status, errorMessage="model overloaded"), is_reusable=True)
    with pytest.raises(mountsea.TaskFailedError, match="model overloaded") as caught:
        front.run(lambda c: c.producer.tasks.wait("t-1"), api_key=KEY, base_url=BASE)
    assert caught.value.task.raw_status == status
    task = front.run(lambda c: c.producer.tasks.wait("t-1", raise_on_failure=False), api_key=KEY, base_url=BASE)
    assert task.status == status
    assert not task.succeeded


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_wait_ends_at_once_on_permanent_errors(front: Front, httpx_mock: HTTPXMock, status: int) -> None:
    httpx_mock.add_response(json=_task("processing"))
    httpx_mock.add_response(status_code=status, json={"message": "no"})
    with pytest.raises(mountsea.APIStatusError) as caught:
        front.run(lambda c: c.producer.tasks.wait("t-1", poll=0.001), api_key=KEY, base_url=BASE)
    assert caught.value.status_code == status
    assert len(httpx_mock.get_requests()) == 2


def test_wait_retries_transient_failures_beyond_max_retries(front: Front, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_exception(httpx.ReadError("reset"))  # first failure: ~0.5 s of backoff
    for _ in range(4):
        httpx_mock.add_response(status_code=502, headers=NO_WAIT)
    httpx_mock.add_response(status_code=429, headers={"retry-after-ms": "1"})
    httpx_mock.add_response(json=_task("completed"))
    task = front.run(lambda c: c.xai.tasks.wait("t-1", poll=0.001), api_key=KEY, base_url=f"{BASE}", max_retries=0)
    assert task.succeeded
    assert len(httpx_mock.get_requests()) == 7


def test_unknown_status_keeps_waiting_and_warns_once(
    front: Front, httpx_mock: HTTPXMock, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(3):
        httpx_mock.add_response(json=_task("queued"))
    httpx_mock.add_response(json=_task("completed"))
    with caplog.at_level(logging.WARNING, logger="mountsea"):
        task = front.run(lambda c: c.producer.tasks.wait("t-1", poll=0.001), api_key=KEY, base_url=BASE)
    assert task.succeeded
    assert [r.getMessage() for r in caplog.records].count(
        "producer task 't-1' has status 'queued', unknown to this version of mountsea; treating it as not done"
    ) == 1


def test_a_passed_in_http_client_is_used_and_left_open(front: Front, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(json=_task())
    http: httpx.Client | httpx.AsyncClient = httpx.Client() if front.kind == "sync" else httpx.AsyncClient()
    front.run(lambda c: c.producer.tasks.get("t-1"), api_key=KEY, base_url=BASE, http_client=http)
    assert not http.is_closed
    [request] = httpx_mock.get_requests()
    assert request.headers["authorization"] == f"Bearer {KEY}"
    if isinstance(http, httpx.Client):
        http.close()


def test_the_key_never_shows(front: Front, httpx_mock: HTTPXMock, caplog: pytest.LogCaptureFixture) -> None:
    httpx_mock.add_response(status_code=401, json={"message": "bad key"}, headers={"x-request-id": "r"})
    httpx_mock.add_exception(httpx.ConnectError("refused"), is_reusable=True)
    client = front.client(api_key=KEY, base_url=BASE)
    texts = [repr(client), str(client), repr(client.producer), repr(client.producer.tasks), repr(vars(client))]
    with caplog.at_level(logging.DEBUG, logger="mountsea"):
        for call in (lambda c: c.producer.tasks.get("t-1"), lambda c: c.xai.tasks.get("t-1")):
            with pytest.raises(mountsea.APIError) as caught:
                front.run(call, api_key=KEY, base_url=BASE, max_retries=0)
            texts += [str(caught.value), repr(caught.value), repr(vars(caught.value))]
    texts += [record.getMessage() for record in caplog.records]
    assert caplog.records, "debug logging should have recorded the requests"
    assert not [text for text in texts if KEY in text]


def test_a_server_echoing_the_key_does_not_put_it_in_errors(front: Front, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(status_code=400, text=f"proxy says: Authorization: Bearer {KEY}")
    httpx_mock.add_response(content=f"<h1>Bearer {KEY}</h1>".encode())
    httpx_mock.add_response(json={"taskId": 7, "status": "pending", "echo": KEY})
    with pytest.raises(mountsea.BadRequestError) as caught:
        _get(front)
    assert caught.value.body == "proxy says: Authorization: Bearer [secure]"
    errors: list[BaseException] = [caught.value]
    for _ in range(2):
        with pytest.raises(mountsea.ResponseValidationError) as invalid:
            _get(front)
        errors.append(invalid.value)
    for error in errors:
        assert KEY not in str(error)
        assert KEY not in repr(vars(error))


def test_a_short_key_does_not_garble_answers(front: Front, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(json=_task("completed", result={"k": "kk"}))
    task = front.run(lambda c: c.producer.tasks.get("t-1"), api_key="k", base_url=BASE)
    assert task.result == {"k": "kk"}


@pytest.mark.parametrize("api_key", [123, b"sk-bytes", ["k"]])
def test_a_key_that_is_not_a_str_is_a_configuration_error(front: Front, api_key: object) -> None:
    with pytest.raises(mountsea.ConfigurationError, match="api_key must be a str"):
        front.client(api_key=api_key)


def test_an_http_client_of_the_wrong_kind_is_rejected(front: Front) -> None:
    wrong = httpx.AsyncClient() if front.kind == "sync" else httpx.Client()
    with pytest.raises(mountsea.ConfigurationError, match="http_client must be an httpx"):
        front.client(api_key=KEY, http_client=wrong)
    if isinstance(wrong, httpx.Client):
        wrong.close()


def test_debug_logging_copes_with_an_answer_made_already_read(front: Front, caplog: pytest.LogCaptureFixture) -> None:
    # What an httpx.MockTransport handler usually returns: httpx never times such an answer.
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=_task("completed"))

    transport = httpx.MockTransport(handler)
    http_client = httpx.Client(transport=transport) if front.kind == "sync" else httpx.AsyncClient(transport=transport)
    with caplog.at_level(logging.DEBUG, logger="mountsea"):
        task = front.run(lambda c: c.producer.tasks.get("t-1"), api_key=KEY, base_url=BASE, http_client=http_client)
    assert task.raw_status == "completed"
    assert any("-> 200 in ? ms" in record.getMessage() for record in caplog.records)


def test_the_public_api_is_what_mountsea_exports() -> None:
    for name in mountsea.__all__:
        value = getattr(mountsea, name)
        assert name in dir(mountsea)
        if isinstance(value, type):
            assert value.__module__ == "mountsea", name  # reprs say mountsea.Task, not mountsea._task.Task


def test_import_mountsea_leaves_asyncio_until_async_mountsea_is_used() -> None:
    code = (
        "import sys, mountsea; before = 'asyncio' in sys.modules; "
        "from mountsea import AsyncMountsea; print(before, 'asyncio' in sys.modules, AsyncMountsea.__module__)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.split() == ["False", "True", "mountsea"]


def test_a_client_given_up_on_in_one_loop_serves_the_next() -> None:
    """A request cut short as its loop ends must not break the client for the next ``asyncio.run``."""
    import asyncio
    import time

    from mountsea.testing import FakeMountsea, Fault

    with FakeMountsea(api_key="sk-loop") as server:
        server.add_task("producer", "slow", ["completed"])
        server.add_task("producer", "next", ["completed"])
        server.inject(Fault.delay(0.6), task_id="slow")
        client = mountsea.AsyncMountsea(api_key="sk-loop", base_url=server.url)

        async def give_up() -> None:
            with pytest.raises(mountsea.WaitTimeoutError):
                await client.producer.tasks.wait("slow", timeout=0.2)

        asyncio.run(give_up())  # the loop closes while the slow answer is still coming

        async def then_read() -> mountsea.Task:
            async with client:
                return await asyncio.wait_for(client.producer.tasks.get("next"), 5)

        time.sleep(0.6)  # the slow answer arrives; its loop is gone
        assert asyncio.run(then_read()).status is mountsea.TaskStatus.COMPLETED
