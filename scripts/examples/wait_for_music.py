"""Wait for one music task, printing each status change: ``python wait_for_music.py TASK_ID``."""

import sys
import time

import mountsea


def main(task_id: str) -> None:
    started = time.monotonic()

    def show(task: mountsea.Task) -> None:
        print(f"  {time.monotonic() - started:5.1f}s  {task.id}: {task.status}")

    with mountsea.Mountsea() as client:
        task = client.producer.tasks.wait(task_id, timeout=120, on_update=show)
    print(f"done: {task.result}")


if __name__ == "__main__":
    main(sys.argv[1])
