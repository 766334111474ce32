"""scripts/generate.py: reproducible output, a check that catches drift, ASCII module paths."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scripts.generate import GENERATED, SERVICES, diff_trees, normalize_spec

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = str(ROOT / "scripts" / "generate.py")


def _check(target: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, SCRIPT, "--check", "--target", str(target)], capture_output=True, text=True, check=False
    )


@pytest.fixture(scope="module")
def generated_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pristine copy of generated/ that each test copies again before editing."""
    copy = tmp_path_factory.mktemp("pristine") / "generated"
    shutil.copytree(GENERATED, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def test_check_passes_on_the_committed_tree_and_fails_on_a_hand_edit(generated_copy: Path, tmp_path: Path) -> None:
    assert _check(generated_copy).returncode == 0

    edited = tmp_path / "generated"
    shutil.copytree(generated_copy, edited)
    module = edited / "mountsea_xai_api" / "models" / "task_result_dto.py"
    module.write_text(module.read_text(encoding="utf-8").replace("task_id: str", "task_id: int"), encoding="utf-8")

    result = _check(edited)
    assert result.returncode == 1
    assert "-    task_id: str" in result.stdout
    assert "+    task_id: int" in result.stdout
    assert "does not match the specs: run `make generate`" in result.stderr


def test_check_fails_on_a_stale_or_a_missing_file(generated_copy: Path, tmp_path: Path) -> None:
    edited = tmp_path / "generated"
    shutil.copytree(generated_copy, edited)
    (edited / "mountsea_producer_api" / "models" / "old_model.py").write_text("x = 1\n", encoding="utf-8")
    (edited / "mountsea_producer_api" / "py.typed").unlink()
    diff = diff_trees(generated_copy, edited)
    assert "unexpected: generated/mountsea_producer_api/models/old_model.py" in diff
    assert "missing: generated/mountsea_producer_api/py.typed" in diff
    assert _check(edited).returncode == 1


def test_generation_into_a_fresh_folder_writes_exactly_the_committed_tree(tmp_path: Path) -> None:
    target = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, SCRIPT, "--target", str(target)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert diff_trees(GENERATED, target) == ""


def test_every_generated_path_is_ascii_and_names_what_it_is() -> None:
    files = sorted(p.relative_to(GENERATED).as_posix() for p in GENERATED.rglob("*") if "__pycache__" not in p.parts)
    assert all(name.isascii() for name in files), [n for n in files if not n.isascii()]
    for service in SERVICES:
        assert f"mountsea_{service}_api/api/tasks/get_task_result.py" in files
        assert f"mountsea_{service}_api/py.typed" in files
    assert not [n for n in files if ".ruff_cache" in n]


def test_normalize_spec_rewrites_tags_and_controller_ids_only() -> None:
    spec = yaml.safe_load((ROOT / "openapi" / "xai.yaml").read_text(encoding="utf-8"))
    operation = normalize_spec(spec)["paths"]["/xai/tasks"]["get"]
    assert operation["tags"] == ["tasks"]
    assert operation["operationId"] == "getTaskResult"
    other = normalize_spec(
        {"paths": {"/a/{id}/Sound-Files": {"post": {"operationId": "uploadFile"}, "parameters": []}}}
    )
    assert other["paths"]["/a/{id}/Sound-Files"]["post"] == {"tags": ["sound_files"], "operationId": "uploadFile"}
