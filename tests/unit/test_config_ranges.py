"""Every numeric key has a range and every choice its required keys, checked at validation
(issue 14): the test walks the generated JSON schema, so a new key is covered without being
listed here, and a new numeric key without a bound fails."""

from __future__ import annotations

import pytest

from ume.config import config_from_dict, json_schema
from ume.errors import ConfigError

pytestmark = pytest.mark.unit

SCHEMA = json_schema()
BOUNDS = ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum")

# Numeric keys allowed to have no range. Each entry needs a comment saying why any number,
# negative included, is meaningful. Keep it empty unless that is really so.
UNBOUNDED: dict[str, str] = {}


def numeric_leaves(node=SCHEMA, path=()):
    """(path, numeric schema) for every number or integer in the config; a path element 0 is a
    list item, "X" any key of a mapping (data.real.datasets.<name>)."""
    if "properties" in node:
        for key, sub in node["properties"].items():
            yield from numeric_leaves(sub, (*path, key))
        return
    if isinstance(node.get("additionalProperties"), dict):
        yield from numeric_leaves(node["additionalProperties"], (*path, "X"))
        return
    for option in node.get("anyOf", [node]):
        if option.get("type") == "array" and "items" in option:
            yield from numeric_leaves(option["items"], (*path, 0))
        elif option.get("type") in ("integer", "number"):
            yield path, option


def requirements(node=SCHEMA, path=()):
    """(path of the section, its if/then) for every requirement in the schema."""
    for rule in node.get("allOf", []):
        yield path, rule
    for key, sub in node.get("properties", {}).items():
        yield from requirements(sub, (*path, key))


def dotted(path) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out


def nested(path, value):
    """The config mapping that sets ``path`` to ``value``."""
    for p in reversed(path):
        value = [value] if isinstance(p, int) else {p: value}
    return value


def merge(a, b):
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def just_outside(schema, bound):
    step = 1 if schema["type"] == "integer" else 1e-6
    limit = schema[bound]
    return {
        "minimum": limit - step,
        "exclusiveMinimum": limit,
        "maximum": limit + step,
        "exclusiveMaximum": limit,
    }[bound]


def flat_conditions(node, path=()):
    """{dotted path: const} of an ``if`` (or its ``allOf``), or the required leaf of a ``then``."""
    out = {}
    for part in node.get("allOf", [node]):
        for key, sub in part.get("properties", {}).items():
            if "properties" in sub:
                out.update(flat_conditions(sub, (*path, key)))
            else:
                out[(*path, key)] = sub.get("const")
    return out


CASES = [
    pytest.param(path, bound, just_outside(s, bound), id=f"{dotted(path)}-{bound}")
    for path, s in numeric_leaves()
    for bound in BOUNDS
    if bound in s
]
REQUIRED = [
    pytest.param(
        section, rule, id=f"{dotted(section)}:{dotted(next(iter(flat_conditions(rule['then']))))}"
    )
    for section, rule in requirements()
]


def test_the_walk_sees_the_config():
    assert len(CASES) > 100 and len(REQUIRED) >= 13
    paths = {dotted(p) for p, _ in numeric_leaves()}
    assert {"sft.batch_size", "eval.ks[0]", "data.real.datasets.X.cap"} <= paths
    assert {"annotate.server.timeout_s", "egrl.discriminator_server.concurrency"} <= paths


def test_every_numeric_key_has_a_range():
    missing = [
        dotted(p)
        for p, s in numeric_leaves()
        if not any(b in s for b in BOUNDS) and dotted(p) not in UNBOUNDED
    ]
    assert not missing, (
        f"numeric keys without a range (add ge/gt/le/lt in ume/config.py): {missing}"
    )


@pytest.mark.parametrize(("path", "bound", "value"), CASES)
def test_a_value_just_outside_the_range_is_refused_naming_the_key(path, bound, value):
    with pytest.raises(ConfigError) as e:
        config_from_dict(nested(path, value))
    line = next((x for x in str(e.value).splitlines() if x.startswith(dotted(path) + ": ")), "")
    assert line, f"no line names {dotted(path)}: {e.value}"
    assert "must" in line and f"got {value!r}" in line


@pytest.mark.parametrize(("section", "rule"), REQUIRED)
def test_a_choice_without_the_key_it_requires_is_refused_naming_the_key(section, rule):
    when = flat_conditions(rule["if"])
    (required,) = flat_conditions(rule["then"])
    data = {}
    for key, value in when.items():
        data = merge(data, nested((*section, *key), value))
    with pytest.raises(ConfigError) as e:
        config_from_dict(data)
    key = dotted((*section, *required))
    assert any(x.startswith(f"{key}: required when ") for x in str(e.value).splitlines()), str(
        e.value
    )


def test_every_server_url_and_model_path_is_required_by_its_choice():
    targets = {dotted((*s, *next(iter(flat_conditions(r["then"]))))) for s, r in requirements()}

    def leaves(node=SCHEMA, path=()):
        for key, sub in node.get("properties", {}).items():
            yield from leaves(sub, (*path, key)) if "properties" in sub else [(*path, key)]

    needed = {
        dotted(p)
        for p in leaves()
        if p[-1].endswith("url") or (p[-1] in ("path", "model") and p[0] != "data")
    }
    assert needed and needed <= targets, f"keys no choice requires: {sorted(needed - targets)}"
