"""`FakeMountsea` in a child process, so the client under test has its own GIL, CPU and RSS.

The child prints ``READY <url> <api_key>``, then answers one JSON command per stdin line
with one JSON line on stdout, and stops the server when stdin closes:

* ``{"op": "add", "tasks": [[service, task_id, statuses, step_seconds | null], ...]}``
  -> ``{"start": t, "end": t}``, the child's ``time.monotonic()`` around the adding
  (Linux's monotonic clock is system-wide, so the parent can compare it with its own);
* ``{"op": "count"}`` -> ``{"count": n}``, requests received since the last reset;
* ``{"op": "first_polls"}`` -> ``{"last": t}``, the time by which every task seen had been polled once;
* ``{"op": "reset"}`` -> ``{}``.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from types import TracebackType
from typing import Any, Self

#: One task for the ``add`` command: service, id, statuses, step_seconds.
TaskSpec = tuple[str, str, list[str], float | None]


def serve() -> None:
    """The child's side: serve until stdin closes."""
    from mountsea.testing import FakeMountsea

    with FakeMountsea() as server:
        print(f"READY {server.url} {server.api_key}", flush=True)
        for line in sys.stdin:
            command: dict[str, Any] = json.loads(line)
            op = command["op"]
            answer: dict[str, Any] = {}
            if op == "add":
                answer["start"] = time.monotonic()
                for service, task_id, statuses, step in command["tasks"]:
                    server.add_task(service, task_id, statuses, step_seconds=step)
                answer["end"] = time.monotonic()
            elif op == "count":
                answer["count"] = server.request_count()
            elif op == "first_polls":
                first: dict[str | None, float] = {}
                for request in server.requests:
                    first.setdefault(request.task_id, request.time)
                answer["last"] = max(first.values(), default=0.0)
            elif op == "reset":
                server.reset()
            else:
                answer["error"] = f"unknown op {op!r}"
            print(json.dumps(answer), flush=True)


def reap(proc: subprocess.Popen[Any]) -> None:
    """Wait for ``proc`` to end; kill it if it lingers past 5 s."""
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Closing:
    """``with`` support for a benchmark server: leaving the block calls ``close()``."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class ServerProcess(Closing):
    """The parent's side: start the child, send it commands, and always stop it."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, __file__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        self._stdin = self._proc.stdin
        self._stdout = self._proc.stdout
        try:
            ready, self.url, self.api_key = self._stdout.readline().split()
        except ValueError:
            self.close()
            msg = "the fake server process did not start"
            raise RuntimeError(msg) from None
        assert ready == "READY"

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self._proc.pid

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        """Send one command and return the child's answer."""
        self._stdin.write(json.dumps({"op": op, **args}) + "\n")
        self._stdin.flush()
        line = self._stdout.readline()
        if not line:
            msg = f"the fake server process died (exit code {self._proc.poll()})"
            raise RuntimeError(msg)
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    def add(self, tasks: list[TaskSpec]) -> tuple[float, float]:
        """Script ``tasks``; returns the monotonic times the adding started and ended."""
        answer = self.call("add", tasks=tasks)
        return answer["start"], answer["end"]

    def count(self) -> int:
        """Requests received since the last `reset`."""
        return int(self.call("count")["count"])

    def first_round_end(self) -> float:
        """The monotonic time by which every task polled since the last `reset` had been polled once."""
        return float(self.call("first_polls")["last"])

    def reset(self) -> None:
        """Forget the tasks and the recorded requests."""
        self.call("reset")

    def close(self) -> None:
        """Close the child's stdin (it stops its server and exits); kill it if it lingers."""
        with contextlib.suppress(OSError):  # a dead child's pipe may fail to flush
            self._stdin.close()
        reap(self._proc)
        self._stdout.close()


if __name__ == "__main__":
    serve()
