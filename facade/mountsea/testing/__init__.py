"""A loopback fake of the Mountsea task API for tests: a real HTTP server on 127.0.0.1.

Usage::

    import httpx
    from mountsea.testing import FakeMountsea, Fault

    with FakeMountsea() as server:
        server.add_task("producer", "t1", ["pending", "completed"])
        server.inject(Fault.status(503, retry_after=1))
        headers = {"Authorization": f"Bearer {server.api_key}"}
        url = f"{server.url}/producer/tasks"
        httpx.get(url, params={"taskId": "t1"}, headers=headers)  # 503, Retry-After: 1
        httpx.get(url, params={"taskId": "t1"}, headers=headers)  # 200, status "pending"
        assert server.request_count(task_id="t1") == 2

With the pytest plugin installed, the ``mountsea_server`` fixture yields a started ``FakeMountsea``.
"""

from ._server import FakeMountsea as FakeMountsea
from ._server import Fault as Fault
from ._server import RecordedRequest as RecordedRequest

__all__ = ["FakeMountsea", "Fault", "RecordedRequest"]

for _cls in (FakeMountsea, Fault, RecordedRequest):
    _cls.__module__ = __name__
del _cls
