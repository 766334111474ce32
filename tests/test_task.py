"""Task: merging both generated TaskResultDto models into one frozen type."""

from __future__ import annotations

import datetime
from typing import Any

import attrs
import pytest

import mountsea
from mountsea._task import SERVICES, parse_task, validate_task_id

SERVICE_NAMES = sorted(SERVICES)

COMPLETED = {
    "taskId": "t-1",
    "status": "completed",
    "result": {"audios": [{"url": "https://cdn.example/a.mp3"}]},
    "errorMessage": None,
    "createdAt": "2026-11-23T08:00:00.000Z",
    "finishedAt": "2026-11-23T09:01:30+01:00",
    "traceId": "tr-9",
}


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_a_documented_answer_becomes_a_task(service: str) -> None:
    task = parse_task(SERVICES[service], COMPLETED)
    assert task == mountsea.Task(
        id="t-1",
        service=service,  # type: ignore[arg-type]
        status=mountsea.TaskStatus.COMPLETED,
        raw_status="completed",
        result={"audios": [{"url": "https://cdn.example/a.mp3"}]},
        created_at=datetime.datetime(2026, 11, 23, 8, tzinfo=datetime.UTC),
        finished_at=datetime.datetime(2026, 11, 23, 8, 1, 30, tzinfo=datetime.UTC),
        trace_id="tr-9",
    )
    assert task.done
    assert task.succeeded
    assert task.ref == mountsea.TaskRef(service, "t-1")  # type: ignore[arg-type]
    assert task.extra == {}


def test_failed_tasks_carry_their_error() -> None:
    task = parse_task(SERVICES["xai"], {"taskId": "t", "status": "failed", "errorMessage": "nsfw", "errorCode": 4001})
    assert (task.done, task.succeeded, task.error_message, task.error_code) == (True, False, "nsfw", 4001)


def test_documented_optional_fields_sent_as_null_read_as_absent() -> None:
    payload = {"taskId": "t", "status": "pending", "result": None, "errorMessage": None, "errorCode": None}
    payload |= {"createdAt": None, "finishedAt": None, "traceId": None, "other": None}
    task = parse_task(SERVICES["xai"], payload)
    assert (task.result, task.error_message, task.created_at, task.finished_at, task.trace_id) == (None,) * 5
    assert task.extra == {"other": None}  # an unknown field keeps its null


def test_to_dict_writes_the_api_names_and_timestamps_as_the_api_does() -> None:
    task = parse_task(SERVICES["producer"], {**COMPLETED, "progress": 1})
    assert task.to_dict() == {
        "service": "producer",
        "taskId": "t-1",
        "status": "completed",
        "result": {"audios": [{"url": "https://cdn.example/a.mp3"}]},
        "createdAt": "2026-11-23T08:00:00.000Z",
        "finishedAt": "2026-11-23T08:01:30.000Z",
        "traceId": "tr-9",
        "progress": 1,
    }


def test_naive_timestamps_are_read_as_utc() -> None:
    task = parse_task(SERVICES["producer"], {"taskId": "t", "status": "pending", "createdAt": "2026-11-23T08:00:00"})
    assert task.created_at == datetime.datetime(2026, 11, 23, 8, tzinfo=datetime.UTC)


def test_fields_the_spec_does_not_name_land_in_extra_read_only() -> None:
    task = parse_task(SERVICES["producer"], {"taskId": "t", "status": "processing", "progress": 0.4, "meta": {"a": 1}})
    assert task.extra == {"progress": 0.4, "meta": {"a": 1}}
    with pytest.raises(TypeError):
        task.extra["progress"] = 1  # type: ignore[index]
    assert "progress" not in repr(task)


def test_an_unknown_status_is_kept_raw_and_not_done() -> None:
    task = parse_task(SERVICES["xai"], {"taskId": "t", "status": "queued", "createdAt": "2026-11-23T08:00:00Z"})
    assert task.status is mountsea.TaskStatus.UNKNOWN
    assert task.raw_status == "queued"
    assert not task.done
    assert task.created_at is not None


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        ([], "expected a JSON object, got list"),
        ("pending", "expected a JSON object, got str"),
        (None, "expected a JSON object, got NoneType"),
        ({"taskId": "t"}, "'status' must be a string"),
        ({"taskId": "t", "status": None}, "'status' must be a string"),
        ({"taskId": "t", "status": 3}, "'status' must be a string"),
        ({"status": "pending"}, "KeyError"),
        ({"taskId": None, "status": "pending"}, "field 'task_id' has the wrong type"),
        ({"taskId": 17, "status": "pending"}, "field 'task_id' has the wrong type"),
        ({"taskId": "t", "status": "pending", "createdAt": "yesterday"}, "ValueError"),
        ({"taskId": "t", "status": "pending", "createdAt": 1700000000}, "TypeError"),
        ({"taskId": "t", "status": "pending", "errorCode": "E1"}, "field 'error_code' has the wrong type"),
        ({"taskId": "t", "status": "pending", "errorCode": True}, "field 'error_code' has the wrong type"),
        ({"taskId": "t", "status": "pending", "errorMessage": ["a"]}, "field 'error_message' has the wrong type"),
        ({"taskId": "t", "status": "completed", "result": [1, 2]}, "field 'result' has the wrong type"),
        ({"taskId": "t", "status": "completed", "result": "ok"}, "field 'result' has the wrong type"),
        ({"taskId": "t", "status": "pending", "createdAt": "9999-12-31T23:59:59-12:00"}, "out of range"),
        ({"taskId": "t", "status": "pending", "finishedAt": "0001-01-01T00:00:00+01:00"}, "out of range"),
        ({"taskId": "t", "status": "pending", "errorCode": float("inf")}, "field 'error_code' has the wrong type"),
    ],
)
@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_invalid_answers_raise_response_validation_error(service: str, payload: Any, why: str) -> None:
    with pytest.raises(mountsea.ResponseValidationError, match=why) as caught:
        parse_task(SERVICES[service], payload, task_id="t")
    assert caught.value.body == payload
    assert caught.value.service == service
    assert str(caught.value).startswith(f"{service} task 't': invalid TaskResultDto: ")


def test_task_is_frozen_hashable_and_compact_in_repr() -> None:
    task = parse_task(SERVICES["producer"], {**COMPLETED, "result": {"lyrics": "la " * 500}, "x": 1})
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        task.status = mountsea.TaskStatus.FAILED  # type: ignore[misc]
    assert hash(task) == hash(parse_task(SERVICES["producer"], {**COMPLETED, "result": {"lyrics": "la " * 500}}))
    assert len(repr(task)) < 400
    assert repr(task).startswith("Task(id='t-1', service='producer', status=<TaskStatus.COMPLETED: 'completed'>")


def test_raw_status_defaults_to_the_status() -> None:
    task = mountsea.Task(id="t", service="xai", status="failed")  # type: ignore[arg-type]
    assert task.status is mountsea.TaskStatus.FAILED
    assert task.raw_status == "failed"


def test_terminal_statuses() -> None:
    assert {s.value for s in mountsea.TERMINAL_STATUSES} == {"completed", "failed", "cancelled", "timeout"}
    assert len(mountsea.TaskStatus) == 9


@pytest.mark.parametrize(
    ("task_id", "why"),
    [
        (None, "must be a str, not NoneType"),
        (42, "must be a str, not int"),
        (b"t-1", "must be a str, not bytes"),
        ("", "empty or blank"),
        ("   ", "empty or blank"),
        ("a\nb", "control characters"),
        ("a\x00b", "control characters"),
        ("a\x7fb", "control characters"),
        ("a\x85b", "control characters"),
        ("x" * 1025, "1025 characters long; the limit is 1024"),
    ],
)
def test_bad_task_ids_are_rejected_with_value_error(task_id: object, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        validate_task_id(task_id)


def test_good_task_ids_pass() -> None:
    for task_id in ["t-1", "x" * 1024, "任务/1?&=", "a b"]:
        assert validate_task_id(task_id) == task_id


def test_task_ref_validates_its_parts() -> None:
    assert mountsea.TaskRef("xai", "t") == mountsea.TaskRef(service="xai", id="t")
    with pytest.raises(ValueError, match="service must be one of"):
        mountsea.TaskRef("music", "t")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        mountsea.TaskRef("xai", "")
