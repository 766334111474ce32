"""scripts/update_specs.py: discover the pages, report what changed, update atomically or not at all."""

from __future__ import annotations

import copy
import functools
import http.server
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from scripts.update_specs import Change, compare, drift, main, page_urls, report

ROOT = Path(__file__).resolve().parent.parent
DOCS = Path(__file__).resolve().parent / "fixtures" / "docs"  # copies of the Mountsea docs pages
PRODUCER_PAGE = "api-reference/producer/get-task.md"
XAI_PAGE = "api-reference/xai/get-task.md"
INDEX = f"""# Mountsea

> The Mountsea AI API.

## API reference

- [获取任务状态](https://docs.mountsea.ai/{PRODUCER_PAGE}): 查询任务状态和结果
- [获取任务结果]({XAI_PAGE})
- [Generate music](/api-reference/producer/audios.md): submit a generation
- [Quickstart](https://docs.mountsea.ai/quickstart.md#install)
- [Elsewhere](https://example.invalid/page.md)
"""
DECOY = """# Generate music

````yaml POST /producer/audios
openapi: 3.0.0
info: {title: Producer, version: 2.0.0}
paths:
  /producer/audios:
    post:
      responses: {'200': {description: ok}}
````
"""
QUICKSTART = "# Quickstart\n\n```yaml\napiKey: sk-...\n```\n"


def _evolve(page: str) -> str:
    """The xAI page after the API gained a `queued` status and an optional `progress` field."""
    page = page.replace("            - timeout\n", "            - timeout\n            - queued\n", 1)
    return page.replace(
        "          description: 追踪 ID\n",
        "          description: 追踪 ID\n        progress:\n          type: number\n",
        1,
    )


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class Docs:
    """A docs site on 127.0.0.1 served from a folder; tests edit its files."""

    def __init__(self, folder: Path, url: str) -> None:
        self.folder, self.url = folder, url

    def read(self, name: str) -> str:
        return (self.folder / name).read_text(encoding="utf-8")

    def write(self, name: str, text: str) -> None:
        (self.folder / name).parent.mkdir(parents=True, exist_ok=True)
        (self.folder / name).write_text(text, encoding="utf-8")


@pytest.fixture
def docs(tmp_path: Path) -> Iterator[Docs]:
    site = Docs(tmp_path / "site", "")
    site.write("llms.txt", INDEX)
    site.write(PRODUCER_PAGE, (DOCS / "producer-get-task.md").read_text(encoding="utf-8"))
    site.write(XAI_PAGE, (DOCS / "xai-get-task.md").read_text(encoding="utf-8"))
    site.write("api-reference/producer/audios.md", DECOY)
    site.write("quickstart.md", QUICKSTART)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site.folder)))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    site.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield site
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the project's specs, scripts and generated code to update."""
    copy_root = tmp_path / "project"
    for folder in ("openapi", "scripts", "generated"):
        shutil.copytree(ROOT / folder, copy_root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return copy_root


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# The whole flow against the local docs site.


def test_unchanged_docs_write_nothing(
    docs: Docs, project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _tree(project)
    monkeypatch.setenv("MOUNTSEA_DOCS_URL", docs.url)  # the environment names the docs site
    assert _run(capsys, "--check", "--root", str(project)) == (
        0,
        "No changes: the vendored specs match the docs.\n",
        "",
    )
    code, out, err = _run(capsys, "--root", str(project))
    assert (code, err) == (0, "")
    assert "No changes" in out
    assert _tree(project) == before


def test_runs_as_a_script_from_the_makefile(docs: Docs, project: Path) -> None:
    done = subprocess.run(
        [sys.executable, "scripts/update_specs.py", "--check", "--docs-url", docs.url, "--root", str(project)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")


def test_a_moved_page_is_still_found(docs: Docs, project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    docs.write("reference/v2/xai-task-result.md", docs.read(XAI_PAGE))
    (docs.folder / XAI_PAGE).unlink()
    docs.write("llms.txt", INDEX.replace(f"({XAI_PAGE})", "(https://docs.mountsea.ai/reference/v2/xai-task-result.md)"))
    assert _run(capsys, "--check", "--docs-url", docs.url, "--root", str(project))[0] == 0


def test_check_reports_a_change_and_writes_nothing(
    docs: Docs, project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs.write(XAI_PAGE, _evolve(docs.read(XAI_PAGE)))
    before = _tree(project)
    code, out, err = _run(
        capsys, "--check", "--docs-url", docs.url, "--root", str(project), "--report-file", str(tmp_path / "r.md")
    )
    assert code == 1
    assert "## xai\n" in out
    assert "## producer\n" not in out
    assert "- enum value added: `TaskResultDto.status` ('queued')" in out
    assert "- field added: `TaskResultDto.progress` (number, optional)" in out
    assert "- **breaking** services drift apart: `TaskResultDto.progress` (only in xai)" in out
    assert "run `make update-specs`" in err
    assert (tmp_path / "r.md").read_text(encoding="utf-8") == out
    assert _tree(project) == before


def test_update_rewrites_the_spec_and_regenerates(
    docs: Docs, project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = _evolve(docs.read(XAI_PAGE))
    docs.write(XAI_PAGE, page)
    before = _tree(project)
    report_file = tmp_path / "report.md"
    code, out, err = _run(capsys, "--docs-url", docs.url, "--root", str(project), "--report-file", str(report_file))
    assert (code, err) == (0, "")
    assert "enum value added: `TaskResultDto.status` ('queued')" in report_file.read_text(encoding="utf-8")
    assert out.endswith("updated openapi/xai.yaml and regenerated generated/\n")

    after = _tree(project)
    block = page.split("````yaml GET /xai/tasks\n", 1)[1].split("````", 1)[0]
    assert after["openapi/xai.yaml"] == block.encode()  # verbatim, as the extractor returns it
    changed = {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}
    assert changed == {
        "openapi/xai.yaml",
        "generated/mountsea_xai_api/models/task_result_dto.py",
        "generated/mountsea_xai_api/models/task_result_dto_status.py",
    }
    assert 'QUEUED = "queued"' in after["generated/mountsea_xai_api/models/task_result_dto_status.py"].decode()
    assert "progress: float | Unset" in after["generated/mountsea_xai_api/models/task_result_dto.py"].decode()
    assert not [p for p in (project / "generated").iterdir() if p.name.startswith(".")]  # no staging leftovers

    assert _run(capsys, "--check", "--docs-url", docs.url, "--root", str(project))[0] == 0  # now up to date


def _closed_port(docs: Docs, project: Path) -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _replace_xai(old: str, new: str) -> Callable[[Docs, Path], str]:
    def breaks(docs: Docs, project: Path) -> str:
        docs.write(XAI_PAGE, docs.read(XAI_PAGE).replace(old, new, 1))
        return docs.url

    return breaks


def _no_index(docs: Docs, project: Path) -> str:
    (docs.folder / "llms.txt").unlink()
    return docs.url


def _unlisted(docs: Docs, project: Path) -> str:
    docs.write("llms.txt", INDEX.replace(f"- [获取任务结果]({XAI_PAGE})\n", ""))
    return docs.url


def _conflict(docs: Docs, project: Path) -> str:
    docs.write("old/xai.md", docs.read(XAI_PAGE).replace("title: Xai AI", "title: Xai"))
    docs.write("llms.txt", INDEX + "- [Old](old/xai.md)\n")
    return docs.url


def _generator_fails(docs: Docs, project: Path) -> str:
    docs.write(XAI_PAGE, _evolve(docs.read(XAI_PAGE)))
    (project / "scripts" / "generate.py").write_text("import sys\nsys.exit('generator exploded')\n", encoding="utf-8")
    return docs.url


@pytest.mark.parametrize(
    ("breaks", "message"),
    [
        pytest.param(_closed_port, "cannot fetch http://127.0.0.1:", id="unreachable"),
        pytest.param(_no_index, "/llms.txt: HTTP 404", id="index-404"),
        pytest.param(_unlisted, "missing page: no page linked from http://127.0.0.1:", id="missing-page"),
        pytest.param(
            _replace_xai("paths:\n  /xai/tasks:", "paths:\n  - /xai/tasks:"),
            "invalid OpenAPI document: paths: Input should be a valid dictionary",
            id="paths-is-a-list",
        ),
        pytest.param(_replace_xai("info:\n", "info: {title: [\n"), "is not valid YAML", id="not-yaml"),
        pytest.param(
            _replace_xai("  /xai/tasks:\n", "  /xai/task:\n"),
            "labelled GET /xai/tasks but its paths do not define it",
            id="wrong-operation",
        ),
        pytest.param(_conflict, "both document GET /xai/tasks, with different specs", id="two-pages-disagree"),
        pytest.param(_generator_fails, "regenerating the clients failed (exit 1): generator exploded", id="generator"),
    ],
)
def test_failures_are_one_line_exit_2_and_touch_nothing(
    docs: Docs,
    project: Path,
    capsys: pytest.CaptureFixture[str],
    breaks: Callable[[Docs, Path], str],
    message: str,
) -> None:
    url = breaks(docs, project)
    before = _tree(project)
    code, _, err = _run(capsys, "--docs-url", url, "--root", str(project))
    assert code == 2
    assert err.startswith("update_specs: ")
    assert err.endswith("\n")
    assert err.count("\n") == 1, err
    assert message in err
    assert _tree(project) == before


def test_page_urls_resolve_rebase_and_filter() -> None:
    index = (
        '- [a](https://docs.mountsea.ai/a.md)\n- [b [beta]](b.md#top)\n- [c](/c/c.md "C")\n'
        "- [a again](https://docs.mountsea.ai/a.md)\n- [other site](https://example.invalid/x.md)\n"
        "- [not a page](https://docs.mountsea.ai/logo.png)\n"
    )
    docs = "http://127.0.0.1:9/mirror"
    assert page_urls(index, f"{docs}/llms.txt", docs) == [
        f"{docs}/a.md",
        f"{docs}/b.md",
        "http://127.0.0.1:9/c/c.md",
    ]


# The comparison, unit by unit.

BASE: dict[str, Any] = {
    "openapi": "3.0.0",
    "info": {"title": "T", "version": "1"},
    "paths": {"/xai/tasks": {"get": {"responses": {"200": {"description": "ok"}}}}},
    "components": {
        "schemas": {
            "TaskResultDto": {
                "type": "object",
                "properties": {
                    "taskId": {"type": "string"},
                    "status": {"type": "string", "enum": ["pending", "completed"]},
                    "errorCode": {"type": "number", "description": "错误代码"},
                },
                "required": ["taskId", "status"],
            }
        }
    },
}


def _dto(spec: dict[str, Any]) -> dict[str, Any]:
    dto: dict[str, Any] = spec["components"]["schemas"]["TaskResultDto"]
    return dto


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        pytest.param(lambda s: s["paths"].update({"/xai/jobs": {}}), [("path added", "/xai/jobs", False)], id="path+"),
        pytest.param(lambda s: s["paths"].clear(), [("path removed", "/xai/tasks", True)], id="path-"),
        pytest.param(
            lambda s: s["paths"]["/xai/tasks"].update({"post": {}}),
            [("operation added", "POST /xai/tasks", False)],
            id="operation+",
        ),
        pytest.param(
            lambda s: s["paths"].update({"/xai/tasks": {"put": {}}}),
            [("operation removed", "GET /xai/tasks", True), ("operation added", "PUT /xai/tasks", False)],
            id="operation-",
        ),
        pytest.param(
            lambda s: s["components"]["schemas"].update({"Job": {}}), [("schema added", "Job", False)], id="schema+"
        ),
        pytest.param(lambda s: s["components"].clear(), [("schema removed", "TaskResultDto", True)], id="schema-"),
        pytest.param(
            lambda s: _dto(s)["properties"].update({"progress": {"type": "number"}}),
            [("field added", "TaskResultDto.progress", False)],
            id="field+",
        ),
        pytest.param(
            lambda s: (
                _dto(s)["properties"].update({"traceId": {"type": "string"}}),
                _dto(s)["required"].append("traceId"),
            ),
            [("field added", "TaskResultDto.traceId", True)],
            id="required-field+",
        ),
        pytest.param(
            lambda s: _dto(s)["properties"].pop("errorCode"),
            [("field removed", "TaskResultDto.errorCode", True)],
            id="field-",
        ),
        pytest.param(
            lambda s: _dto(s)["properties"]["errorCode"].update({"type": "string"}),
            [("field retyped", "TaskResultDto.errorCode", True)],
            id="retyped",
        ),
        pytest.param(
            lambda s: _dto(s)["properties"]["status"]["enum"].append("queued"),
            [("enum value added", "TaskResultDto.status", False)],
            id="enum+",
        ),
        pytest.param(
            lambda s: _dto(s)["properties"]["status"]["enum"].remove("pending"),
            [("enum value removed", "TaskResultDto.status", True)],
            id="enum-",
        ),
        pytest.param(
            lambda s: _dto(s)["required"].append("errorCode"),
            [("field now required", "TaskResultDto.errorCode", True)],
            id="now-required",
        ),
        pytest.param(
            lambda s: _dto(s)["required"].remove("status"),
            [("field now optional", "TaskResultDto.status", True)],
            id="now-optional",
        ),
        pytest.param(
            lambda s: _dto(s)["properties"]["errorCode"].update({"description": "error code", "example": 3}),
            [],
            id="docs-only",
        ),
    ],
)
def test_compare_names_each_change_and_whether_it_breaks(
    edit: Callable[[dict[str, Any]], object], expected: list[tuple[str, str, bool]]
) -> None:
    new = copy.deepcopy(BASE)
    edit(new)
    assert [(c.kind, c.where, c.breaking) for c in compare(BASE, new)] == expected
    assert compare(BASE, copy.deepcopy(BASE)) == []


def test_compare_details() -> None:
    new = copy.deepcopy(BASE)
    _dto(new)["properties"]["errorCode"] = {"type": "string", "format": "date-time", "nullable": True}
    _dto(new)["properties"]["status"]["enum"] = ["completed", "queued"]
    assert compare(BASE, new) == [
        Change("field retyped", "TaskResultDto.errorCode", "number -> string (date-time), nullable", breaking=True),
        Change("enum value added", "TaskResultDto.status", "'queued'"),
        Change("enum value removed", "TaskResultDto.status", "'pending'", breaking=True),
    ]


def test_drift_flags_fields_the_services_newly_disagree_on() -> None:
    renamed = copy.deepcopy(BASE)
    _dto(renamed)["properties"]["error"] = _dto(renamed)["properties"].pop("errorCode")
    retyped = copy.deepcopy(BASE)
    _dto(retyped)["properties"]["errorCode"]["type"] = "string"
    old = {"producer": BASE, "xai": BASE}

    assert drift(old, old) == []
    assert drift(old, {"producer": BASE, "xai": renamed}) == [
        Change("services drift apart", "TaskResultDto.error", "only in xai", breaking=True),
        Change("services drift apart", "TaskResultDto.errorCode", "only in producer", breaking=True),
    ]
    assert drift(old, {"producer": BASE, "xai": retyped}) == [
        Change(
            "services drift apart",
            "TaskResultDto.errorCode",
            "typed differently: producer: number; xai: string",
            breaking=True,
        )
    ]
    apart = {"producer": BASE, "xai": renamed}
    assert drift(apart, apart) == []  # already apart: not a change


def test_report_marks_breaking_changes() -> None:
    assert report({}) == "No changes: the vendored specs match the docs.\n"
    text = report(
        {
            "producer": [],
            "xai": [Change("field added", "T.p", "number, optional"), Change("field removed", "T.e", breaking=True)],
        }
    )
    assert text == (
        "# OpenAPI changes from the docs\n\n"
        "## producer\n\n- no API change (descriptions, examples or formatting only)\n\n"
        "## xai\n\n- field added: `T.p` (number, optional)\n- **breaking** field removed: `T.e`\n\n"
        "1 breaking change(s): code using what they touch needs a look.\n"
    )
