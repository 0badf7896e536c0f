"""``partsbin train --example KIND``: a spec to start from, every field shown.

Each kind registers a small spec that runs on built-in data (:attr:`JobKind.example`);
this writes it out with every other field at its default, each under its description,
so a person edits values instead of reading the 120 kB JSON Schema.
"""

from __future__ import annotations

from typing import Any

import yaml

from partsbin.parts.jobs.kinds import job_kind
from partsbin.parts.jobs.settings import Settings
from partsbin.parts.jobs.spec import compact

__all__ = ["example_spec", "example_yaml"]


def example_spec(kind: str) -> dict[str, Any]:
    """The kind's example, validated, as JSON types with every field present."""
    jk = job_kind(kind)
    spec = jk.spec.model_validate({"kind": jk.name, **jk.example})
    return spec.model_dump(mode="json")


def _comment(text: str | None) -> str:
    return "".join(f"# {line}\n" for line in (text or "").splitlines() if line.strip())


def _flow(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000, allow_unicode=True)
    return text.strip().removesuffix("...").strip()


def _line(key: str, value: Any, indent: str = "") -> str:
    # One line per field, nested values in flow style without their nulls (a data spec
    # or an arch reads as one line, as in the README); a list of those, one per line.
    value = compact(value)
    if isinstance(value, list) and any(isinstance(v, dict) for v in value):
        return f"{indent}{key}:\n" + "".join(f"{indent}  - {_flow(v)}\n" for v in value)
    return f"{indent}{key}: {_flow(value)}\n"


def example_yaml(kind: str) -> str:
    jk = job_kind(kind)
    data = example_spec(kind)
    out = [
        f"# {'An' if jk.name[0] in 'aeiou' else 'A'} {jk.name} job: {jk.summary}.\n"
        "# Run it here with `partsbin train SPEC --local`, or submit it with `partsbin train SPEC`.\n"
        "# Every field is shown at its example value or default; `partsbin train --schema` describes each.\n"
    ]
    fields = jk.spec.model_fields
    shared_last = ("settings", "publish")
    for key in [k for k in data if k not in shared_last] + list(shared_last):
        out.append(_comment(fields[key].description))
        if key != "settings":
            out.append(_line(key, data[key]))
            continue
        out.append("settings:\n")
        for name, value in data[key].items():
            out.append(_comment(Settings.model_fields[name].description).replace("# ", "  # "))
            out.append(_line(name, value, indent="  "))
    return "".join(out)
