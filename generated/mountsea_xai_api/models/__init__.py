"""Contains all the data models used in inputs/outputs"""

from .task_result_dto import TaskResultDto
from .task_result_dto_result_type_0 import TaskResultDtoResultType0
from .task_result_dto_status import TaskResultDtoStatus

__all__ = (
    "TaskResultDto",
    "TaskResultDtoResultType0",
    "TaskResultDtoStatus",
)
