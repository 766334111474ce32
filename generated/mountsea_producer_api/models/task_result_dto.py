from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Self, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.task_result_dto_status import TaskResultDtoStatus
from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.task_result_dto_result_type_0 import TaskResultDtoResultType0


T = TypeVar("T", bound="TaskResultDto")


@_attrs_define
class TaskResultDto:
    task_id: str
    """ 任务 ID """
    status: TaskResultDtoStatus
    """ 任务状态 """
    result: None | TaskResultDtoResultType0 | Unset = UNSET
    """ 任务结果（直接透传协议层返回，类型根据任务类型不同而变化） """
    error_message: str | Unset = UNSET
    """ 错误信息 """
    error_code: float | Unset = UNSET
    """ 错误代码 """
    finished_at: datetime.datetime | Unset = UNSET
    """ 完成时间 """
    created_at: datetime.datetime | Unset = UNSET
    """ 创建时间 """
    trace_id: str | Unset = UNSET
    """ 追踪 ID """
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from ..models.task_result_dto_result_type_0 import TaskResultDtoResultType0

        task_id = self.task_id

        status = self.status.value

        result: dict[str, Any] | None | Unset
        if isinstance(self.result, Unset):
            result = UNSET
        elif isinstance(self.result, TaskResultDtoResultType0):
            result = self.result.to_dict()
        else:
            result = self.result

        error_message = self.error_message

        error_code = self.error_code

        finished_at: str | Unset = UNSET
        if not isinstance(self.finished_at, Unset):
            finished_at = self.finished_at.isoformat()

        created_at: str | Unset = UNSET
        if not isinstance(self.created_at, Unset):
            created_at = self.created_at.isoformat()

        trace_id = self.trace_id

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "taskId": task_id,
                "status": status,
            }
        )
        if result is not UNSET:
            field_dict["result"] = result
        if error_message is not UNSET:
            field_dict["errorMessage"] = error_message
        if error_code is not UNSET:
            field_dict["errorCode"] = error_code
        if finished_at is not UNSET:
            field_dict["finishedAt"] = finished_at
        if created_at is not UNSET:
            field_dict["createdAt"] = created_at
        if trace_id is not UNSET:
            field_dict["traceId"] = trace_id

        return field_dict

    @classmethod
    def from_dict(cls, src_dict: Mapping[str, Any]) -> Self:
        from ..models.task_result_dto_result_type_0 import TaskResultDtoResultType0

        d = dict(src_dict)
        task_id = d.pop("taskId")

        status = TaskResultDtoStatus(d.pop("status"))

        def _parse_result(data: object) -> None | TaskResultDtoResultType0 | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                result_type_0 = TaskResultDtoResultType0.from_dict(data)

                return result_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(None | TaskResultDtoResultType0 | Unset, data)

        result = _parse_result(d.pop("result", UNSET))

        error_message = d.pop("errorMessage", UNSET)

        error_code = d.pop("errorCode", UNSET)

        _finished_at = d.pop("finishedAt", UNSET)
        finished_at: datetime.datetime | Unset
        if isinstance(_finished_at, Unset):
            finished_at = UNSET
        else:
            finished_at = datetime.datetime.fromisoformat(_finished_at)

        _created_at = d.pop("createdAt", UNSET)
        created_at: datetime.datetime | Unset
        if isinstance(_created_at, Unset):
            created_at = UNSET
        else:
            created_at = datetime.datetime.fromisoformat(_created_at)

        trace_id = d.pop("traceId", UNSET)

        task_result_dto = cls(
            task_id=task_id,
            status=status,
            result=result,
            error_message=error_message,
            error_code=error_code,
            finished_at=finished_at,
            created_at=created_at,
            trace_id=trace_id,
        )

        task_result_dto.additional_properties = d
        return task_result_dto

    @property
    def additional_keys(self) -> list[str]:
        return list(self.additional_properties.keys())

    def __getitem__(self, key: str) -> Any:
        return self.additional_properties[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.additional_properties[key] = value

    def __delitem__(self, key: str) -> None:
        del self.additional_properties[key]

    def __contains__(self, key: str) -> bool:
        return key in self.additional_properties
