"""Every code block of README.md runs here, against FakeMountsea, so the README cannot drift."""

from __future__ import annotations

import contextlib
import inspect
import io
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from mountsea import AsyncMountsea, Mountsea
from mountsea.testing import FakeMountsea

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = [(lang, code) for lang, code in BLOCK.findall(README)]
SHOWN = re.compile(r"print\(.*\)  # (.+)$", re.MULTILINE)  # a comment after a print shows what it prints


def _script(server: FakeMountsea) -> None:
    """The tasks the README's examples name."""
    server.add_task("producer", "song-123", ["processing", "completed"])
    server.add_task("xai", "video-456", ["processing", "completed"], result={"video_url": "https://cdn.example/v.mp4"})
    server.add_task("producer", "song-failed", ["failed"], error_message="content policy", error_code=4001)
    for i in range(50):
        failed = i == 7
        error = "content policy" if failed else None
        server.add_task(
            "producer", f"batch-{i}", ["processing", "failed" if failed else "completed"], error_message=error
        )


@pytest.fixture
def readme_server(monkeypatch: pytest.MonkeyPatch) -> FakeMountsea:
    with FakeMountsea(api_key="readme-key") as server:
        _script(server)
        monkeypatch.setenv("MOUNTSEA_API_KEY", server.api_key)
        monkeypatch.setenv("MOUNTSEA_BASE_URL", server.url)
        yield server  # type: ignore[misc]


def _blocks(kind: str) -> list[str]:
    return [code for lang, code in BLOCKS if lang == kind]


def test_the_readme_has_the_sections_a_newcomer_needs() -> None:
    assert {lang for lang, _ in BLOCKS} <= {"python", "sh", "text"}
    assert len(_blocks("python")) >= 5
    assert any("AsyncMountsea" in code for code in _blocks("python"))
    assert any("as_completed" in code for code in _blocks("python"))
    assert any("mountsea_server" in code for code in _blocks("python"))


@pytest.mark.parametrize("code", [c for c in _blocks("python") if "def test_" not in c])
def test_python_blocks_run(code: str, readme_server: FakeMountsea) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {"__name__": "__readme__"})
    assert out.getvalue().strip(), "each example prints what it shows"
    if "FakeMountsea()" not in code:  # an example that starts a fake server of its own talks to that one
        assert readme_server.request_count() > 0
    printed = iter(out.getvalue().splitlines())
    for shown in SHOWN.findall(code):  # in the order the block prints them
        assert shown in printed, f"the README says {shown!r}; the code printed {out.getvalue()!r}"


def test_the_readme_shows_output_for_the_quick_start() -> None:
    assert len(SHOWN.findall(_blocks("python")[0])) >= 1
    assert len(SHOWN.findall(_blocks("python")[1])) >= 3


def test_every_default_deadline_is_in_one_table_and_true() -> None:
    table = README[README.index("Deadlines, every default in one place") :].split("\n\n")[1]
    with Mountsea(api_key="k") as client:
        wait = inspect.signature(client.producer.tasks.wait).parameters["timeout"].default
    assert f"| `client.<service>.tasks.wait()` | {wait:g} s |" in table
    for batch in (Mountsea.as_completed, Mountsea.wait_all, AsyncMountsea.as_completed, AsyncMountsea.wait_all):
        assert inspect.signature(batch).parameters["timeout"].default is None
    assert "| `as_completed()`, `wait_all()` | none: until every task is done |" in table
    cli = subprocess.run(
        [sys.executable, "-m", "mountsea", "wait", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "(default: none, wait until every task is done)" in " ".join(cli.split())
    assert "| `mountsea wait` | none: until every task is done | `--timeout S` |" in table
    assert README.count(f"{wait:g} s") == 1  # said once, there


@pytest.mark.parametrize("code", [c for c in _blocks("python") if "def test_" in c])
def test_the_testing_block_passes_under_pytest(code: str, tmp_path: Path) -> None:
    (tmp_path / "test_readme_example.py").write_text(code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOUNTSEA_")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


@pytest.mark.parametrize("code", _blocks("sh"))
def test_shell_blocks_run(code: str, readme_server: FakeMountsea) -> None:
    for line in code.strip().splitlines():
        args = shlex.split(line)
        if args[0] == "make":  # make test inside the tests would recurse: check that make knows how
            command = ["make", "-n", *args[1:]]
        else:
            assert args[0] == "mountsea", line
            command = [sys.executable, "-m", "mountsea", *args[1:]]
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False, timeout=120)
        assert done.returncode == 0, f"{line}: {done.stdout}{done.stderr}"
    assert readme_server.api_key not in code
