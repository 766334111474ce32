"""Generate the typed clients under ``generated/`` from the vendored specs.

``python scripts/generate.py``          regenerate ``generated/`` in place
``python scripts/generate.py --check``  regenerate into a temporary directory and
                                        fail, printing a diff, if ``generated/`` differs

Each ``openapi/<service>.yaml`` becomes the package ``generated/mountsea_<service>_api``
by one run of ``openapi-python-client --meta none`` with ``openapi/generator.yaml``.
Output always goes to a fresh temporary directory first, then replaces the old
package whole, so no stale file survives a regeneration.

The one pre-processing step (``normalize_spec``) works on a temporary copy of the
spec, never on the vendored file. The generator names a module folder after an
operation's first tag and a module after its ``operationId``. The xAI spec tags its
operation ``XAI - 任务`` (a non-ASCII folder ``api/xai_任务/``) and both specs use
NestJS ids such as ``XaiTaskController_getTaskResult``. So, for every operation:

* its tags become the last segment of its path (``/xai/tasks`` -> ``tasks``);
* a ``Controller_method`` operationId keeps only ``method`` (``getTaskResult``).

Both packages thus expose ``api/tasks/get_task_result.py``: plain ASCII, and the
same path in both, which the facade relies on.

The one post-processing step adds a ``py.typed`` marker to each package.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

__all__ = ["SERVICES", "diff_trees", "generate_all", "main", "normalize_spec"]

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "openapi"
CONFIG = SPECS / "generator.yaml"
GENERATED = ROOT / "generated"
SERVICES = ("producer", "xai")
_HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def normalize_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Return ``spec`` with ASCII tags and short operation ids (see the module docstring)."""
    for path, item in (spec.get("paths") or {}).items():
        segments = [s for s in str(path).split("/") if s and not s.startswith("{")]
        tag = re.sub(r"[^a-z0-9]+", "_", segments[-1].lower()).strip("_") if segments else "default"
        for method, operation in item.items():
            if method not in _HTTP_METHODS or not isinstance(operation, dict):
                continue
            operation["tags"] = [tag or "default"]
            operation_id = operation.get("operationId")
            if isinstance(operation_id, str) and re.fullmatch(r"\w+Controller_\w+", operation_id):
                operation["operationId"] = operation_id.split("_", 1)[1]
    return spec


def _generator() -> list[str]:
    exe = Path(sys.executable).with_name("openapi-python-client")
    return [str(exe)] if exe.exists() else ["openapi-python-client"]


def generate_all(out_dir: Path) -> None:
    """Write one package per service into ``out_dir`` (which must exist)."""
    # The post hooks call `ruff`: use the pinned one next to this interpreter.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    with tempfile.TemporaryDirectory(prefix="mountsea-spec-") as scratch:
        for service in SERVICES:
            spec = yaml.safe_load((SPECS / f"{service}.yaml").read_text(encoding="utf-8"))
            normalized = Path(scratch) / f"{service}.yaml"
            normalized.write_text(
                yaml.safe_dump(normalize_spec(spec), allow_unicode=True, sort_keys=False), encoding="utf-8"
            )
            cmd = [
                *_generator(),
                "generate",
                "--path",
                str(normalized),
                "--config",
                str(CONFIG),
                "--meta",
                "none",
                "--output-path",
                str(out_dir / f"mountsea_{service}_api"),
                "--fail-on-warning",
            ]
            done = subprocess.run(cmd, cwd=scratch, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                msg = f"openapi-python-client failed for {service}:\n{done.stdout}{done.stderr}"
                raise RuntimeError(msg)
            # Post-processing: the generated code is fully annotated but `--meta none`
            # writes no PEP 561 marker, without which type checkers ignore the package.
            (out_dir / f"mountsea_{service}_api" / "py.typed").write_text("", encoding="utf-8")


def _files(root: Path) -> dict[str, Path]:
    return {
        p.relative_to(root).as_posix(): p
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def diff_trees(expected: Path, actual: Path) -> str:
    """A unified diff from ``expected`` to ``actual``; empty when they are the same."""
    want, have = _files(expected), _files(actual)
    chunks: list[str] = []
    for name in sorted(want.keys() | have.keys()):
        a = want[name].read_text(encoding="utf-8").splitlines(keepends=True) if name in want else []
        b = have[name].read_text(encoding="utf-8").splitlines(keepends=True) if name in have else []
        if a != b or (name in want) != (name in have):
            chunks.extend(difflib.unified_diff(a, b, f"expected/{name}", f"generated/{name}"))
            if name not in have:
                chunks.append(f"missing: generated/{name}\n")
            elif name not in want:
                chunks.append(f"unexpected: generated/{name}\n")
    return "".join(chunks)


def main(argv: list[str] | None = None) -> int:
    """Regenerate ``generated/``, or with ``--check`` verify it."""
    parser = argparse.ArgumentParser(description="Generate the typed clients from openapi/*.yaml.")
    parser.add_argument("--check", action="store_true", help="fail with a diff if generated/ is out of date")
    parser.add_argument("--target", type=Path, default=GENERATED, help="the generated/ folder (default: %(default)s)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mountsea-generated-") as tmp:
        fresh = Path(tmp)
        try:
            generate_all(fresh)
        except RuntimeError as exc:
            print(exc, file=sys.stderr)
            return 1
        if args.check:
            diff = diff_trees(fresh, args.target)
            if diff:
                sys.stdout.write(diff)
                print(f"\n{args.target} does not match the specs: run `make generate`.", file=sys.stderr)
                return 1
            print(f"{args.target} matches the specs.")
            return 0
        args.target.mkdir(parents=True, exist_ok=True)
        for service in SERVICES:
            package = args.target / f"mountsea_{service}_api"
            shutil.rmtree(package, ignore_errors=True)
            shutil.copytree(fresh / package.name, package)
    print(f"generated {', '.join(f'mountsea_{s}_api' for s in SERVICES)} in {args.target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
