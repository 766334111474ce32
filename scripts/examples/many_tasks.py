"""Wait for many tasks of both services at once: ``python many_tasks.py FILE``.

FILE has one ``SERVICE TASK_ID`` per line. Tasks are printed as they finish; a summary follows.
"""

import collections
import sys
import time

import mountsea


def main(path: str) -> None:
    with open(path, encoding="utf-8") as lines:
        refs = [mountsea.TaskRef(*line.split()) for line in lines if line.strip()]
    started = time.monotonic()
    outcomes: collections.Counter[str] = collections.Counter()
    with mountsea.Mountsea() as client:
        for n, task in enumerate(client.as_completed(refs, timeout=300, max_concurrency=32), 1):
            outcomes[task.status] += 1
            if n % 50 == 0 or (not task.succeeded and outcomes[task.status] <= 2):
                print(f"  {n:>4}/{len(refs)} finished; latest: {task.service} {task.id} {task.status}")
    summary = ", ".join(f"{count} {status}" for status, count in outcomes.most_common())
    print(f"{len(refs)} tasks in {time.monotonic() - started:.1f}s: {summary}")


if __name__ == "__main__":
    main(sys.argv[1])
