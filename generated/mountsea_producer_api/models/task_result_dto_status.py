from enum import StrEnum


class TaskResultDtoStatus(StrEnum):
    ASSIGNED = "assigned"
    CANCELLED = "cancelled"
    COMPLETED = "completed"
    FAILED = "failed"
    PENDING = "pending"
    PROCESSING = "processing"
    READY = "ready"
    TIMEOUT = "timeout"

    def __str__(self) -> str:
        return str(self.value)
