"""`Task`, the one type both services' answers become, and how answers are merged into it."""

from __future__ import annotations

import datetime
import enum
import importlib
import math
import sys
import types
import typing
import unicodedata
from collections.abc import Mapping
from typing import Any, Final

import attrs

from ._errors import ResponseValidationError
from ._generated import SERVICES, Service, ServiceName, TaskModel

__all__ = ["TERMINAL_STATUSES", "Task", "TaskRef", "TaskStatus", "parse_task", "validate_task_id"]

MAX_TASK_ID_LENGTH: Final = 1024


class TaskStatus(enum.StrEnum):
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
    if not value:
        return _NO_EXTRA
    return value if isinstance(value, types.MappingProxyType) else types.MappingProxyType(dict(value))


@attrs.frozen
class Task:
    """A task of either service, as last seen.

    ``status`` is a `TaskStatus`; ``raw_status`` is the string the server sent (they
    differ only when ``status`` is ``UNKNOWN``). ``extra`` holds, read-only, every
    field of the answer that this type does not name.
    """

    id: str
    service: ServiceName
    status: TaskStatus = attrs.field(converter=TaskStatus)
    raw_status: str = attrs.field(default=attrs.Factory(lambda self: str(self.status), takes_self=True))
    result: dict[str, Any] | None = attrs.field(default=None, hash=False, repr=_summary)
    error_message: str | None = None
    error_code: int | float | None = None
    created_at: datetime.datetime | None = None
    finished_at: datetime.datetime | None = None
    trace_id: str | None = None
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
        """The task as JSON-ready data: keys as the API names them, plus ``service``.

        Fields the answer left out are left out; ``extra`` fields come back as sent.
        """
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
    if not isinstance(task_id, str):
        msg = f"task_id must be a str, not {type(task_id).__name__}"
        raise ValueError(msg)  # not TypeError: the documented contract is ValueError for any bad id
    if not task_id.strip():
        msg = "task_id must not be empty or blank"
        raise ValueError(msg)
    if len(task_id) > MAX_TASK_ID_LENGTH:
        msg = f"task_id is {len(task_id)} characters long; the limit is {MAX_TASK_ID_LENGTH}"
        raise ValueError(msg)
    if any(unicodedata.category(ch) == "Cc" for ch in task_id):  # C0, DEL and C1 controls
        msg = f"task_id must not contain control characters: {task_id[:40]!r}"
        raise ValueError(msg)
    return task_id


def _validate_service(service: object) -> ServiceName:
    if service not in SERVICES:
        msg = f"service must be one of {sorted(SERVICES)}, not {service!r}"
        raise ValueError(msg)
    return typing.cast(ServiceName, service)


@attrs.frozen
class TaskRef:
    """A task to poll: its service (``"producer"`` or ``"xai"``) and id."""

    service: ServiceName = attrs.field(converter=_validate_service)
    id: str = attrs.field(converter=validate_task_id)

    @property
    def label(self) -> str:
        """The task as messages name it, e.g. ``producer task 't-1'``."""
        return f"{self.service} task {self.id!r}"


# Task attribute -> (generated model attribute, JSON key), for the documented fields.
# A field the spec adds later is not here and lands in `Task.extra` under its JSON key.
_FIELDS: Final = {
    "id": ("task_id", "taskId"),
    "status": ("status", "status"),
    "result": ("result", "result"),
    "error_message": ("error_message", "errorMessage"),
    "error_code": ("error_code", "errorCode"),
    "created_at": ("created_at", "createdAt"),
    "finished_at": ("finished_at", "finishedAt"),
    "trace_id": ("trace_id", "traceId"),
}
_KNOWN_KEYS: Final = frozenset(key for _, key in _FIELDS.values())
_NULLABLE_KEYS: Final = _KNOWN_KEYS - {"taskId", "status"}


@attrs.frozen
class _FieldCheck:
    """What one generated model field accepts, compiled once from its annotation."""

    name: str
    kinds: tuple[type, ...]  # the value must be an instance of one of these
    optional: bool  # not required by the spec: absent, or null, reads as None
    nullable: bool
    anything: bool  # an annotation this check does not look into

    def fits(self, value: object) -> bool:
        if self.anything:
            return True
        if value is None:
            return self.nullable
        if isinstance(value, bool):  # JSON true is not a number
            return bool in self.kinds
        if float in self.kinds and isinstance(value, int | float):
            return not isinstance(value, float) or math.isfinite(value)
        return isinstance(value, self.kinds)


def _is_unset_type(hint: Any) -> bool:
    # Each generated package has its own `types.Unset`; recognise both by name.
    return isinstance(hint, type) and hint.__name__ == "Unset"


def _is_unset(value: object) -> bool:
    return _is_unset_type(type(value))


def _field_check(name: str, hint: Any) -> _FieldCheck:
    union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
    arms = typing.get_args(hint) if union else (hint,)
    kinds = [typing.get_origin(arm) or arm for arm in arms if not _is_unset_type(arm) and arm not in (None, type(None))]
    return _FieldCheck(
        name=name,
        kinds=tuple(kind for kind in kinds if isinstance(kind, type)),
        optional=any(_is_unset_type(arm) for arm in arms),
        nullable=any(arm in (None, type(None)) for arm in arms),
        anything=any(kind is Any or not isinstance(kind, type) for kind in kinds),
    )


def _field_checks(model: type[TaskModel]) -> tuple[_FieldCheck, ...]:
    # The generated modules import nested models under TYPE_CHECKING only, so resolve
    # annotations with the models package's namespace as well.
    module = sys.modules[model.__module__]
    package = importlib.import_module(model.__module__.rsplit(".", 1)[0])
    hints = typing.get_type_hints(model, globalns={**vars(package), **vars(module)})
    return tuple(_field_check(f.name, hints[f.name]) for f in attrs.fields(typing.cast(Any, model)) if f.init)


# Compiled at import: parsing an answer then costs a few isinstance calls per field.
_CHECKS: Final = {name: _field_checks(service.model) for name, service in SERVICES.items()}


def _aware(value: object) -> datetime.datetime | None:
    if not isinstance(value, datetime.datetime):
        return None
    # A timestamp without an offset is taken as UTC, the API's clock; any other is
    # converted to UTC so that tasks compare and print alike.
    return value.replace(tzinfo=datetime.UTC) if value.tzinfo is None else value.astimezone(datetime.UTC)


def parse_task(service: Service, payload: object, *, task_id: str | None = None) -> Task:
    """Merge a decoded ``TaskResultDto`` answer of ``service`` into a `Task`.

    Raises `ResponseValidationError` when the payload does not fit the generated model.
    """

    def invalid(why: str) -> ResponseValidationError:
        return ResponseValidationError(
            f"{service.name} task {task_id!r}: invalid TaskResultDto: {why}",
            body=payload,
            service=service.name,
            task_id=task_id,
        )

    if not isinstance(payload, dict):
        why = f"expected a JSON object, got {type(payload).__name__}"
        raise invalid(why)
    raw_status = payload.get("status")
    if not isinstance(raw_status, str):
        why = f"'status' must be a string, got {_summary(raw_status)}"
        raise invalid(why)
    # A documented optional field sent as null reads as absent (the generated parser
    # would choke on a null date).
    payload = {k: v for k, v in payload.items() if v is not None or k not in _NULLABLE_KEYS}
    if raw_status not in service.status_enum._value2member_map_:
        # The generated enum rejects values it does not know; parse the rest with a
        # stand-in so a status the API adds later becomes UNKNOWN, not an error.
        payload = {**payload, "status": next(iter(service.status_enum)).value}
    try:
        model = service.model.from_dict(payload)
    except (KeyError, ValueError, TypeError, AttributeError, OverflowError) as exc:
        why = f"{type(exc).__name__}: {_summary(str(exc))}"
        raise invalid(why) from exc

    values: dict[str, Any] = {}
    for check in _CHECKS[service.name]:
        value = getattr(model, check.name)
        if _is_unset(value) or (value is None and check.optional):
            values[check.name] = None  # absent, or an optional field sent as null
        elif check.fits(value):
            values[check.name] = value
        else:
            why = f"field {check.name!r} has the wrong type: {_summary(value)}"
            raise invalid(why)

    result = values.get("result")
    known = TaskStatus._value2member_map_.get(raw_status)
    status = TaskStatus.UNKNOWN if known is None else typing.cast(TaskStatus, known)
    # A batch keeps the last Task of every unfinished task: share the strings it can
    # (the status's own, the id asked for) rather than keep a fresh copy per answer.
    raw_status = raw_status if known is None else status.value
    seen_id: str = values["task_id"]
    if seen_id == task_id:
        seen_id = task_id
    try:
        created_at, finished_at = _aware(values.get("created_at")), _aware(values.get("finished_at"))
    except OverflowError as exc:  # a valid timestamp that does not fit in UTC (year 1 or 9999)
        why = f"a timestamp is out of range: {exc}"
        raise invalid(why) from exc
    return Task(
        id=seen_id,
        service=service.name,
        status=status,
        raw_status=raw_status,
        result=result.to_dict() if result is not None else None,
        error_message=values.get("error_message"),
        error_code=values.get("error_code"),
        created_at=created_at,
        finished_at=finished_at,
        trace_id=values.get("trace_id"),
        # Everything the answer holds beyond the documented fields, as sent: unknown
        # fields and fields a newer spec added alike.
        extra={key: value for key, value in payload.items() if key not in _KNOWN_KEYS},
    )
