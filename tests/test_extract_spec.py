"""scripts/extract_spec.py: exactly one OpenAPI document per docs page, verbatim."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scripts.extract_spec import ExtractError, extract_spec

ROOT = Path(__file__).resolve().parent.parent
# Copies of the Mountsea docs pages (November 2026), kept with the tests so that a clone
# alone can run them; `make update-specs` is how newer pages come in.
DOCS = ROOT / "tests" / "fixtures" / "docs"
PAGES = {"producer": "producer-get-task.md", "xai": "xai-get-task.md"}
OPERATIONS = {"producer": "GET /producer/tasks", "xai": "GET /xai/tasks"}

SPEC = "openapi: 3.0.0\ninfo:\n  title: T\n  version: '1'\npaths: {}\n"


def _page(*blocks: str) -> str:
    return "# A page\n\nSome prose.\n\n" + "\n\nMore prose.\n\n".join(blocks) + "\n"


@pytest.mark.parametrize("service", sorted(PAGES))
def test_vendored_spec_is_the_verbatim_extract_of_its_page(service: str) -> None:
    page = DOCS / PAGES[service]
    block = extract_spec(page.read_text(encoding="utf-8"))
    assert block.operation == OPERATIONS[service]
    assert block.text == (ROOT / "openapi" / f"{service}.yaml").read_text(encoding="utf-8")
    assert yaml.safe_load(block.text)["openapi"].startswith("3.")


def test_four_backtick_fence_keeps_inner_three_backtick_text() -> None:
    spec = SPEC + "description: |\n  ```\n  not a fence end\n  ```\n"
    block = extract_spec(_page(f"````yaml GET /x\n{spec}````"))
    assert block.text == spec
    assert block.operation == "GET /x"


def test_yaml_blocks_that_are_not_openapi_are_ignored() -> None:
    page = _page("```yaml\nkey: value\n```", f"```yaml\n{SPEC}```")
    assert extract_spec(page).text == SPEC
    assert extract_spec(page).operation is None


@pytest.mark.parametrize(
    ("page", "message"),
    [
        (_page("no blocks at all"), "no OpenAPI block found"),
        (_page("```yaml\nkey: value\n```"), "no OpenAPI block found"),
        (_page(f"```json\n{SPEC}```"), "no OpenAPI block found"),
        (
            _page(f"````yaml GET /a\n{SPEC}````", f"```yaml GET /b\n{SPEC}```"),
            "2 OpenAPI blocks found (GET /a, GET /b)",
        ),
        (_page(f"````yaml GET /a\n{SPEC}"), "never closed"),
    ],
    ids=["none", "yaml-not-openapi", "json-fence", "two", "unclosed"],
)
def test_pages_without_exactly_one_block_fail_clearly(page: str, message: str) -> None:
    with pytest.raises(ExtractError, match=message.replace("(", r"\(").replace(")", r"\)")):
        extract_spec(page)


def test_command_line_writes_the_spec_and_reports_errors_in_one_line(tmp_path: Path) -> None:
    good, bad, out = tmp_path / "good.md", tmp_path / "bad.md", tmp_path / "out.yaml"
    good.write_text(_page(f"````yaml GET /x\n{SPEC}````"), encoding="utf-8")
    bad.write_text(_page("nothing here"), encoding="utf-8")
    script = str(ROOT / "scripts" / "extract_spec.py")

    ok = subprocess.run([sys.executable, script, str(good), str(out)], capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    assert out.read_text(encoding="utf-8") == SPEC

    failed = subprocess.run([sys.executable, script, str(bad), "-"], capture_output=True, text=True, check=False)
    assert failed.returncode == 1
    assert failed.stdout == ""
    assert failed.stderr.strip().splitlines() == [
        f"extract_spec: {bad}: no OpenAPI block found (expected one ```yaml block starting with 'openapi: 3.x')"
    ]
