"""The ``mountsea`` command line: read or wait for tasks from a shell."""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import mountsea

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DEADLINE, EXIT_API, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130

EPILOG = """\
exit codes:
  0    every task succeeded (get: the task was read and has not failed)
  1    a task ended unsuccessfully (failed, cancelled, timeout)
  2    usage error or bad input
  3    the deadline passed before every task was done
  4    API or connection error
  130  interrupted (Ctrl-C)
When several apply, the highest of 1, 3 and 4 wins.

environment:
  MOUNTSEA_API_KEY   the API key (required)
  MOUNTSEA_BASE_URL  the API's base URL (default https://api.mountsea.ai); --base-url overrides
"""

# Exception class -> exit code; the first match in this order wins.
_EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (mountsea.WaitTimeoutError, EXIT_DEADLINE),
    (mountsea.TaskFailedError, EXIT_FAILED),
    (mountsea.ConfigurationError, EXIT_USAGE),
    (ValueError, EXIT_USAGE),
    (OSError, EXIT_USAGE),
    (mountsea.MountseaError, EXIT_API),
)


_PENDING_SHOWN = 20  # pending tasks named when the deadline passes; --output keeps the rest


class _UsageError(Exception):
    """Bad command-line input, reported as exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would print usage and exit itself
        raise _UsageError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mountsea",
        description="Read or wait for Mountsea AI tasks (music: producer, xAI: xai).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
    wait.add_argument("--timeout", type=float, default=None, metavar="S", help="one deadline for all tasks, in seconds")
    wait.add_argument(
        "--poll", type=float, default=None, metavar="S", help="poll every S seconds (default: 1.5 s growing to 5 s)"
    )
    wait.add_argument(
        "--max-concurrency", type=int, default=16, metavar="N", help="requests in flight at once (default 16)"
    )
    wait.add_argument("--json", action="store_true", help="print one JSON object per finished task")
    wait.add_argument(
        "-o", "--output", type=Path, metavar="FILE", help="also append each finished task to FILE as a JSON line"
    )
    wait.add_argument("--resume", action="store_true", help="skip tasks already recorded in --output FILE")
    wait.add_argument("-q", "--quiet", action="store_true", help="no progress line on stderr")
    return parser


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
    if args.resume:
        if args.output is None:
            msg = "wait: --resume needs --output FILE (where finished tasks were recorded)"
            raise _UsageError(msg)
        recorded = set()
        if args.output.exists():
            with args.output.open(encoding="utf-8") as lines:
                # A line cut short by an interruption is simply not counted as recorded.
                for line in lines:
                    try:
                        item = json.loads(line)
                        recorded.add(mountsea.TaskRef(item["service"], item["taskId"]))
                    except (ValueError, KeyError, TypeError):
                        continue
        refs = [ref for ref in refs if ref not in recorded]
    return list(dict.fromkeys(refs))


def _line(task: mountsea.Task) -> str:
    text = f"{task.service} {task.id} {task.raw_status}"
    if task.error_message:
        text += f": {task.error_message}"
    if task.error_code is not None:
        text += f" (error code {task.error_code})"
    return text


class _Progress:
    """A one-line status on a terminal's stderr, redrawn in place."""

    def __init__(self, stream: TextIO, total: int, enabled: bool) -> None:
        self.stream, self.total, self.enabled = stream, total, enabled
        self.done = self.failed = 0
        self.start = time.monotonic()

    def finished(self, task: mountsea.Task) -> None:
        self.done += 1
        self.failed += not task.succeeded
        self.draw()

    def draw(self) -> None:
        if self.enabled:
            pending = self.total - self.done
            elapsed = time.monotonic() - self.start
            self.stream.write(
                f"\r\x1b[K{self.done - self.failed} done, {self.failed} failed, {pending} pending, {elapsed:.0f}s"
            )
            self.stream.flush()

    def clear(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def _get(client: mountsea.Mountsea, args: argparse.Namespace) -> int:
    task = getattr(client, args.service).tasks.get(args.id)
    print(json.dumps(task.to_dict(), ensure_ascii=False))
    return EXIT_FAILED if task.done and not task.succeeded else EXIT_OK


def _wait(client: mountsea.Mountsea, args: argparse.Namespace) -> int:
    refs = _wait_refs(args)
    progress = _Progress(sys.stderr, len(refs), sys.stderr.isatty() and not args.quiet)
    output = args.output.open("a", encoding="utf-8") if args.output is not None else None
    status = EXIT_OK
    try:
        progress.draw()
        tasks = client.as_completed(
            refs,
            timeout=args.timeout,
            poll=args.poll,
            max_concurrency=args.max_concurrency,
            on_update=lambda _: progress.draw(),
        )
        for task in tasks:
            progress.clear()
            record = json.dumps(task.to_dict(), ensure_ascii=False)
            print(record if args.json else _line(task), flush=True)
            if output is not None:
                output.write(record + "\n")
                output.flush()
            if not task.succeeded:
                status = EXIT_FAILED
            progress.finished(task)
    except mountsea.WaitTimeoutError as exc:
        progress.clear()
        for error in exc.errors.values():
            _error(str(error))
        shown = " ".join(_ref_text(item) for item in exc.pending[:_PENDING_SHOWN])
        more = f" and {len(exc.pending) - _PENDING_SHOWN} more" if len(exc.pending) > _PENDING_SHOWN else ""
        _error(f"{exc}; pending: {shown}{more}")
        return EXIT_API if exc.errors else max(status, EXIT_DEADLINE)
    except mountsea.BatchError as exc:
        progress.clear()
        for error in exc.errors.values():
            _error(str(error))
        return EXIT_API
    finally:
        progress.clear()
        if output is not None:
            output.close()
    return status


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
        with mountsea.Mountsea(base_url=args.base_url) as client:
            return _get(client, args) if args.command == "get" else _wait(client, args)
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
    except _UsageError as exc:
        _error(f"error: {exc} (see mountsea --help)")
        return EXIT_USAGE
    except (mountsea.MountseaError, ValueError, OSError) as exc:
        _error(f"error: {exc}")
        return next(code for cls, code in _EXIT_CODES if isinstance(exc, cls))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
