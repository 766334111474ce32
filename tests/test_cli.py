"""The command line, run as a subprocess against FakeMountsea: output, exit codes, resume, secrecy."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

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


def _cli(server: FakeMountsea | None, *args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "mountsea", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=_env(server, **env),
        timeout=60,
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


def test_connection_errors_exit_4(server: FakeMountsea) -> None:
    done = _cli(server, "get", "xai", "t", "--base-url", "http://127.0.0.1:1")
    assert done.returncode == 4
    assert "connection error" in done.stderr


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


def test_a_missing_key_is_a_usage_error(server: FakeMountsea) -> None:
    done = _cli(None, "get", "xai", "t", "--base-url", server.url)
    assert done.returncode == 2
    assert "MOUNTSEA_API_KEY" in done.stderr


def test_help_documents_the_exit_codes() -> None:
    done = _cli(None, "wait", "--help")
    assert done.returncode == 0
    for line in ["0    every task succeeded", "3    the deadline passed", "130  interrupted"]:
        assert line in done.stdout


def test_wait_from_file_and_resume_after_an_interruption(server: FakeMountsea, tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text('producer a\n# a comment\n{"service": "xai", "taskId": "b"}\n\nproducer c\n', encoding="utf-8")
    out = tmp_path / "done.jsonl"
    server.add_task("producer", "a", ["completed"])
    server.add_task("xai", "b", ["completed"])
    server.add_task("producer", "c", ["processing"])

    first = _cli(server, "wait", "--from", str(ids), "-o", str(out), "--timeout", "0.3", "--poll", "0.05")
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


def _interrupt(
    server: FakeMountsea, *args: str, after_requests: int, task_id: str | None = None
) -> tuple[int, str, float]:
    """Run the CLI, press Ctrl-C once the server has seen ``after_requests`` requests.

    Returns the exit code, stderr, and the seconds the process took to exit after the signal.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "mountsea", *args],
        env=_env(server),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    while server.request_count(task_id=task_id) < after_requests and time.monotonic() < deadline:
        time.sleep(0.02)
    interrupted = time.monotonic()
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=20)
    assert KEY not in stdout + stderr
    assert "Traceback" not in stderr
    return process.returncode, stderr, time.monotonic() - interrupted


def test_ctrl_c_exits_130_without_a_traceback(server: FakeMountsea) -> None:
    server.add_task("producer", "t", ["processing"])
    code, stderr, _ = _interrupt(server, "wait", "producer", "t", "--poll", "0.05", after_requests=2)
    assert code == 130
    assert stderr.strip() == "mountsea: interrupted"


def test_progress_redraws_on_a_terminal_only(server: FakeMountsea) -> None:
    import pty

    server.add_task("producer", "a", ["processing", "completed"])
    server.add_task("producer", "b", ["processing", "processing", "completed"])
    primary, secondary = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "mountsea", "wait", "producer", "a", "b", "--poll", "0.05"],
            env=_env(server),
            stdout=subprocess.PIPE,
            stderr=secondary,
            timeout=60,
            check=False,
        )
        os.close(secondary)
        secondary = -1
        chunks = []
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(primary)
        if secondary != -1:
            os.close(secondary)
    progress = b"".join(chunks).decode()
    assert done.returncode == 0
    assert "\r\x1b[K0 done, 0 failed, 2 pending" in progress
    assert "2 done, 0 failed, 0 pending" in progress
    assert progress.endswith("\r\x1b[K")  # the line is cleared at the end
    assert KEY not in progress
    assert sorted(done.stdout.decode().splitlines()) == ["producer a completed", "producer b completed"]


def test_ctrl_c_mid_batch_then_resume(server: FakeMountsea, tmp_path: Path) -> None:
    out = tmp_path / "done.jsonl"
    server.add_task("xai", "quick", ["completed"])
    server.add_task("xai", "stuck", ["processing"])
    args = ("wait", "xai", "quick", "stuck", "-o", str(out), "--poll", "0.05")
    code, _, _ = _interrupt(server, *args, after_requests=3, task_id="stuck")
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
    done = _cli(server, "wait", "producer", "missing", "slow", "--timeout", "0.5", "--poll", "0.05")
    assert done.returncode == 4
    assert "producer task 'missing': HTTP 404" in done.stderr
    assert "pending: producer:slow" in done.stderr


def test_ctrl_c_with_requests_in_flight_exits_at_once(server: FakeMountsea) -> None:
    server.add_task("producer", "hang", ["processing"])
    server.inject(Fault.delay(20), times=3)
    code, stderr, took = _interrupt(server, "wait", "producer", "hang", "x", "y", after_requests=3)
    assert code == 130
    assert took < 3.0  # not the 20 s the requests would take
    assert stderr.strip() == "mountsea: interrupted"


def test_text_the_terminal_cannot_encode_is_escaped(server: FakeMountsea) -> None:
    server.set_payload("xai", "s", b'{"taskId": "s", "status": "completed", "result": {"t": "\\ud800"}}')
    done = _cli(server, "get", "xai", "s")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"] == {"t": "\ud800"}
