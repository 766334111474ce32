"""Read one task of each service: ``python get_task.py PRODUCER_TASK_ID XAI_TASK_ID``.

Uses MOUNTSEA_API_KEY and MOUNTSEA_BASE_URL from the environment.
"""

import sys

import mountsea


def main(producer_id: str, xai_id: str) -> None:
    with mountsea.Mountsea() as client:
        for task in (client.producer.tasks.get(producer_id), client.xai.tasks.get(xai_id)):
            print(f"{task.service:>8} {task.id}: {task.status}  result={task.result}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
