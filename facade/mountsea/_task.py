"""`Task`, the one type both services' answers become, and how answers are merged into it.

The one place that knows the generated packages, to which ``scripts/generate.py`` gives the same shapes: the
facade reaches their request builder and answer model only through `SERVICES`, so a regenerated one needs no edit.
"""

from __future__ import annotations

import datetime
import math
import re
import types
import unicodedata
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any, Final, Literal, NoReturn, cast

import attrs

from mountsea_producer_api import models as producer
from mountsea_producer_api.api.tasks import get_task_result as producer_get
from mountsea_xai_api import models as xai
from mountsea_xai_api.api.tasks import get_task_result as xai_get

from ._errors import ResponseValidationError

MAX_TASK_ID_LENGTH: Final = 1024

ServiceName = Literal["producer", "xai"]


@attrs.frozen
class Service:
    """One service's generated request builder, answer model and status enum."""

    name: ServiceName
    request_kwargs: Callable[..., dict[str, Any]]  # the endpoint's pure `_get_kwargs(task_id=...)`
    model: type[producer.TaskResultDto | xai.TaskResultDto]
    status_enum: type[StrEnum]


# The drivers send requests themselves, not through `sync_detailed`: the generated `_build_response` calls
# `HTTPStatus(code)`, a bare ValueError on non-standard codes such as 520. URL, query and parsing stay generated.
SERVICES: dict[str, Service] = {
    "producer": Service("producer", producer_get._get_kwargs, producer.TaskResultDto, producer.TaskResultDtoStatus),
    "xai": Service("xai", xai_get._get_kwargs, xai.TaskResultDto, xai.TaskResultDtoStatus),
}


class TaskStatus(StrEnum):
    """A task's status: the eight documented values, plus `UNKNOWN` for any other."""

    PENDING = "pending"
    READY = "ready"
    ASSIGNED = "assigned"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    UNKNOWN = "unknown"  # a value the API sent that this version does not know; keeps polling


# The statuses after which a task never changes; shared by polling, fan-out and the CLI.
TERMINAL_STATUSES: Final = frozenset(
    {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.TIMEOUT}
)


def _summary(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_NO_EXTRA: Final[Mapping[str, Any]] = types.MappingProxyType({})  # shared: most tasks have none


def _read_only(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return types.MappingProxyType(dict(value)) if value else _NO_EXTRA


def _number(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    finite = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if value is not None and not finite:
        msg = f"{attribute.name!r} must be a finite number"
        raise TypeError(msg, attribute, int | float, value)


_dict = attrs.validators.optional(attrs.validators.instance_of(dict))
_text = attrs.validators.optional(attrs.validators.instance_of(str))
_moment = attrs.validators.optional(attrs.validators.instance_of(datetime.datetime))


@attrs.frozen
class Task:
    """A task of either service, as last seen.

    ``status`` is a `TaskStatus`; ``raw_status`` is the string the server sent (they differ only when ``status`` is
    ``UNKNOWN``). ``extra`` holds, read-only, every field of the answer that this type does not name.
    """

    id: str = attrs.field(validator=attrs.validators.instance_of(str))
    service: ServiceName = attrs.field(validator=attrs.validators.in_(SERVICES))
    status: TaskStatus = attrs.field(converter=TaskStatus)
    raw_status: str = attrs.field(default=attrs.Factory(lambda self: str(self.status), takes_self=True))
    result: dict[str, Any] | None = attrs.field(default=None, hash=False, repr=_summary, validator=_dict)
    error_message: str | None = attrs.field(default=None, validator=_text)
    error_code: int | float | None = attrs.field(default=None, validator=_number)
    created_at: datetime.datetime | None = attrs.field(default=None, validator=_moment)
    finished_at: datetime.datetime | None = attrs.field(default=None, validator=_moment)
    trace_id: str | None = attrs.field(default=None, validator=_text)
    extra: Mapping[str, Any] = attrs.field(factory=dict, converter=_read_only, hash=False, repr=False)

    @property
    def done(self) -> bool:
        """True once the task is terminal: completed, failed, cancelled or timed out."""
        return self.status in TERMINAL_STATUSES

    @property
    def succeeded(self) -> bool:
        """True if the task completed; its output is in ``result``."""
        return self.status is TaskStatus.COMPLETED

    @property
    def ref(self) -> TaskRef:
        """This task's `TaskRef`, to poll it again later."""
        return TaskRef(self.service, self.id)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data: keys as the API names them, plus ``service``; absent fields left out, ``extra`` as sent."""
        data: dict[str, Any] = {"service": self.service, **self.extra}
        for name, (_, key) in _FIELDS.items():
            value = self.raw_status if name == "status" else getattr(self, name)
            if isinstance(value, datetime.datetime):  # as the API writes them: ms precision, Z
                timespec = "milliseconds" if value.microsecond % 1000 == 0 else "microseconds"
                value = value.isoformat(timespec=timespec).replace("+00:00", "Z")
            if value is not None:
                data[key] = value
        return data


def validate_task_id(task_id: object) -> str:
    """Return ``task_id`` if it can be sent; raise ``ValueError`` saying why not."""
    if not isinstance(task_id, str):  # not TypeError: the documented contract is ValueError for any bad id
        msg = f"task_id must be a str, not {type(task_id).__name__}"
    elif not task_id.strip():
        msg = "task_id must not be empty or blank"
    elif len(task_id) > MAX_TASK_ID_LENGTH:
        msg = f"task_id is {len(task_id)} characters long; the limit is {MAX_TASK_ID_LENGTH}"
    elif any(unicodedata.category(ch) == "Cc" for ch in task_id):  # C0, DEL and C1 controls
        msg = f"task_id must not contain control characters: {task_id[:40]!r}"
    else:
        return task_id
    raise ValueError(msg)


def _validate_service(service: object) -> ServiceName:
    if service not in SERVICES:
        msg = f"service must be one of {sorted(SERVICES)}, not {service!r}"
        raise ValueError(msg)
    return cast(ServiceName, service)


@attrs.frozen
class TaskRef:
    """A task to poll: its service (``"producer"`` or ``"xai"``) and id."""

    service: ServiceName = attrs.field(converter=_validate_service)
    id: str = attrs.field(converter=validate_task_id)

    @property
    def label(self) -> str:
        """The task as messages name it, e.g. ``producer task 't-1'``."""
        return f"{self.service} task {self.id!r}"


# Task attribute -> (generated model attribute, JSON key) for the documented fields: all but ``id`` keep the
# model's name, whose camelCase is the key. A field a later spec adds lands in `Task.extra` under its JSON key.
_FIELDS: Final = {
    name: ((attr := "task_id" if name == "id" else name), re.sub("_(.)", lambda m: m[1].upper(), attr))
    for name in attrs.fields_dict(Task)
    if name not in {"service", "raw_status", "extra"}
}
_KNOWN_KEYS: Final = frozenset(key for _, key in _FIELDS.values())
_NULLABLE_KEYS: Final = _KNOWN_KEYS - {"taskId", "status"}


def _aware(value: object) -> object:
    if not isinstance(value, datetime.datetime):
        return value  # the Task's validator says what is wrong
    # Naive timestamps are in UTC, the API's clock; others are converted to UTC, so that tasks compare and print alike.
    return value.replace(tzinfo=datetime.UTC) if value.tzinfo is None else value.astimezone(datetime.UTC)


def parse_task(service: Service, payload: object, *, task_id: str | None = None) -> Task:
    """Merge a decoded ``TaskResultDto`` of ``service`` into a `Task`; `ResponseValidationError` if it does not fit."""

    def invalid(why: str, cause: Exception | None = None) -> NoReturn:
        message = f"{service.name} task {task_id!r}: invalid TaskResultDto: {why}"
        raise ResponseValidationError(message, body=payload, service=service.name, task_id=task_id) from cause

    if not isinstance(payload, dict):
        invalid(f"expected a JSON object, got {type(payload).__name__}")
    raw_status = payload.get("status")
    if not isinstance(raw_status, str):
        invalid(f"'status' must be a string, got {_summary(raw_status)}")
    # A documented optional field sent as null reads as absent (the generated parser would choke on a null date).
    payload = {k: v for k, v in payload.items() if v is not None or k not in _NULLABLE_KEYS}
    if raw_status not in service.status_enum._value2member_map_:
        # The generated enum rejects unknown values: parse with a stand-in, so a new status is UNKNOWN, not an error.
        payload = {**payload, "status": next(iter(service.status_enum)).value}
    try:
        model = service.model.from_dict(payload)
    except (KeyError, ValueError, TypeError, AttributeError, OverflowError) as exc:
        invalid(f"{type(exc).__name__}: {_summary(str(exc))}", exc)

    # The generated model parsed the answer; the Task's validators check each field's type.
    found = {name: getattr(model, attr, None) for name, (attr, _) in _FIELDS.items() if name != "status"}
    values: dict[str, Any] = {k: None if type(v).__name__ == "Unset" else v for k, v in found.items()}
    if hasattr(values["result"], "to_dict"):
        values["result"] = values["result"].to_dict()
    status = cast(TaskStatus, TaskStatus._value2member_map_.get(raw_status, TaskStatus.UNKNOWN))
    try:
        values["created_at"], values["finished_at"] = _aware(values["created_at"]), _aware(values["finished_at"])
        # Every other field of the answer, as sent: unknown ones and those a newer spec added alike.
        extra = {key: value for key, value in payload.items() if key not in _KNOWN_KEYS}
        return Task(service=service.name, status=status, raw_status=raw_status, extra=extra, **values)
    except OverflowError as exc:  # a valid timestamp that does not fit in UTC (year 1 or 9999)
        invalid(f"a timestamp is out of range: {exc}", exc)
    except TypeError as exc:  # a validator's: (message, attribute, expected type, value)
        field = _FIELDS[exc.args[1].name][0]
        invalid(f"field {field!r} has the wrong type: {_summary(exc.args[3])}", exc)
