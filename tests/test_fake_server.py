"""`mountsea.testing.FakeMountsea` over real sockets, driven with httpx."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from mountsea.testing import FakeMountsea, Fault, RecordedRequest

pytest_plugins = ("pytester",)

KEY = "sk-fake-0123456789"
TLS = ssl.create_default_context()  # built once: every httpx client would otherwise load the CA bundle again


def make_client(url: str, key: str = KEY) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=5, verify=TLS)


@pytest.fixture
def server() -> Iterator[FakeMountsea]:
    with FakeMountsea(api_key=KEY) as fake:
        yield fake


@pytest.fixture
def client(server: FakeMountsea) -> Iterator[httpx.Client]:
    with make_client(server.url) as c:
        yield c


def get(client: httpx.Client, task_id: str | None = "t1", service: str = "producer", **kwargs: Any) -> httpx.Response:
    params = {} if task_id is None else {"taskId": task_id}
    return client.get(f"/{service}/tasks", params=params, **kwargs)


def statuses(client: httpx.Client, n: int, task_id: str = "t1", service: str = "producer") -> list[str]:
    return [get(client, task_id, service).json()["status"] for _ in range(n)]


# Errors of the API itself


@pytest.mark.parametrize("auth", [None, "Bearer wrong", f"Basic {KEY}", KEY])
def test_missing_or_wrong_key_is_401(server: FakeMountsea, client: httpx.Client, auth: str | None) -> None:
    server.add_task("producer", "t1")
    if auth is None:
        del client.headers["authorization"]
    else:
        client.headers["authorization"] = auth
    response = get(client)
    assert response.status_code == 401
    assert response.json() == {"statusCode": 401, "message": "Invalid API key"}
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["x-request-id"] == "req-1"
    assert server.requests[0].task_id == "t1"


@pytest.mark.parametrize("task_id", [None, ""])
def test_missing_task_id_is_400(client: httpx.Client, task_id: str | None) -> None:
    response = get(client, task_id)
    assert response.status_code == 400
    assert response.json()["statusCode"] == 400


@pytest.mark.parametrize(("service", "path"), [("producer", "/producer/tasks"), ("xai", "/nope")])
def test_unknown_task_or_path_is_404(client: httpx.Client, service: str, path: str) -> None:
    assert get(client, "missing", service).json() == {"statusCode": 404, "message": "Task not found"}
    response = client.get(path + "x", params={"taskId": "t1"})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"


def test_tasks_are_per_service(server: FakeMountsea, client: httpx.Client) -> None:
    server.add_task("xai", "t1", ["processing"])
    assert get(client, "t1", "producer").status_code == 404
    assert get(client, "t1", "xai").json()["status"] == "processing"


@pytest.mark.parametrize(
    "method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "PROPFIND", "HEAD"]
)
def test_every_other_method_is_a_json_405_and_closes(server: FakeMountsea, client: httpx.Client, method: str) -> None:
    server.add_task("producer", "t1")
    response = client.request(method, "/producer/tasks", params={"taskId": "t1"}, content=b'{"a": 1}')
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
    assert response.headers["connection"] == "close"
    assert response.headers["server"] == "FakeMountsea"
    if method != "HEAD":
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {"statusCode": 405, "message": "Method not allowed"}
    assert server.requests[0].method == method
    assert get(client).json()["status"] == "pending"  # refused requests do not advance the script


def test_bad_arguments_are_refused(server: FakeMountsea) -> None:
    for call in (
        lambda: server.add_task("music", "t1"),
        lambda: server.add_task("producer", "t1", []),
        lambda: server.add_task("producer", "t1", step_seconds=0),
        lambda: server.set_payload("other", "t1", {}),
        lambda: server.inject(Fault.drop(), times=0),
        lambda: Fault.status(99),
    ):
        with pytest.raises(ValueError):  # noqa: PT011
            call()


# Task scripts


def test_one_step_per_request_then_the_last_status_repeats(server: FakeMountsea, client: httpx.Client) -> None:
    server.add_task("producer", "t1")
    assert statuses(client, 5) == ["pending", "processing", "completed", "completed", "completed"]


def test_time_based_steps(server: FakeMountsea, client: httpx.Client) -> None:
    step, script = 0.1, ["pending", "processing", "completed"]
    added_from = time.monotonic()
    server.add_task("xai", "t1", script, step_seconds=step)
    added_by = time.monotonic()

    def check() -> str:
        """One GET, and its status must be a step that the clock allowed when it was answered."""
        sent = time.monotonic()
        status = get(client, service="xai").json()["status"]
        answered = time.monotonic()
        earliest = min(int((sent - added_by) / step), len(script) - 1)
        latest = min(int((answered - added_from) / step), len(script) - 1)
        assert status in script[earliest : latest + 1], (status, sent - added_by, answered - added_from)
        return status

    seen = [check(), check()]  # on a quiet machine both "pending": requests do not advance it
    time.sleep(0.12)
    seen.append(check())
    time.sleep(0.2)
    seen += [check(), check()]
    assert seen[-2:] == ["completed", "completed"]  # 0.32 s after it was added, whatever the load
    assert seen == sorted(seen, key=script.index)  # never backwards


def test_a_timed_script_says_it_finished_when_the_script_did_not_when_first_read(
    server: FakeMountsea, client: httpx.Client
) -> None:
    server.add_task("producer", "t1", ["processing", "completed"], step_seconds=0.1)
    time.sleep(0.3)  # read well after it finished: a client learning from it must still see 0.1 s
    done = get(client).json()
    took = datetime.fromisoformat(done["finishedAt"]) - datetime.fromisoformat(done["createdAt"])
    assert took.total_seconds() == pytest.approx(0.1, abs=0.002)


def test_completed_payload(server: FakeMountsea, client: httpx.Client) -> None:
    server.add_task("producer", "t1", ["pending", "completed"])
    pending = get(client)
    assert pending.headers["content-type"] == "application/json"
    assert pending.headers["x-request-id"] == "req-1"
    assert pending.json() == {
        "taskId": "t1",
        "status": "pending",
        "createdAt": pending.json()["createdAt"],
        "traceId": "trace-1",
    }
    done = get(client).json()
    assert done["result"] == {"url": "https://cdn.example/t1.mp3"}
    assert done["createdAt"] == pending.json()["createdAt"]
    assert done["finishedAt"] >= done["createdAt"]
    assert done["createdAt"].endswith("Z")
    assert len(done["createdAt"]) == len("2026-11-23T08:00:00.000Z")
    assert "errorMessage" not in done
    assert get(client).json()["finishedAt"] == done["finishedAt"]


@pytest.mark.parametrize("status", ["failed", "cancelled", "timeout"])
def test_unsuccessful_payload(server: FakeMountsea, client: httpx.Client, status: str) -> None:
    server.add_task("xai", "t1", ["processing", status], error_message="boom", error_code=42, result={"x": 1})
    first = get(client, service="xai").json()
    assert "errorMessage" not in first
    assert "finishedAt" not in first
    last = get(client, service="xai").json()
    assert (last["status"], last["errorMessage"], last["errorCode"]) == (status, "boom", 42)
    assert "result" not in last
    assert "finishedAt" in last


def test_custom_result_unknown_status_and_extra_fields(server: FakeMountsea, client: httpx.Client) -> None:
    server.add_task("producer", "t1", ["queued_somewhere", "completed"], result={"audio": [1]}, extra={"new": {"x": 1}})
    first = get(client).json()
    assert (first["status"], first["new"]) == ("queued_somewhere", {"x": 1})
    assert get(client).json()["result"] == {"audio": [1]}


def test_set_payload_overrides_the_script(server: FakeMountsea, client: httpx.Client) -> None:
    server.add_task("producer", "t1")
    server.set_payload("producer", "t1", b"\xff not json", status_code=202, headers={"X-Extra": "1"})
    response = get(client)
    assert (response.status_code, response.content) == (202, b"\xff not json")
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-extra"] == "1"
    server.set_payload("xai", "t2", {"taskId": "t2"})
    assert get(client, "t2", "xai").json() == {"taskId": "t2"}
    server.set_payload("xai", "t3", "<p>", content_type="text/html")
    assert get(client, "t3", "xai").headers["content-type"] == "text/html"
    assert get(client, "t3", "xai", headers={"Authorization": "Bearer no"}).status_code == 401


# Faults


def test_status_fault_with_retry_after(server: FakeMountsea, client: httpx.Client) -> None:
    server.add_task("producer", "t1")
    server.inject(Fault.status(503, retry_after=1.5))
    server.inject(Fault.status(520, retry_after="Wed, 21 Oct 2026 07:28:00 GMT", headers={"retry-after-ms": "1500"}))
    server.inject(Fault.status(429, body="slow down"))
    first = get(client)
    assert (first.status_code, first.headers["retry-after"]) == (503, "1.5")
    assert "www-authenticate" not in first.headers
    assert first.json() == {"statusCode": 503, "message": "Service Unavailable"}
    second = get(client)
    assert (second.status_code, second.headers["retry-after"]) == (520, "Wed, 21 Oct 2026 07:28:00 GMT")
    assert second.headers["retry-after-ms"] == "1500"
    assert second.json()["statusCode"] == 520
    assert get(client).text == "slow down"
    server.inject(Fault.status(401))
    server.inject(Fault.status(401, headers={"WWW-Authenticate": 'Bearer realm="x"'}))
    assert get(client).headers["www-authenticate"] == "Bearer"
    assert get(client).headers["www-authenticate"] == 'Bearer realm="x"'
    assert get(client).json()["status"] == "pending"  # the faults did not advance the script
    assert [r.fault for r in server.requests] == ["status"] * 5 + [None]


def test_delay_fault_advances_the_script(server: FakeMountsea, client: httpx.Client) -> None:
    server.add_task("producer", "t1")
    server.inject(Fault.delay(0.5))
    started = time.monotonic()
    assert get(client).json()["status"] == "pending"
    assert 0.5 <= time.monotonic() - started < 1.0  # slept once, not twice (1.0 s)
    assert get(client).json()["status"] == "processing"


def test_slow_body_fault(server: FakeMountsea, client: httpx.Client) -> None:
    server.add_task("producer", "t1")
    server.inject(Fault.slow_body(0.3))
    started = time.monotonic()
    assert get(client).json()["status"] == "pending"
    assert time.monotonic() - started >= 0.3
    server.inject(Fault.slow_body(30))
    with client.stream("GET", "/producer/tasks", params={"taskId": "t1"}, timeout=2) as response:
        assert response.status_code == 200  # the headers came at once...
        with pytest.raises(httpx.ReadTimeout):
            response.read()  # ...and the body stalls


@pytest.mark.parametrize("fault", [Fault.drop(), Fault.reset_mid_body(), Fault.length_mismatch()])
def test_broken_connections(server: FakeMountsea, client: httpx.Client, fault: Fault) -> None:
    server.add_task("producer", "t1")
    server.inject(fault)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        get(client)
    assert get(client).json()["status"] == "pending"  # a fresh connection works, the script did not move
    assert server.requests[0].fault == fault.kind


def test_html_truncated_and_redirect_faults(server: FakeMountsea, client: httpx.Client) -> None:
    server.add_task("producer", "t1")
    server.inject(Fault.html(502))
    server.inject(Fault.truncated())
    server.inject(Fault.redirect("https://elsewhere.example/"))
    server.inject(Fault.redirect("/producer/tasks?taskId=t1", code=307))
    page = get(client)
    assert (page.status_code, page.headers["content-type"]) == (502, "text/html; charset=utf-8")
    assert "<html>" in page.text
    cut = get(client)
    assert cut.status_code == 200
    assert int(cut.headers["content-length"]) == len(cut.content)
    with pytest.raises(json.JSONDecodeError):
        cut.json()
    away = get(client)
    assert (away.status_code, away.headers["location"]) == (302, "https://elsewhere.example/")
    followed = get(client, follow_redirects=True)
    assert (followed.history[0].status_code, followed.json()["status"]) == (307, "pending")


def test_faults_are_fifo_with_times_and_filters(server: FakeMountsea, client: httpx.Client) -> None:
    server.add_task("producer", "t1", ["pending"])
    server.add_task("xai", "t2", ["pending"])
    server.inject(Fault.status(500), times=2, service="xai")
    server.inject(Fault.status(502), task_id="t1")
    server.inject(Fault.status(503))
    codes = [get(client, "t1").status_code, get(client, "t1").status_code, get(client, "t2", "xai").status_code]
    assert codes == [502, 503, 500]
    assert [get(client, "t2", "xai").status_code, get(client, "t2", "xai").status_code] == [500, 200]
    assert server.request_count() == 5
    assert server.request_count("xai") == server.request_count(task_id="t2") == 3
    assert server.request_count("producer", "t2") == 0


# Bookkeeping


def test_recorded_requests_and_masked_reprs(server: FakeMountsea, client: httpx.Client) -> None:
    server.add_task("producer", "a/b c?&")
    get(client, "a/b c?&", headers={"X-Custom": "yes"})
    client.get("/other", params={"q": "1"})
    first, second = server.requests
    assert isinstance(first, RecordedRequest)
    assert (first.method, first.path, first.service, first.task_id) == ("GET", "/producer/tasks", "producer", "a/b c?&")
    assert first.query == {"taskId": "a/b c?&"}
    assert first.headers["authorization"] == f"Bearer {KEY}"
    assert first.headers["x-custom"] == "yes"
    assert (second.service, second.task_id, second.query) == (None, None, {"q": "1"})
    assert first.time <= second.time <= time.monotonic()
    assert KEY not in repr(first)
    assert "[secure]" in repr(first)
    assert "x-custom" in repr(first)
    assert KEY not in repr(server)
    assert repr(RecordedRequest).startswith("<class 'mountsea.testing.")
    server.reset()
    assert server.requests == []
    assert get(client, "a/b c?&").status_code == 404


def test_peak_in_flight_counts_concurrent_delayed_requests(server: FakeMountsea) -> None:
    server.add_task("producer", "t1", ["pending"])
    server.inject(Fault.delay(60), times=5)  # held far longer than the test: all five are in at once
    errors: list[Exception] = []

    def worker() -> None:
        try:
            with make_client(server.url) as c:
                get(c, timeout=90)
        except httpx.TransportError as exc:  # the server stops under it
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(5)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while server.request_count() < 5 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert server.peak_in_flight == 5
    server.stop()  # ends the held requests at once
    for thread in threads:
        thread.join()
    assert len(errors) == 5
    server.reset()  # the peak restarts from what is in flight: nothing, once the handlers unwind
    deadline = time.monotonic() + 30
    while server.peak_in_flight and time.monotonic() < deadline:
        time.sleep(0.01)
        server.reset()
    assert server.peak_in_flight == 0


def test_start_and_stop_are_idempotent_and_stop_is_fast() -> None:
    fake = FakeMountsea()
    with pytest.raises(RuntimeError):
        _ = fake.url
    fake.stop()
    fake.start()
    url = fake.url
    fake.start()
    assert fake.url == url
    assert fake.api_key == "test-key"
    fake.add_task("xai", "t1")
    errors: list[Exception] = []

    def slow_get() -> None:
        try:
            get(idle, service="xai")
        except httpx.TransportError as exc:
            errors.append(exc)

    with make_client(url, "test-key") as idle:
        assert get(idle, service="xai").status_code == 200  # leaves a keep-alive connection open
        fake.inject(Fault.delay(30))
        slow = threading.Thread(target=slow_get)
        slow.start()
        while fake.request_count() < 2:
            time.sleep(0.005)
        started = time.monotonic()
        fake.stop()
        fake.stop()
        assert time.monotonic() - started < 10  # not the 30 s delay
        slow.join()
        assert len(errors) == 1
        with pytest.raises(httpx.ConnectError):
            get(idle, service="xai")


def test_the_pytest_fixture(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    # Load the plugin by name only, so an installed `pytest11` entry point does not register it twice.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makeconftest('pytest_plugins = ["mountsea.testing._plugin"]')
    pytester.makepyfile(
        """
        import httpx

        def test_fixture(mountsea_server):
            mountsea_server.add_task("producer", "t1", ["completed"])
            headers = {"Authorization": f"Bearer {mountsea_server.api_key}"}
            response = httpx.get(f"{mountsea_server.url}/producer/tasks?taskId=t1", headers=headers)
            assert response.json()["status"] == "completed"
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
