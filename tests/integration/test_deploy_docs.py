"""The configuration reference cannot drift from the code.

docs/configuration.md carries a flag table generated from
externalip.settings.FLAGS; this test fails when the table differs from what
the code would generate. Regenerate it with

    .venv/bin/python tests/integration/test_deploy_docs.py

Every CRD field, chart value and EXTERNALIP_* variable the manifests set must
also be named somewhere in the docs.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from externalip import settings
from externalip.core import services as core_services

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
CONFIG_DOC = DOCS / "configuration.md"
BEGIN = "<!-- BEGIN FLAGS: generated from externalip.settings.FLAGS "\
        "by tests/integration/test_deploy_docs.py; do not edit by hand -->"
END = "<!-- END FLAGS -->"


def _default(flag: settings.Flag) -> str:
    if flag.name == "hostname":
        return "the OS hostname"  # computed on the machine that runs it
    if flag.kind is settings.duration:
        return f"`{flag.default:g}s`"
    if flag.kind is settings.boolean:
        return f"`{str(flag.default).lower()}`"
    return f"`{flag.default}`" if flag.default != "" else "(empty)"


def flag_table() -> str:
    rows = ["| flag | environment variable | default | programs | meaning |",
            "| --- | --- | --- | --- | --- |"]
    for flag in settings.FLAGS:
        meaning = flag.help.replace("|", "\\|")
        if flag.choices:
            meaning += " (one of " + ", ".join(f"`{c}`" for c in flag.choices) + ")"
        rows.append(f"| `--{flag.name}` | `{flag.env}` | {_default(flag)} | "
                    f"{', '.join(flag.programs)} | {meaning} |")
    return "\n".join(rows)


def generated_block() -> str:
    return f"{BEGIN}\n{flag_table()}\n{END}"


def current_block(text: str) -> str:
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[start:end]


def all_docs() -> str:
    return "\n".join(p.read_text() for p in sorted(DOCS.glob("*.md")))


def schema_fields(schema: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    for name, sub in (schema.get("properties") or {}).items():
        path = f"{prefix}.{name}" if prefix else name
        yield path
        yield from schema_fields(sub, path)
        if sub.get("type") == "array" and isinstance(sub.get("items"), dict):
            yield from schema_fields(sub["items"], path)


def test_flag_table_matches_the_code() -> None:
    text = CONFIG_DOC.read_text()
    assert current_block(text) == generated_block(), (
        "docs/configuration.md's flag table is stale: run "
        ".venv/bin/python tests/integration/test_deploy_docs.py")


def test_every_crd_field_is_documented() -> None:
    docs = CONFIG_DOC.read_text()
    missing = []
    for crd in sorted((REPO / "deploy" / "crds").glob("ip*.yaml")):
        doc = yaml.safe_load(crd.read_text())
        kind = doc["spec"]["names"]["kind"]
        schema = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for part in ("spec", "status"):
            for field in schema_fields(schema["properties"].get(part) or {}, part):
                # conditions' inner fields are the standard metav1.Condition
                if ".conditions." in field:
                    continue
                if f"`{field}`" not in docs:
                    missing.append(f"{kind} {field}")
    assert not missing, f"docs/configuration.md does not mention: {missing}"


def test_every_chart_value_is_documented() -> None:
    docs = all_docs()
    values = yaml.safe_load((REPO / "charts" / "externalip" / "values.yaml").read_text())

    def paths(d: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
        for key, value in d.items():
            path = f"{prefix}.{key}" if prefix else key
            if isinstance(value, dict) and key not in {"resources", "nodeSelector"}:
                yield from paths(value, path)
            else:
                yield path

    missing = [p for p in paths(values) if f"`{p}`" not in docs]
    assert not missing, f"docs do not mention these chart values: {missing}"


def test_every_env_var_the_manifests_set_is_documented() -> None:
    docs = all_docs()
    names = set(re.findall(r"EXTERNALIP_[A-Z0-9_]+", "".join(
        p.read_text() for p in (REPO / "deploy").rglob("*.yaml"))))
    assert names
    assert not [n for n in sorted(names) if n not in docs]


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


def test_links_between_docs_resolve() -> None:
    broken = []
    for page in sorted(DOCS.glob("*.md")):
        for target in re.findall(r"\]\(([a-z0-9_/.-]+\.md)(?:#([a-z0-9_-]+))?\)",
                                 page.read_text()):
            path, anchor = target
            linked = DOCS / path
            if not linked.exists():
                broken.append(f"{page.name} -> {path}")
            elif anchor and anchor not in {_anchor(h) for h in re.findall(
                    r"^#+ (.*)$", linked.read_text(), flags=re.MULTILINE)}:
                broken.append(f"{page.name} -> {path}#{anchor}")
    assert not broken, broken


def test_every_service_annotation_is_documented() -> None:
    docs = CONFIG_DOC.read_text()
    names = [value for name, value in vars(core_services).items()
             if name.endswith("_ANNOTATION") and isinstance(value, str)]
    assert names
    assert not [n for n in names if f"`{n}" not in docs]


def test_values_schema_is_valid_json() -> None:
    json.loads((REPO / "charts" / "externalip" / "values.schema.json").read_text())


if __name__ == "__main__":
    original = CONFIG_DOC.read_text()
    updated = original.replace(current_block(original), generated_block())
    CONFIG_DOC.write_text(updated)
    print("docs/configuration.md: flag table", "updated" if updated != original else "unchanged")
    sys.exit(0)
