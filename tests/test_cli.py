"""The command line, run as a subprocess against FakeMountsea: output, exit codes, resume, secrecy."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import pytest

import mountsea
from mountsea import _cli as cli
from mountsea.testing import FakeMountsea, Fault

KEY = "sk-cli-secret-42"


@pytest.fixture
def server() -> FakeMountsea:
    with FakeMountsea(api_key=KEY) as fake:
        yield fake  # type: ignore[misc]


def _env(server: FakeMountsea | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOUNTSEA_")}
    if server is not None:
        env.update(MOUNTSEA_API_KEY=KEY, MOUNTSEA_BASE_URL=server.url)
    env.update(extra)
    return env


def _cli(
    server: FakeMountsea | None, *args: str, stdin: str = "", timeout: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "mountsea", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=_env(server, **env),
        timeout=timeout,
        check=False,
    )
    for stream in (done.stdout, done.stderr):
        assert KEY not in stream
        assert "Traceback" not in stream
    return done


def test_get_prints_the_task_as_json(server: FakeMountsea) -> None:
    server.add_task("xai", "v1", ["completed"], result={"video": "v.mp4"}, extra={"progress": 1})
    done = _cli(server, "get", "xai", "v1")
    assert done.returncode == 0, done.stderr
    task = json.loads(done.stdout)
    assert task["service"] == "xai"
    assert (task["taskId"], task["status"], task["result"], task["progress"]) == (
        "v1",
        "completed",
        {"video": "v.mp4"},
        1,
    )
    assert task["createdAt"].endswith("Z")


def test_get_of_a_failed_task_exits_1(server: FakeMountsea) -> None:
    server.add_task("producer", "p", ["failed"], error_message="nope")
    done = _cli(server, "get", "producer", "p")
    assert done.returncode == 1
    assert json.loads(done.stdout)["errorMessage"] == "nope"


def test_wait_prints_a_line_per_task_and_exits_0(server: FakeMountsea) -> None:
    server.add_task("producer", "a", ["pending", "completed"])
    server.add_task("producer", "b", ["completed"])
    done = _cli(server, "wait", "producer", "a", "b", "--poll", "0.02")
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()) == ["producer a completed", "producer b completed"]
    assert done.stderr == ""  # no terminal: no progress line


def test_wait_json_lines_and_a_failure_exit_1(server: FakeMountsea) -> None:
    server.add_task("xai", "ok", ["completed"])
    server.add_task("xai", "bad", ["processing", "failed"], error_message="policy", error_code=4001)
    done = _cli(server, "wait", "xai", "ok", "bad", "--json", "--poll", "0.02")
    assert done.returncode == 1
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert {(t["taskId"], t["status"]) for t in lines} == {("ok", "completed"), ("bad", "failed")}
    assert next(t for t in lines if t["taskId"] == "bad")["errorCode"] == 4001


def test_wait_deadline_exits_3_and_names_the_pending(server: FakeMountsea) -> None:
    server.add_task("producer", "slow", ["processing"])
    done = _cli(server, "wait", "producer", "slow", "--timeout", "0.3", "--poll", "0.05")
    assert done.returncode == 3
    assert "pending: producer:slow" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "fault",
    [Fault.status(401), Fault.status(404)],
    ids=["401", "404"],
)
def test_wait_api_errors_exit_4(server: FakeMountsea, fault: Fault) -> None:
    server.add_task("producer", "t", ["completed"])
    server.inject(fault)
    done = _cli(server, "wait", "producer", "t")
    assert done.returncode == 4
    assert done.stderr.startswith("mountsea: ")


def _closed_port() -> int:
    """A loopback port that nothing listens on: bound once, then closed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    "args",
    [["get", "xai", "t"], ["wait", "producer", "t"], ["wait", "producer", "t", "--timeout", "0.8"]],
    ids=["get", "wait", "wait-with-a-deadline"],
)
def test_a_server_that_cannot_be_reached_exits_4_naming_it(server: FakeMountsea, args: list[str]) -> None:
    # Needs the core to end a wait on a server it never reached (issue 12, part 1).
    port = _closed_port()
    started = time.monotonic()
    done = _cli(server, *args, "--base-url", f"http://127.0.0.1:{port}", timeout=30)
    assert done.returncode == 4, done.stderr
    assert f"127.0.0.1:{port}" in done.stderr
    assert time.monotonic() - started < 30  # not wait()'s 600 s, nor forever


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (mountsea.APIConnectionError("cannot connect to 127.0.0.1:1"), 4),
        (mountsea.ServerError("HTTP 500", status_code=500), 4),
        (mountsea.MountseaError("anything else mountsea raises"), 4),
        (mountsea.WaitTimeoutError("1 of 1 tasks not done by the deadline"), 3),
    ],
    ids=["connection", "api", "other", "deadline"],
)
def test_exit_codes_by_error(
    error: Exception, code: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail(*_: object, **__: object) -> None:
        raise error

    monkeypatch.setenv("MOUNTSEA_API_KEY", KEY)
    monkeypatch.setattr(mountsea.Mountsea, "as_completed", fail)
    assert cli.main(["wait", "producer", "t", "--base-url", "http://127.0.0.1:1"]) == code
    assert str(error) in capsys.readouterr().err


def test_a_deadline_caused_by_a_connection_failure_exits_4_naming_the_host(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail(*_: object, **__: object) -> None:
        error = mountsea.WaitTimeoutError("1 of 1 tasks not done by the deadline")
        raise error from mountsea.APIConnectionError("cannot connect to 127.0.0.1:1")

    monkeypatch.setenv("MOUNTSEA_API_KEY", KEY)
    monkeypatch.setattr(mountsea.Mountsea, "as_completed", fail)
    assert cli.main(["wait", "producer", "t", "--base-url", "http://127.0.0.1:1"]) == 4
    stderr = capsys.readouterr().err
    assert "not done by the deadline (last attempt: cannot connect to 127.0.0.1:1)" in stderr
    assert len(stderr.splitlines()) == 1


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["get"],
        ["get", "music", "t"],
        ["wait"],
        ["wait", "producer"],
        ["wait", "producer", "t", "--timeout", "soon"],
        ["wait", "producer", "t", "--resume"],
        ["get", "producer", " "],
        ["wait", "--from", "/nonexistent/ids.txt"],
        ["--base-url", "ftp://x", "get", "xai", "t"],
    ],
)
def test_usage_errors_exit_2_with_one_line(server: FakeMountsea, args: list[str]) -> None:
    done = _cli(server, *args)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith("mountsea: ")


@pytest.mark.parametrize("key", [None, "", "  "])
def test_a_missing_key_says_which_variable_to_set(server: FakeMountsea, key: str | None) -> None:
    env = {} if key is None else {"MOUNTSEA_API_KEY": key}
    done = _cli(None, "get", "xai", "t", "--base-url", server.url, **env)
    assert done.returncode == 2
    assert "no API key: set MOUNTSEA_API_KEY" in done.stderr
    assert "api_key=" not in done.stderr
    assert server.request_count() == 0


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("ftp://x", "'ftp://x'"),
        ("http://user:pa55word@127.0.0.1:1/v1", "'http://***@127.0.0.1:1/v1'"),
        ("http://127.0.0.1:1/?token=pa55word#x", "'http://127.0.0.1:1/?***'"),
        ("https://:pa55word@api.mountsea.ai", "'https://***@api.mountsea.ai'"),
        # These two need the core to reject them when the client is built (issue 12, part 4).
        ("http://127.0.0.1:99999", "'http://127.0.0.1:99999'"),
        ("http://exa mple.com", "'http://exa mple.com'"),
    ],
    ids=["scheme", "credentials", "query", "password-only", "port", "whitespace"],
)
@pytest.mark.parametrize("via", ["--base-url", "$MOUNTSEA_BASE_URL"])
def test_a_bad_base_url_names_where_it_came_from(url: str, shown: str, via: str) -> None:
    if via == "--base-url":
        done = _cli(None, "get", "xai", "t", "--base-url", url, MOUNTSEA_API_KEY=KEY)
    else:
        done = _cli(None, "get", "xai", "t", MOUNTSEA_API_KEY=KEY, MOUNTSEA_BASE_URL=url)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"mountsea: error: {via} ")
    assert shown in done.stderr
    assert len(done.stderr.splitlines()) == 1
    assert "pa55word" not in done.stderr
    assert "base_url" not in done.stderr
    assert "api_key" not in done.stderr


def test_version_prints_the_installed_version() -> None:
    done = _cli(None, "--version")
    assert done.returncode == 0
    assert done.stdout == f"mountsea {version('mountsea')}\n"


def test_help_documents_the_exit_codes_and_the_default_deadline() -> None:
    done = _cli(None, "wait", "--help")
    assert done.returncode == 0
    for line in ["0    every task succeeded", "3    the deadline passed", "130  interrupted"]:
        assert line in done.stdout
    assert "(default: none, wait until every task is done)" in " ".join(done.stdout.split())


def test_wait_from_file_and_resume_after_an_interruption(server: FakeMountsea, tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text('producer a\n# a comment\n{"service": "xai", "taskId": "b"}\n\nproducer c\n', encoding="utf-8")
    out = tmp_path / "done.jsonl"
    server.add_task("producer", "a", ["completed"])
    server.add_task("xai", "b", ["completed"])
    server.add_task("producer", "c", ["processing"])

    # The deadline must not come before a's and b's first answers: generous, as it only costs c's wait.
    first = _cli(server, "wait", "--from", str(ids), "-o", str(out), "--timeout", "2", "--poll", "0.05")
    assert first.returncode == 3
    assert sorted(json.loads(line)["taskId"] for line in out.read_text().splitlines()) == ["a", "b"]

    server.add_task("producer", "c", ["completed"])
    before = {t: server.request_count(task_id=t) for t in "abc"}
    second = _cli(server, "wait", "--from", str(ids), "-o", str(out), "--resume", "--json")
    assert second.returncode == 0, second.stderr
    assert [json.loads(line)["taskId"] for line in second.stdout.splitlines()] == ["c"]
    assert {t: server.request_count(task_id=t) - before[t] for t in "abc"} == {"a": 0, "b": 0, "c": 1}
    assert sorted(json.loads(line)["taskId"] for line in out.read_text().splitlines()) == ["a", "b", "c"]


def test_a_bad_line_in_the_id_file_is_a_usage_error(server: FakeMountsea, tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("producer a\nthis line is wrong\n", encoding="utf-8")
    done = _cli(server, "wait", "--from", str(ids))
    assert done.returncode == 2
    assert f"{ids}:2:" in done.stderr
    assert server.request_count() == 0


def _interrupt(server: FakeMountsea, *args: str, ready: Callable[[], bool]) -> tuple[int, str, float]:
    """Run the CLI, press Ctrl-C once ``ready()`` is true.

    Returns the exit code, stderr, and the seconds the process took to exit after the signal.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "mountsea", *args],
        env=_env(server),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not ready() and time.monotonic() < deadline:
        time.sleep(0.02)
    interrupted = time.monotonic()
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=20)
    assert KEY not in stdout + stderr
    assert "Traceback" not in stderr
    return process.returncode, stderr, time.monotonic() - interrupted


def test_ctrl_c_exits_130_without_a_traceback(server: FakeMountsea) -> None:
    server.add_task("producer", "t", ["processing"])
    code, stderr, _ = _interrupt(
        server, "wait", "producer", "t", "--poll", "0.05", ready=lambda: server.request_count() >= 2
    )
    assert code == 130
    assert stderr.strip() == "mountsea: interrupted"


FRAME = re.compile(r"\r\x1b\[K(\d+) succeeded, (\d+) failed, (\d+) pending(?: \((\d+) retrying\))?, (\d+)s")


def _on_a_terminal(server: FakeMountsea, *args: str) -> tuple[int, str, str]:
    """Run the CLI with stderr on a pseudo-terminal: the exit code, stdout, and what the terminal got."""
    import pty

    primary, secondary = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "mountsea", *args], env=_env(server), stdout=subprocess.PIPE, stderr=secondary
        )
        os.close(secondary)
        secondary = -1
        chunks = []
        while True:  # read as it comes, so that the child never blocks on a full terminal
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            chunks.append(chunk)
        stdout, _ = process.communicate(timeout=60)
    finally:
        os.close(primary)
        if secondary != -1:
            os.close(secondary)
    terminal = b"".join(chunks).decode()
    assert KEY not in terminal
    assert "Traceback" not in terminal
    return process.returncode, stdout.decode(), terminal


def _frames(terminal: str) -> list[tuple[int, int, int, int, int]]:
    """Each progress line drawn: succeeded, failed, pending, retrying, elapsed seconds."""
    return [(int(a), int(b), int(c), int(d or 0), int(e)) for a, b, c, d, e in FRAME.findall(terminal)]


def test_progress_redraws_on_a_terminal_only(server: FakeMountsea) -> None:
    server.add_task("producer", "a", ["processing", "completed"])
    server.add_task("producer", "b", ["processing", "processing", "failed"])
    code, stdout, terminal = _on_a_terminal(server, "wait", "producer", "a", "b", "--poll", "0.05")
    assert code == 1
    assert terminal.startswith("\r\x1b[K0 succeeded, 0 failed, 2 pending, 0s")
    assert "1 succeeded, 1 failed, 0 pending" in terminal  # a failed task is "failed", as in the library
    assert terminal.endswith("\r\x1b[K")  # the line is cleared at the end
    assert sorted(stdout.splitlines()) == ["producer a completed", "producer b failed"]


def test_progress_ticks_while_nothing_changes(server: FakeMountsea) -> None:
    server.add_task("producer", "a", ["processing", "completed"])  # done on the second poll, 2.5 s later
    code, _, terminal = _on_a_terminal(server, "wait", "producer", "a", "--poll", "2.5")
    assert code == 0
    waiting = [elapsed for _, _, pending, _, elapsed in _frames(terminal) if pending == 1]
    assert len(waiting) >= 2  # not only the first line: nothing else happens for 2.5 s
    assert max(waiting) >= 1  # and its clock moves


def test_progress_shows_retries(server: FakeMountsea) -> None:
    # Needs the core's INFO record for each retry (issue 12, part 1).
    for task_id in ("a", "b"):
        server.add_task("producer", task_id, ["completed"])
        server.inject(Fault.status(503, retry_after=2), task_id=task_id)
    code, stdout, terminal = _on_a_terminal(server, "wait", "producer", "a", "b", "--poll", "0.05")
    assert code == 0
    assert sorted(stdout.splitlines()) == ["producer a completed", "producer b completed"]
    frames = _frames(terminal)
    assert any(retrying == 2 for *_, retrying, _ in frames), terminal
    assert frames[-1][:4] == (2, 0, 0, 0)  # a task yielded is retrying no more


def test_progress_counts_retries_from_the_log_and_leaves_the_logger_as_it_was(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logger = logging.getLogger("mountsea")
    level, seen = logger.level, []
    watcher = logging.Handler()
    watcher.emit = seen.append  # type: ignore[method-assign]
    logger.setLevel(logging.NOTSET)  # as in a fresh process: the root logger's WARNING applies
    logger.addHandler(watcher)
    try:
        assert logger.getEffectiveLevel() == logging.WARNING
        stream = io.StringIO()
        with cli._Progress(stream, 3, enabled=True) as progress:
            for task_id in ("a", "b"):
                ref = mountsea.TaskRef("producer", task_id)
                logger.info("retrying", extra={"task_ref": ref, "retry_in": 30.0, "reason": "HTTP 503"})
            progress.draw()
            assert "0 succeeded, 0 failed, 3 pending (2 retrying), " in stream.getvalue().rsplit("\r", 1)[-1]
            progress.finished(mountsea.Task("a", "producer", "failed"), "producer a failed")
            assert "0 succeeded, 1 failed, 2 pending (1 retrying), " in stream.getvalue().rsplit("\r", 1)[-1]
            logger.warning("shown as before")
        assert capsys.readouterr().out == "producer a failed\n"
        assert [record.getMessage() for record in seen] == ["shown as before"]  # the INFO records were not
        assert (logger.level, logger.filters) == (logging.NOTSET, [])
    finally:
        logger.removeHandler(watcher)
        logger.setLevel(level)


def test_ctrl_c_mid_batch_then_resume(server: FakeMountsea, tmp_path: Path) -> None:
    out = tmp_path / "done.jsonl"
    server.add_task("xai", "quick", ["completed"])
    server.add_task("xai", "stuck", ["processing"])
    args = ("wait", "xai", "quick", "stuck", "-o", str(out), "--poll", "0.05")
    # Ctrl-C once "quick" is on file and "stuck" has been asked about at least twice.
    code, _, _ = _interrupt(
        server,
        *args,
        ready=lambda: out.exists() and b"quick" in out.read_bytes() and server.request_count(task_id="stuck") >= 2,
    )
    assert code == 130
    assert [json.loads(line)["taskId"] for line in out.read_text().splitlines()] == ["quick"]

    server.add_task("xai", "stuck", ["completed"])
    resumed = _cli(server, "wait", "xai", "quick", "stuck", "-o", str(out), "--resume")
    assert resumed.returncode == 0
    assert resumed.stdout.splitlines() == ["xai stuck completed"]


def test_debug_logging_shows_requests_but_never_the_key(server: FakeMountsea) -> None:
    server.add_task("producer", "t", ["completed"])
    done = _cli(server, "get", "producer", "t", MOUNTSEA_LOG="debug")
    assert done.returncode == 0
    assert "mountsea DEBUG GET /producer/tasks taskId=t -> 200" in done.stderr


def test_an_api_error_outranks_the_deadline(server: FakeMountsea) -> None:
    server.add_task("producer", "slow", ["processing"])
    # The 404 must come before the deadline, even on a loaded machine.
    done = _cli(server, "wait", "producer", "missing", "slow", "--timeout", "2", "--poll", "0.05")
    assert done.returncode == 4
    assert "producer task 'missing': HTTP 404" in done.stderr
    assert "pending: producer:slow" in done.stderr


def test_ctrl_c_with_requests_in_flight_exits_at_once(server: FakeMountsea) -> None:
    server.add_task("producer", "hang", ["processing"])
    server.inject(Fault.delay(20), times=3)
    code, stderr, took = _interrupt(
        server, "wait", "producer", "hang", "x", "y", ready=lambda: server.request_count() >= 3
    )
    assert code == 130
    assert took < 10  # not the 20 s the requests would take
    assert stderr.strip() == "mountsea: interrupted"


def test_text_the_terminal_cannot_encode_is_escaped(server: FakeMountsea) -> None:
    server.set_payload("xai", "s", b'{"taskId": "s", "status": "completed", "result": {"t": "\\ud800"}}')
    done = _cli(server, "get", "xai", "s")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"] == {"t": "\ud800"}


def _record(task_id: str, status: str, **fields: object) -> bytes:
    """A line as `wait -o` writes it."""
    return json.dumps({"service": "producer", "taskId": task_id, "status": status, **fields}).encode() + b"\n"


def test_resume_after_a_cut_last_line(server: FakeMountsea, tmp_path: Path) -> None:
    out = tmp_path / "done.jsonl"
    earlier = _record("a", "failed", errorMessage="policy")
    cut = json.dumps({"service": "producer", "taskId": "b", "result": {"title": "Été"}}, ensure_ascii=False).encode()
    cut = cut[: cut.index("É".encode()) + 1]  # killed in the middle of a record, and of a character
    out.write_bytes(earlier + cut)
    server.add_task("producer", "a", ["completed"])
    server.add_task("producer", "b", ["completed"], result={"title": "Été"})

    done = _cli(server, "wait", "producer", "a", "b", "-o", str(out), "--resume")
    assert done.returncode == 1, done.stderr  # a's recorded failure still counts
    assert done.stdout == "producer b completed\n"
    assert (server.request_count(task_id="a"), server.request_count(task_id="b")) == (0, 1)
    first, second, third, rest = out.read_bytes().split(b"\n")
    assert (first + b"\n", second, rest) == (earlier, cut, b"")  # what was there is left as it was
    assert json.loads(third)["result"] == {"title": "Été"}  # the cut task, on a line of its own

    again = _cli(server, "wait", "producer", "a", "b", "-o", str(out), "--resume")
    assert again.returncode == 1
    assert again.stderr == f"mountsea: all 2 task(s) are recorded in {out} already (1 failed): nothing to wait for\n"
    assert server.request_count() == 1


@pytest.mark.parametrize(("b_status", "code"), [("completed", 0), ("cancelled", 1)])
def test_resume_with_every_task_recorded(server: FakeMountsea, tmp_path: Path, b_status: str, code: int) -> None:
    out = tmp_path / "done.jsonl"
    out.write_bytes(_record("a", "completed") + _record("b", b_status))
    done = _cli(server, "wait", "producer", "a", "b", "a", "-o", str(out), "--resume")
    assert done.returncode == code
    assert done.stdout == ""
    assert f"all 2 task(s) are recorded in {out} already ({code} failed)" in done.stderr
    assert server.request_count() == 0


def test_each_record_is_on_file_as_soon_as_it_is_printed(server: FakeMountsea, tmp_path: Path) -> None:
    out = tmp_path / "done.jsonl"
    server.add_task("producer", "quick", ["completed"])
    server.add_task("producer", "stuck", ["processing"])
    process = subprocess.Popen(
        [sys.executable, "-m", "mountsea", "wait", "producer", "quick", "stuck", "-o", str(out), "--poll", "0.05"],
        env=_env(server),
        stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == b"producer quick completed\n"
        # Printed after it was written, and written unbuffered: a kill cannot lose it.
        process.kill()
        process.wait(timeout=20)
    finally:
        process.kill()
        process.stdout.close()  # type: ignore[union-attr]
    assert [json.loads(line)["taskId"] for line in out.read_bytes().splitlines()] == ["quick"]
    assert out.read_bytes().endswith(b"\n")


def test_a_surrogate_in_a_record_keeps_the_output_file_valid(server: FakeMountsea, tmp_path: Path) -> None:
    out = tmp_path / "done.jsonl"
    server.set_payload("xai", "s", b'{"taskId": "s", "status": "completed", "result": {"t": "\\ud800"}}')
    done = _cli(server, "wait", "xai", "s", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_bytes())["result"] == {"t": "\ud800"}


@pytest.mark.parametrize(
    ("option", "value", "what"),
    [
        ("--timeout", "-1", "a number of seconds >= 0"),
        ("--timeout", "soon", "a number of seconds >= 0"),
        ("--poll", "0", "a number of seconds > 0"),
        ("--poll", "nan", "a number of seconds > 0"),
        ("--max-concurrency", "0", "a whole number >= 1"),
        ("--max-concurrency", "1.5", "a whole number >= 1"),
        ("--max-rate", "0", "a number of requests per second > 0"),
    ],
)
def test_bad_numbers_are_said_in_the_command_lines_words(option: str, value: str, what: str) -> None:
    done = _cli(None, "wait", "producer", "t", option, value, MOUNTSEA_API_KEY=KEY)
    assert done.returncode == 2
    assert done.stderr.startswith(f"mountsea: error: argument {option}: must be {what}, not '{value}'")
    assert "None" not in done.stderr  # the library's words ("... or None") stay out of it


def test_max_rate_spaces_the_requests(server: FakeMountsea) -> None:
    for task_id in ("a", "b", "c", "d"):
        server.add_task("producer", task_id, ["completed"])
    done = _cli(server, "wait", "producer", "a", "b", "c", "d", "--max-rate", "10", "-q")
    assert done.returncode == 0, done.stderr
    times = sorted(request.time for request in server.requests)
    assert len(times) == 4
    assert times[-1] - times[0] >= 0.3 * 0.9  # four requests at 10/s: three gaps of 0.1 s (a token bucket, no burst)
