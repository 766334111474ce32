"""Bring the OpenAPI documents in from the Mountsea docs, say what changed, regenerate.

``python scripts/update_specs.py``          fetch the docs, rewrite the specs that changed,
                                            regenerate ``generated/``, print a change report
``python scripts/update_specs.py --check``  print the report and exit 1 if the docs differ
                                            from ``openapi/``; write nothing

The pages are found through the docs index (``llms.txt``): every ``.md`` page it links to
on the docs site is fetched, and a page belongs to a vendored spec when its OpenAPI
block's fence names the spec's operation (```` ```yaml GET /xai/tasks ````), so a page
that moves is still found. The block is taken by ``scripts/extract_spec.py``, validated
with openapi-python-client's own OpenAPI model, and vendored verbatim.

The report is semantic, not a text diff (`compare`, `drift`, `report`): paths,
operations, schema fields, enum values and required-ness, each flagged breaking or not.
New specs and the regenerated code are staged in a temporary copy of the project and
moved into place only once everything succeeded.

Exit codes: 0 up to date or updated, 1 ``--check`` found a difference, 2 an error
(network, missing page, invalid document, failed generation), told in one line on stderr.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import attrs
import httpx
import pydantic
import yaml
from openapi_python_client.schema import OpenAPI

try:
    from scripts.extract_spec import ExtractError, SpecBlock, extract_spec
except ModuleNotFoundError:  # run as `python scripts/update_specs.py`: put the project root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from scripts.extract_spec import ExtractError, SpecBlock, extract_spec

__all__ = ["DEFAULT_DOCS_URL", "OPERATIONS", "Change", "UpdateError", "compare", "drift", "main", "report"]

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DOCS_URL = "https://docs.mountsea.ai"
OPERATIONS = {"producer": "GET /producer/tasks", "xai": "GET /xai/tasks"}  # service -> documented operation
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
_DEFAULT_HOST = urlsplit(DEFAULT_DOCS_URL).netloc
_LINK = re.compile(r"\]\(\s*<?([^)\s>]+)")  # the target of a Markdown link: [title](target "optional title")
_HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_DOC_KEYS = frozenset({"description", "example", "examples", "title", "default", "deprecated", "enum"})
_VARIANTS = " + ".join(OPERATIONS)  # the report section for differences between the services


class UpdateError(Exception):
    """Why the update stopped; printed as one line."""


@attrs.frozen
class Change:
    """One semantic difference between two versions of a spec."""

    kind: str  # e.g. "field added", "enum value removed"
    where: str  # e.g. "TaskResultDto.status", "GET /xai/tasks"
    detail: str = ""
    breaking: bool = False


# Discovery: index -> pages -> the block documenting each operation.


def page_urls(index: str, index_url: str, docs_url: str) -> list[str]:
    """The ``.md`` pages on the docs site that ``index`` links to, in order, without repeats.

    Relative links resolve against ``index_url``; absolute links to the default docs host
    are rebased onto ``docs_url``; links to other sites are ignored.
    """
    base = urlsplit(docs_url)
    urls: dict[str, None] = {}
    for target in _LINK.findall(index):
        parts = urlsplit(urljoin(index_url, target))
        if parts.scheme in ("http", "https") and parts.netloc == _DEFAULT_HOST:
            parts = urlsplit(docs_url.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else ""))
        if (parts.scheme, parts.netloc) == (base.scheme, base.netloc) and parts.path.endswith(".md"):
            urls[parts._replace(fragment="").geturl()] = None
    return list(urls)


def _get(client: httpx.Client, url: str) -> str:
    try:
        response = client.get(url)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        msg = f"cannot fetch {url}: {reason}"
        raise UpdateError(msg) from exc
    if response.status_code != httpx.codes.OK:
        msg = f"cannot fetch {url}: HTTP {response.status_code}"
        raise UpdateError(msg)
    return response.text


def _try_get(client: httpx.Client, url: str) -> str | UpdateError:
    try:
        return _get(client, url)
    except UpdateError as exc:
        return exc


def discover(client: httpx.Client, docs_url: str, operations: Iterable[str]) -> dict[str, tuple[str, SpecBlock]]:
    """Map each operation to ``(url, block)``: the page documenting it and its OpenAPI block.

    Pages without an OpenAPI block, or whose block names another operation, are skipped.
    """
    index_url = docs_url.rstrip("/") + "/llms.txt"
    urls = page_urls(_get(client, index_url), index_url, docs_url)
    wanted = set(operations)
    found: dict[str, tuple[str, SpecBlock]] = {}
    failures: list[UpdateError] = []
    with ThreadPoolExecutor(max_workers=8) as pool:
        pages = list(pool.map(lambda url: _try_get(client, url), urls))
    for url, page in zip(urls, pages, strict=True):
        if isinstance(page, UpdateError):
            failures.append(page)
            continue
        try:
            block = extract_spec(page, source=url)
        except ExtractError:
            continue  # not an API reference page
        if block.operation not in wanted:
            continue
        seen = found.setdefault(block.operation, (url, block))
        if seen[1].text != block.text:
            msg = f"{seen[0]} and {url} both document {block.operation}, with different specs"
            raise UpdateError(msg)
    missing = [operation for operation in sorted(wanted) if operation not in found]
    if missing:
        msg = f"missing page: no page linked from {index_url} documents {', '.join(missing)}"
        if failures:
            msg += f" ({len(failures)} linked page(s) could not be fetched, first: {failures[0]})"
        raise UpdateError(msg)
    for failure in failures:
        print(f"update_specs: warning: {failure}", file=sys.stderr)
    return found


# Validation.


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        return f"{exc.problem} (line {exc.problem_mark.line + 1} of the block)"
    return " ".join(str(exc).split())


def load_spec(text: str, *, source: str, operation: str) -> dict[str, Any]:
    """Parse ``text`` and validate it as an OpenAPI 3 document defining ``operation``."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        msg = f"{source}: the OpenAPI block is not valid YAML: {_yaml_problem(exc)}"
        raise UpdateError(msg) from exc
    if not isinstance(data, dict):
        msg = f"{source}: the OpenAPI block is not a YAML mapping"
        raise UpdateError(msg)
    try:
        OpenAPI.model_validate(data)  # the generator's own check, so it will accept what passes here
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "document"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        msg = f"{source}: invalid OpenAPI document: {where}: {first['msg']}{more}"
        raise UpdateError(msg) from exc
    if operation not in _operations(data):
        msg = f"{source}: the block is labelled {operation} but its paths do not define it"
        raise UpdateError(msg)
    return data


# The semantic comparison: pure functions of the parsed documents.


def _operations(spec: Mapping[str, Any]) -> set[str]:
    return {
        f"{method.upper()} {path}"
        for path, item in (spec.get("paths") or {}).items()
        for method in (item or {})
        if method in _HTTP_METHODS
    }


def _schemas(spec: Mapping[str, Any]) -> dict[str, Any]:
    return dict((spec.get("components") or {}).get("schemas") or {})


def _properties(schema: Mapping[str, Any]) -> dict[str, Any]:
    return dict(schema.get("properties") or {})


def _shape(schema: object) -> object:
    """A schema without its documentation and enum values: what its type is."""
    if not isinstance(schema, dict):
        return [_shape(item) for item in schema] if isinstance(schema, list) else schema
    return {
        key: {name: _shape(sub) for name, sub in value.items()}
        if key == "properties" and isinstance(value, dict)
        else _shape(value)
        for key, value in schema.items()
        if key not in _DOC_KEYS
    }


def _describe(schema: Mapping[str, Any]) -> str:
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    text = str(schema.get("type", "any"))
    if "format" in schema:
        text += f" ({schema['format']})"
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        text += f" of {_describe(schema['items'])}"
    return text + (", nullable" if schema.get("nullable") else "")


def _enum_changes(where: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    before, after = list(old.get("enum") or []), list(new.get("enum") or [])
    added = [Change("enum value added", where, repr(value)) for value in after if value not in before]
    removed = [
        Change("enum value removed", where, repr(value), breaking=True) for value in before if value not in after
    ]
    return added + removed


def _compare_schema(name: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    changes = _enum_changes(name, old, new)
    before, after = _properties(old), _properties(new)
    was_required, is_required = set(old.get("required") or ()), set(new.get("required") or ())
    for field in sorted(before.keys() | after.keys()):
        where = f"{name}.{field}"
        if field not in after:
            changes.append(Change("field removed", where, _describe(before[field]), breaking=True))
            continue
        if field not in before:
            required = field in is_required
            detail = _describe(after[field]) + (", required" if required else ", optional")
            changes.append(Change("field added", where, detail, breaking=required))
            continue
        if _shape(before[field]) != _shape(after[field]):
            detail = f"{_describe(before[field])} -> {_describe(after[field])}"
            changes.append(Change("field retyped", where, detail, breaking=True))
        changes += _enum_changes(where, before[field], after[field])
        if (field in was_required) != (field in is_required):
            kind = "field now required" if field in is_required else "field now optional"
            changes.append(Change(kind, where, breaking=True))  # the generated model's type changes either way
    return changes


def compare(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    """The semantic changes from spec ``old`` to spec ``new`` (parsed documents).

    Breaking: a path, operation, schema or field removed, a field retyped, an enum value
    removed, a field added as required or changing between required and optional.
    """
    changes: list[Change] = []
    old_paths, new_paths = set(old.get("paths") or {}), set(new.get("paths") or {})
    changes += [Change("path added", path) for path in sorted(new_paths - old_paths)]
    changes += [Change("path removed", path, breaking=True) for path in sorted(old_paths - new_paths)]
    old_ops, new_ops = _operations(old), _operations(new)
    for op in sorted(old_ops ^ new_ops):
        if op.split(" ", 1)[1] in old_paths & new_paths:  # a path added or removed says it all
            changes.append(
                Change("operation added", op) if op in new_ops else Change("operation removed", op, breaking=True)
            )
    before, after = _schemas(old), _schemas(new)
    for name in sorted(before.keys() | after.keys()):
        if name not in after:
            changes.append(Change("schema removed", name, breaking=True))
        elif name not in before:
            changes.append(Change("schema added", name))
        else:
            changes += _compare_schema(name, before[name], after[name])
    return changes


def _variants(specs: Mapping[str, Mapping[str, Any]], schema: str, field: str) -> dict[str, object]:
    """Service -> the field's shape, for the services whose ``schema`` has ``field``."""
    found = {service: _properties(_schemas(spec).get(schema) or {}).get(field) for service, spec in specs.items()}
    return {service: _shape(prop) for service, prop in found.items() if prop is not None}


def drift(
    old: Mapping[str, Mapping[str, Any]], new: Mapping[str, Mapping[str, Any]], schema: str = "TaskResultDto"
) -> list[Change]:
    """Fields of ``schema`` on which the services' specs (service -> spec) newly disagree.

    The facade merges every service's ``schema`` into one type, so a field that only some
    services have, or that they type differently, is breaking.
    """
    names = {field for spec in new.values() for field in _properties(_schemas(spec).get(schema) or {})}
    changes = []
    for field in sorted(names):
        now = _variants(new, schema, field)
        agree = len(now) == len(new) and len({repr(shape) for shape in now.values()}) == 1
        if agree or now == _variants(old, schema, field):
            continue  # the same everywhere, or already apart in the same way before
        if len(now) < len(new):
            detail = f"only in {', '.join(sorted(now))}"
        else:
            detail = "typed differently: " + "; ".join(
                f"{service}: {_describe(_properties(_schemas(new[service])[schema])[field])}" for service in sorted(now)
            )
        changes.append(Change("services drift apart", f"{schema}.{field}", detail, breaking=True))
    return changes


def report(changes_by_service: Mapping[str, Sequence[Change]]) -> str:
    """The change report, in Markdown: one section per changed spec, breaking changes marked."""
    if not changes_by_service:
        return "No changes: the vendored specs match the docs.\n"
    lines = ["# OpenAPI changes from the docs", ""]
    for service, changes in changes_by_service.items():
        lines += [f"## {service}", ""]
        if not changes:
            lines.append("- no API change (descriptions, examples or formatting only)")
        for change in changes:
            mark = "**breaking** " if change.breaking else ""
            lines.append(f"- {mark}{change.kind}: `{change.where}`" + (f" ({change.detail})" if change.detail else ""))
        lines.append("")
    breaking = sum(change.breaking for changes in changes_by_service.values() for change in changes)
    lines.append(
        f"{breaking} breaking change(s): code using what they touch needs a look."
        if breaking
        else "No breaking changes."
    )
    return "\n".join(lines) + "\n"


# Applying the update: stage everything, then move it into place.


def _regenerate(root: Path, texts: Mapping[str, str]) -> None:
    """Write the new specs and regenerate, staged in a temporary copy; then move both into place."""
    with tempfile.TemporaryDirectory(prefix="mountsea-update-") as tmp:
        stage = Path(tmp)
        shutil.copytree(root / "openapi", stage / "openapi")
        shutil.copytree(root / "scripts", stage / "scripts", ignore=shutil.ignore_patterns("__pycache__"))
        for service, text in texts.items():
            (stage / "openapi" / f"{service}.yaml").write_bytes(text.encode("utf-8"))
        # generate.py finds openapi/ next to its own scripts/ folder: run the staged copy.
        done = subprocess.run(
            [sys.executable, str(stage / "scripts" / "generate.py"), "--target", str(stage / "generated")],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            output = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
            msg = f"regenerating the clients failed (exit {done.returncode}): {output[-1] if output else 'no output'}"
            raise UpdateError(msg)
        target = root / "generated"
        packages = sorted(p.name for p in (stage / "generated").iterdir() if p.is_dir())
        for name in packages:  # the slow part first, beside the packages, so the swap below is renames only
            shutil.rmtree(target / f".{name}.new", ignore_errors=True)
            shutil.copytree(stage / "generated" / name, target / f".{name}.new")
        for name in packages:
            shutil.rmtree(target / f".{name}.old", ignore_errors=True)
            if (target / name).exists():
                (target / name).rename(target / f".{name}.old")
            (target / f".{name}.new").rename(target / name)
            shutil.rmtree(target / f".{name}.old")
        for service in texts:
            staged = root / "openapi" / f".{service}.yaml.new"
            shutil.copyfile(stage / "openapi" / f"{service}.yaml", staged)
            staged.replace(root / "openapi" / f"{service}.yaml")


def _update(args: argparse.Namespace) -> int:
    root: Path = args.root.resolve()
    docs_url = str(args.docs_url).rstrip("/")
    if urlsplit(docs_url).scheme not in ("http", "https") or not urlsplit(docs_url).netloc:
        msg = f"the docs URL must be an http(s) URL, got {docs_url!r}"
        raise UpdateError(msg)
    try:
        vendored = {s: (root / "openapi" / f"{s}.yaml").read_bytes().decode("utf-8") for s in OPERATIONS}
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"cannot read the vendored specs: {exc}"
        raise UpdateError(msg) from exc
    with httpx.Client(timeout=TIMEOUT, follow_redirects=True) as client:
        found = discover(client, docs_url, OPERATIONS.values())
    texts = {service: found[operation][1].text for service, operation in OPERATIONS.items()}
    new = {s: load_spec(texts[s], source=found[op][0], operation=op) for s, op in OPERATIONS.items()}
    changed = [service for service in OPERATIONS if texts[service] != vendored[service]]
    old = {s: load_spec(vendored[s], source=f"openapi/{s}.yaml", operation=op) for s, op in OPERATIONS.items()}
    changes: dict[str, list[Change]] = {service: compare(old[service], new[service]) for service in changed}
    if apart := drift(old, new):
        changes[_VARIANTS] = apart
    text = report(changes)
    sys.stdout.write(text)
    if args.check:
        if changed:
            print("update_specs: the docs differ from openapi/: run `make update-specs`", file=sys.stderr)
    elif changed:
        _regenerate(root, {service: texts[service] for service in changed})
        print(f"updated {', '.join(f'openapi/{s}.yaml' for s in changed)} and regenerated generated/")
    if args.report_file is not None:
        args.report_file.write_text(text, encoding="utf-8")
    return 1 if args.check and changed else 0


def main(argv: list[str] | None = None) -> int:
    """Command line: compare the docs with ``openapi/``, then update (or, with ``--check``, only report)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report; exit 1 if the docs differ")
    parser.add_argument(
        "--docs-url",
        default=os.environ.get("MOUNTSEA_DOCS_URL") or DEFAULT_DOCS_URL,
        help="the docs site, serving /llms.txt (default: $MOUNTSEA_DOCS_URL or %(default)s)",
    )
    parser.add_argument("--root", type=Path, default=ROOT, help="the project to update (default: %(default)s)")
    parser.add_argument("--report-file", type=Path, help="also write the change report (Markdown) to this file")
    args = parser.parse_args(argv)
    try:
        return _update(args)
    except (UpdateError, OSError) as exc:  # OSError: writing the specs, generated/ or the report
        print(f"update_specs: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
