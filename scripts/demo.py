"""``make demo``: run the examples and the CLI against a local FakeMountsea.

Nothing here reaches the internet: the fake server listens on 127.0.0.1 and the
examples find it through MOUNTSEA_BASE_URL, exactly as they would find the real API.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from mountsea.testing import FakeMountsea, Fault

EXAMPLES = Path(__file__).resolve().parent / "examples"


def _step(title: str, args: list[str], env: dict[str, str]) -> None:
    print(f"\n== {title}\n$ python {' '.join(args)}", flush=True)
    done = subprocess.run([sys.executable, *args], env=env, check=False)
    if done.returncode not in (0, 1):  # the CLI exits 1 when a task failed, as documented
        sys.exit(done.returncode)


def _script_batch(server: FakeMountsea, count: int, rng: random.Random) -> list[str]:
    """``count`` tasks of both services finishing over ~2 s; every 17th fails."""
    lines = []
    for i in range(count):
        service = "producer" if i % 2 else "xai"
        final = "failed" if i % 17 == 0 else "completed"
        error = "content policy" if final == "failed" else None
        step = rng.uniform(0.2, 0.8)
        server.add_task(service, f"batch-{i}", ["pending", "processing", final], step_seconds=step, error_message=error)
        lines.append(f"{service} batch-{i}")
    return lines


def main() -> None:
    """Script tasks on the fake server just before each example runs against them."""
    rng = random.Random(2026)
    with FakeMountsea(api_key="demo-key") as server, tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "MOUNTSEA_API_KEY": server.api_key, "MOUNTSEA_BASE_URL": server.url}
        print(f"FakeMountsea is serving on {server.url}; MOUNTSEA_BASE_URL points there.")

        server.add_task("producer", "song-1", ["completed"], result={"audio_url": "https://cdn.example/song-1.mp3"})
        server.add_task("xai", "video-1", ["processing"])
        _step("Read one task of each service", ["scripts/examples/get_task.py", "song-1", "video-1"], env)

        result = {"audio_url": "https://cdn.example/song-2.mp3", "duration": 92.5}
        server.add_task("producer", "song-2", ["pending", "processing", "completed"], step_seconds=2.5, result=result)
        _step("Wait for a music task, with live updates", ["scripts/examples/wait_for_music.py", "song-2"], env)

        batch = Path(tmp) / "tasks.txt"
        batch.write_text("\n".join(_script_batch(server, 200, rng)) + "\n", encoding="utf-8")
        for task_id in ("batch-3", "batch-40", "batch-41"):  # rate limits: the client backs off and carries on
            server.inject(Fault.status(429, retry_after="0.5"), task_id=task_id)
        _step(
            "Wait for 200 mixed tasks (some fail, some hit 429s)", ["scripts/examples/many_tasks.py", str(batch)], env
        )

        few = Path(tmp) / "few.txt"
        few.write_text("\n".join(_script_batch(server, 6, rng)) + "\n", encoding="utf-8")
        server.inject(Fault.status(503, retry_after="0.2"), task_id="batch-2")
        _step("The command line, on six tasks", ["-m", "mountsea", "wait", "--from", str(few), "--quiet"], env)
        print(f"\nThe fake server answered {server.request_count()} requests.")
    print(
        "\nTo use the real API, set your key and run the same code:\n"
        "  export MOUNTSEA_API_KEY=...\n"
        "  .venv/bin/python scripts/examples/get_task.py <producer-task-id> <xai-task-id>"
    )


if __name__ == "__main__":
    main()
