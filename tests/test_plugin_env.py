"""The ``mountsea_server`` fixture, as a user meets it: their own test file, run by pytest in a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

USER_TESTS = '''
import os

import httpx
import mountsea

BEFORE = {name: os.environ.get(name) for name in ("MOUNTSEA_API_KEY", "MOUNTSEA_BASE_URL")}


def song_status(task_id):
    """App code: it builds its own client from the environment."""
    with mountsea.Mountsea() as client:
        return client.producer.tasks.get(task_id).status


def test_app_code_talks_to_the_fake(mountsea_server):
    mountsea_server.add_task("producer", "t1", ["completed"])
    assert song_status("t1") == "completed"
    assert os.environ["MOUNTSEA_BASE_URL"] == mountsea_server.url
    assert mountsea_server.requests[0].headers["authorization"] == f"Bearer {mountsea_server.api_key}"


def test_the_fake_answers_like_a_real_server(mountsea_server):
    trace = httpx.request("TRACE", f"{mountsea_server.url}/producer/tasks?taskId=t1")
    assert (trace.status_code, trace.headers["allow"], trace.json()["statusCode"]) == (405, "GET", 405)
    denied = httpx.get(f"{mountsea_server.url}/producer/tasks?taskId=t1")
    assert (denied.status_code, denied.headers["www-authenticate"]) == (401, "Bearer")


def test_afterwards_the_environment_is_as_it_was():
    assert {name: os.environ.get(name) for name in BEFORE} == BEFORE
'''


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("developer_env", [True, False], ids=["with-a-real-key-set", "with-nothing-set"])
def test_the_fixture_points_the_environment_at_the_fake(tmp_path: Path, developer_env: bool) -> None:
    (tmp_path / "test_user.py").write_text(USER_TESTS, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MOUNTSEA_", "PYTEST_"))}
    if developer_env:  # the developer's own settings: a closed port stands in for the real API
        env.update(
            MOUNTSEA_API_KEY="sk-real-key-of-the-developer", MOUNTSEA_BASE_URL=f"http://127.0.0.1:{_closed_port()}"
        )
    # The plugin comes from the installed entry point, as in a user's project.
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_user.py"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout
    assert "sk-real-key-of-the-developer" not in done.stdout + done.stderr
