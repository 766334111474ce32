"""The ``mountsea`` command line: read or wait for tasks from a shell."""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TextIO

import mountsea

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DEADLINE, EXIT_API, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130

EPILOG = """\
exit codes:
  0    every task succeeded (get: the task was read and has not failed)
  1    a task failed (its status is failed, cancelled or timeout)
  2    usage error or bad input
  3    the deadline passed before every task was done
  4    API or connection error
  130  interrupted (Ctrl-C)
When several apply, the highest of 1, 3 and 4 wins.

environment:
  MOUNTSEA_API_KEY   the API key (required)
  MOUNTSEA_BASE_URL  the API's base URL (default https://api.mountsea.ai); --base-url overrides
"""

# Exception class -> exit code; the first match in this order wins (a WaitTimeoutError is an OSError).
_EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (mountsea.WaitTimeoutError, EXIT_DEADLINE),
    (mountsea.TaskFailedError, EXIT_FAILED),
    (mountsea.ConfigurationError, EXIT_USAGE),
    (mountsea.MountseaError, EXIT_API),
    (ValueError, EXIT_USAGE),
    (OSError, EXIT_USAGE),
)

_PENDING_SHOWN: Final = 20  # pending tasks named when the deadline passes; --output keeps the rest
_TICK: Final = 0.5  # seconds between redraws of the progress line, so its clock never looks stuck
_RETRY_GRACE: Final = 1.0  # seconds a task still counts as retrying after its pause: the request is out


class _UsageError(Exception):
    """Bad command-line input, reported as exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would print usage and exit itself
        raise _UsageError(message)


class _Version(argparse.Action):
    """``--version``, read from the installed metadata only when asked (that costs ~10 ms)."""

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(f"mountsea {mountsea.__version__}")
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mountsea",
        description="Read or wait for Mountsea AI tasks (music: producer, xAI: xai).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="print the installed version and exit")
    base_url_help = "the API's base URL (default: $MOUNTSEA_BASE_URL or the public API)"
    parser.add_argument("--base-url", help=base_url_help)
    # Accepted after the command too; SUPPRESS keeps an absent one from hiding the first.
    common = _Parser(add_help=False)
    common.add_argument("--base-url", default=argparse.SUPPRESS, help=base_url_help)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    get = commands.add_parser(
        "get",
        help="print one task as JSON",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    get.add_argument("service", choices=["producer", "xai"])
    get.add_argument("id")

    wait = commands.add_parser(
        "wait",
        help="wait for one or many tasks",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    wait.add_argument("service", nargs="?", choices=["producer", "xai"], help="the service of the ids that follow")
    wait.add_argument("ids", nargs="*", metavar="ID")
    wait.add_argument(
        "--from",
        dest="source",
        type=Path,
        metavar="FILE",
        help="read 'SERVICE ID' or JSON lines from FILE (- for stdin)",
    )
    wait.add_argument(
        "--timeout",
        type=_number(float, 0, "a number of seconds >= 0"),
        default=None,
        metavar="S",
        help="one deadline for all tasks, in seconds (default: none, wait until every task is done)",
    )
    wait.add_argument(
        "--poll",
        type=_number(float, 1e-9, "a number of seconds > 0"),
        default=None,
        metavar="S",
        help="poll every S seconds (default: when each task is likely done, once finished tasks have been seen;"
        " 1.5 s growing to 5 s until then)",
    )
    wait.add_argument(
        "--max-rate",
        type=_number(float, 1e-9, "a number of requests per second > 0"),
        default=None,
        metavar="R",
        help="at most R requests per second (default: as fast as the server's limit allows)",
    )
    wait.add_argument(
        "--max-concurrency",
        type=_number(int, 1, "a whole number >= 1"),
        default=16,
        metavar="N",
        help="requests in flight at once (default 16)",
    )
    wait.add_argument("--json", action="store_true", help="print one JSON object per finished task")
    wait.add_argument(
        "-o", "--output", type=Path, metavar="FILE", help="also append each finished task to FILE as a JSON line"
    )
    wait.add_argument(
        "--resume",
        action="store_true",
        help="skip tasks already recorded in --output FILE (a recorded failure still makes the exit code 1)",
    )
    wait.add_argument("-q", "--quiet", action="store_true", help="no progress line on stderr")
    return parser


def _number(kind: type[float] | type[int], low: float, what: str) -> Any:
    """An argparse type: a finite ``kind`` >= ``low``, or an error in the command line's words."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            value = math.nan
        if not low <= value < math.inf:
            msg = f"must be {what}, not {text!r}"
            raise argparse.ArgumentTypeError(msg)
        return value

    return parse


def _read_refs(lines: Iterator[str], origin: str) -> Iterator[mountsea.TaskRef]:
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            if text.startswith("{"):
                item = json.loads(text)
                yield mountsea.TaskRef(item["service"], item.get("taskId", item.get("id")))
            else:
                service, task_id = text.split()
                yield mountsea.TaskRef(service, task_id)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            msg = f"{origin}:{number}: expected 'SERVICE ID' or a JSON object with service and taskId ({exc})"
            raise _UsageError(msg) from exc


def _wait_refs(args: argparse.Namespace) -> list[mountsea.TaskRef]:
    refs: list[mountsea.TaskRef] = []
    if args.service:
        if not args.ids:
            msg = "wait: give at least one ID after the service"
            raise _UsageError(msg)
        refs += [mountsea.TaskRef(args.service, task_id) for task_id in args.ids]
    if args.source is not None:
        if str(args.source) == "-":
            refs += _read_refs(iter(sys.stdin), "<stdin>")
        else:
            with args.source.open(encoding="utf-8") as lines:
                refs += _read_refs(lines, str(args.source))
    if not refs:
        msg = "wait: give SERVICE ID [ID ...] or --from FILE"
        raise _UsageError(msg)
    if args.resume and args.output is None:
        msg = "wait: --resume needs --output FILE (where finished tasks were recorded)"
        raise _UsageError(msg)
    return list(dict.fromkeys(refs))


def _recorded(path: Path) -> dict[mountsea.TaskRef, bool]:
    """The tasks recorded in an --output file, each mapped to whether it succeeded.

    A line that is not a whole record (the last one, cut short by a kill) counts as not written.
    """
    recorded: dict[mountsea.TaskRef, bool] = {}
    if path.exists():
        with path.open("rb") as lines:  # bytes: a line cut inside a character is skipped, not a crash
            for line in lines:
                try:
                    item = json.loads(line)
                    if item["status"] in mountsea.TERMINAL_STATUSES:
                        recorded[mountsea.TaskRef(item["service"], item["taskId"])] = item["status"] == "completed"
                except (ValueError, KeyError, TypeError):
                    continue
    return recorded


def _open_output(path: Path) -> io.FileIO:
    """``path`` opened to append records, unbuffered: each record then reaches the file in one write."""
    output = path.open("a+b", buffering=0)
    end = output.seek(0, os.SEEK_END)
    if end:
        output.seek(end - 1)
        if output.read(1) != b"\n":
            _write(output, b"\n")  # the last record was cut by a kill: the next one starts on a line of its own
    return output


def _write(output: io.FileIO, data: bytes) -> None:
    view = memoryview(data)
    while view:  # a regular file takes it all at once; loop only if the OS takes less
        view = view[output.write(view) :]


def _line(task: mountsea.Task) -> str:
    text = f"{task.service} {task.id} {task.raw_status}"
    if task.error_message:
        text += f": {task.error_message}"
    if task.error_code is not None:
        text += f" (error code {task.error_code})"
    return text


class _Progress:
    """A one-line status on a terminal's stderr, redrawn in place at least once a second.

    While running (``with progress:``), it watches the ``mountsea`` logger for the core's
    retry records (INFO, with ``task_ref`` and ``retry_in`` attributes): a task counts as
    retrying until its pause is over, or it finished.
    """

    def __init__(self, stream: TextIO, total: int, enabled: bool) -> None:
        self.stream, self.total, self.enabled = stream, total, enabled
        self.succeeded = self.failed = 0
        self.retrying: dict[mountsea.TaskRef, float] = {}  # task -> when it stops counting (monotonic)
        self.start = time.monotonic()
        self.lock = threading.RLock()  # the main thread, the ticker and whoever logs all draw
        self._stopped = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="mountsea-progress", daemon=True)
        self._logger = logging.getLogger("mountsea")
        self._own_level, self._level = self._logger.level, self._logger.getEffectiveLevel()

    def __enter__(self) -> _Progress:
        if self.enabled:
            self.draw()
            self._ticker.start()
            # The logger must pass INFO for retries to reach us; `filter` then drops what its
            # old level dropped, so no other handler (MOUNTSEA_LOG=warning's) sees more than before.
            self._logger.addFilter(self)
            self._logger.setLevel(min(self._level, logging.INFO))
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self.enabled:
            self._logger.setLevel(self._own_level)
            self._logger.removeFilter(self)
            self._stopped.set()
            self._ticker.join()
            self.clear()

    def filter(self, record: logging.LogRecord) -> bool:
        """Note a retry record; let a record through if the logger's own level would have."""
        ref, pause = getattr(record, "task_ref", None), getattr(record, "retry_in", None)
        if isinstance(ref, mountsea.TaskRef) and isinstance(pause, int | float):
            with self.lock:
                self.retrying[ref] = time.monotonic() + pause + _RETRY_GRACE
        return record.levelno >= self._level

    def finished(self, task: mountsea.Task, text: str) -> None:
        """Print ``text`` for ``task`` on stdout, above the progress line, and count it."""
        with self.lock:
            self.clear()
            print(text, flush=True)
            self.succeeded += task.succeeded
            self.failed += not task.succeeded
            self.retrying.pop(task.ref, None)
            self.draw()

    def draw(self) -> None:
        if self.enabled:
            with self.lock:
                now = time.monotonic()
                self.retrying = {ref: until for ref, until in self.retrying.items() if until > now}
                pending = self.total - self.succeeded - self.failed
                retrying = f" ({len(self.retrying)} retrying)" if self.retrying else ""
                elapsed = int(now - self.start)
                line = f"{self.succeeded} succeeded, {self.failed} failed, {pending} pending{retrying}, {elapsed}s"
                self.stream.write(f"\r\x1b[K{line}")
                self.stream.flush()

    def clear(self) -> None:
        if self.enabled:
            with self.lock:
                self.stream.write("\r\x1b[K")
                self.stream.flush()

    def _tick(self) -> None:
        while not self._stopped.wait(_TICK):
            self.draw()


def _get(client: mountsea.Mountsea, args: argparse.Namespace) -> int:
    task = getattr(client, args.service).tasks.get(args.id)
    print(json.dumps(task.to_dict(), ensure_ascii=False))
    return EXIT_FAILED if task.done and not task.succeeded else EXIT_OK


def _wait(client: mountsea.Mountsea, args: argparse.Namespace) -> int:
    refs = _wait_refs(args)
    recorded = _recorded(args.output) if args.resume else {}
    status = EXIT_FAILED if any(recorded.get(ref) is False for ref in refs) else EXIT_OK
    todo = [ref for ref in refs if ref not in recorded]
    if not todo:
        failed = sum(recorded[ref] is False for ref in refs)
        _error(f"all {len(refs)} task(s) are recorded in {args.output} already ({failed} failed): nothing to wait for")
        return status
    progress = _Progress(sys.stderr, len(todo), sys.stderr.isatty() and not args.quiet)
    output = _open_output(args.output) if args.output is not None else None
    try:
        with progress:
            tasks = client.as_completed(
                todo, timeout=args.timeout, poll=args.poll, max_concurrency=args.max_concurrency
            )
            for task in tasks:
                record = json.dumps(task.to_dict(), ensure_ascii=False)
                if output is not None:
                    # A lone surrogate (which UTF-8 cannot hold) becomes "\udXXX": in a JSON string, its escape.
                    _write(output, (record + "\n").encode("utf-8", "backslashreplace"))
                progress.finished(task, record if args.json else _line(task))
                status = max(status, EXIT_OK if task.succeeded else EXIT_FAILED)
    except mountsea.WaitTimeoutError as exc:
        for error in exc.errors.values():
            _error(str(error))
        shown = " ".join(_ref_text(item) for item in exc.pending[:_PENDING_SHOWN])
        more = f" and {len(exc.pending) - _PENDING_SHOWN} more" if len(exc.pending) > _PENDING_SHOWN else ""
        _error(f"{_explained(exc)}; pending: {shown}{more}")
        return max(status, _exit_code(exc))
    except mountsea.BatchError as exc:
        for error in exc.errors.values():
            _error(str(error))
        return max(status, EXIT_API)
    finally:
        if output is not None:
            output.close()
    return status


def _exit_code(exc: BaseException) -> int:
    if isinstance(exc, mountsea.WaitTimeoutError) and (
        exc.errors or isinstance(exc.__cause__, mountsea.APIConnectionError)
    ):
        return EXIT_API  # the deadline passed because the API failed or could not be reached
    return next(code for cls, code in _EXIT_CODES if isinstance(exc, cls))


def _explained(exc: mountsea.WaitTimeoutError) -> str:
    """The deadline's message, followed by the last attempt's failure unless it says it already."""
    message, cause = str(exc), exc.__cause__
    return message if cause is None or str(cause) in message else f"{message} (last attempt: {cause})"


def _client(args: argparse.Namespace) -> mountsea.Mountsea:
    """The client, or a `_UsageError` saying what to fix in the command line's own terms."""
    if not os.environ.get("MOUNTSEA_API_KEY", "").strip():
        msg = "no API key: set MOUNTSEA_API_KEY to your Mountsea API key"
        raise _UsageError(msg)
    try:
        return mountsea.Mountsea(base_url=args.base_url, max_rate=getattr(args, "max_rate", None))
    except mountsea.ConfigurationError as exc:
        raise _UsageError(_base_url_message(str(exc), args.base_url)) from None


def _base_url_message(message: str, flag: str | None) -> str:
    """The library's message about ``base_url``, naming the option or variable the URL came from."""
    name, value = (
        ("--base-url", flag) if flag is not None else ("$MOUNTSEA_BASE_URL", os.environ.get("MOUNTSEA_BASE_URL"))
    )
    if "base_url" not in message or not value:
        return message  # about the key: it names MOUNTSEA_API_KEY already
    # Up to the last "@": a password may hold an unencoded "/", "?" or "#".
    shown = re.sub(r"(?<=//).*@", "***@", value, count=1, flags=re.DOTALL)
    if shown != value:
        return f"{name} {shown!r} holds credentials (user:password@): put the API key in MOUNTSEA_API_KEY instead"
    shown = re.sub(r"([?#]).*", r"\1***", shown, count=1, flags=re.DOTALL)  # a query may hold a token
    message = message.replace("base_url", name)
    return message if repr(shown) in message else f"{message} (got {shown!r})"


def _ref_text(item: mountsea.Task | mountsea.TaskRef) -> str:
    return f"{item.service}:{item.id}"


def _error(message: str) -> None:
    print(f"mountsea: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    # A task may carry text that the terminal's encoding cannot show (a lone surrogate,
    # say): escape it rather than crash.
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    try:
        args = _parser().parse_args(argv)
        with _client(args) as client:
            return _get(client, args) if args.command == "get" else _wait(client, args)
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
    except _UsageError as exc:
        _error(f"error: {exc} (see mountsea --help)")
        return EXIT_USAGE
    except (mountsea.MountseaError, ValueError, OSError) as exc:
        _error(f"error: {exc}")
        return _exit_code(exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
