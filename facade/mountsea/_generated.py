"""The one place that knows the generated packages.

Each service's generated package exposes the same shapes (``scripts/generate.py``
makes sure of it): ``api.tasks.get_task_result`` builds the request and
``models.TaskResultDto`` parses the answer. The facade reaches both only through
`SERVICES`, so a regenerated package flows in with no edit here.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any, Literal

import attrs

from mountsea_producer_api.api.tasks import get_task_result as producer_get_task
from mountsea_producer_api.models import TaskResultDto as ProducerTaskResultDto
from mountsea_producer_api.models import TaskResultDtoStatus as ProducerTaskStatus
from mountsea_xai_api.api.tasks import get_task_result as xai_get_task
from mountsea_xai_api.models import TaskResultDto as XaiTaskResultDto
from mountsea_xai_api.models import TaskResultDtoStatus as XaiTaskStatus

__all__ = ["SERVICES", "Service", "ServiceName"]

ServiceName = Literal["producer", "xai"]


@attrs.frozen
class Service:
    """One service's generated request builder, answer model and status enum."""

    name: ServiceName
    request_kwargs: Callable[..., dict[str, Any]]  # the endpoint's pure `_get_kwargs(task_id=...)`
    model: type[ProducerTaskResultDto | XaiTaskResultDto]
    status_enum: type[StrEnum]


# The shells send requests themselves (not through `sync_detailed`) because the
# generated `_build_response` calls `HTTPStatus(code)`, which raises a bare
# ValueError on non-standard codes such as 520; URL, query and parsing stay generated.
SERVICES: dict[str, Service] = {
    "producer": Service("producer", producer_get_task._get_kwargs, ProducerTaskResultDto, ProducerTaskStatus),
    "xai": Service("xai", xai_get_task._get_kwargs, XaiTaskResultDto, XaiTaskStatus),
}
