"""The generated clients: documented payloads parse, requests have the right shape."""

from __future__ import annotations

import datetime
import importlib
from types import ModuleType
from typing import Any

import httpx
import pytest
from pytest_httpx import HTTPXMock

SERVICES = ("producer", "xai")
BASE = "https://api.mountsea.ai"

# The payloads the docs describe: one task per documented status, with the fields the
# status table says to read (`result` once completed, `errorMessage` once failed).
DOCUMENTED = [
    {"taskId": "t-pending", "status": "pending", "createdAt": "2026-11-23T08:00:00.000Z", "traceId": "tr-1"},
    {"taskId": "t-ready", "status": "ready"},
    {"taskId": "t-assigned", "status": "assigned"},
    {"taskId": "t-processing", "status": "processing", "result": None},
    {
        "taskId": "t-completed",
        "status": "completed",
        "result": {"audios": [{"url": "https://cdn.example/a.mp3", "duration": 92.5}]},
        "createdAt": "2026-11-23T08:00:00.000Z",
        "finishedAt": "2026-11-23T08:01:30.250Z",
        "traceId": "tr-2",
    },
    {"taskId": "t-failed", "status": "failed", "errorMessage": "content policy", "errorCode": 4001},
    {"taskId": "t-cancelled", "status": "cancelled"},
    {"taskId": "t-timeout", "status": "timeout", "errorMessage": "worker timed out", "errorCode": 504},
]


def _package(service: str, module: str = "") -> ModuleType:
    return importlib.import_module(f"mountsea_{service}_api{module}")


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("payload", DOCUMENTED, ids=[p["status"] for p in DOCUMENTED])
def test_documented_payloads_parse_into_the_generated_model(service: str, payload: dict[str, Any]) -> None:
    models = _package(service, ".models")
    task = models.TaskResultDto.from_dict(payload)
    assert task.task_id == payload["taskId"]
    assert task.status == models.TaskResultDtoStatus(payload["status"])
    assert models.TaskResultDto.from_dict(task.to_dict()) == task  # a lossless round trip
    dates = {"createdAt", "finishedAt"}
    assert {k: v for k, v in task.to_dict().items() if k not in dates} == {
        k: v for k, v in payload.items() if k not in dates
    }
    if "finishedAt" in payload:
        assert task.finished_at == datetime.datetime(2026, 11, 23, 8, 1, 30, 250000, tzinfo=datetime.UTC)
    if payload.get("result"):
        assert task.result.to_dict() == payload["result"]


@pytest.mark.parametrize("service", SERVICES)
def test_documented_statuses_are_the_enum(service: str) -> None:
    enum = _package(service, ".models").TaskResultDtoStatus
    assert sorted(member.value for member in enum) == sorted(p["status"] for p in DOCUMENTED)


@pytest.mark.parametrize("service", SERVICES)
def test_sync_client_calls_the_documented_url_with_the_bearer_header(service: str, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        method="GET",
        url=f"{BASE}/{service}/tasks?taskId=abc%2F1",
        match_headers={"Authorization": "Bearer sk-test"},
        json=DOCUMENTED[4],
    )
    client = _package(service).AuthenticatedClient(base_url=BASE, token="sk-test")
    endpoint = _package(service, ".api.tasks.get_task_result")
    with client:
        response = endpoint.sync_detailed(client=client, task_id="abc/1")
    assert response.status_code == 200
    assert response.parsed.task_id == "t-completed"


@pytest.mark.anyio
@pytest.mark.parametrize("service", SERVICES)
async def test_async_client_calls_the_documented_url_with_the_bearer_header(
    service: str, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(
        url=f"{BASE}/{service}/tasks?taskId=t-pending",
        match_headers={"Authorization": "Bearer sk-test"},
        json=DOCUMENTED[0],
    )
    client = _package(service).AuthenticatedClient(base_url=BASE, token="sk-test")
    endpoint = _package(service, ".api.tasks.get_task_result")
    async with client:
        parsed = await endpoint.asyncio(client=client, task_id="t-pending")
    assert parsed.status.value == "pending"
    [request] = httpx_mock.get_requests()
    assert request.method == "GET"
    assert request.url.path == f"/{service}/tasks"
    assert isinstance(request, httpx.Request)
