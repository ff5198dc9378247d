"""The package YAML, its schema, and the one precedence rule."""

from __future__ import annotations

import dask.config
import jsonschema
import yaml

from caiman_dask import config


def _leaves(tree: dict, prefix: str = "") -> set[str]:
    out = set()
    for key, value in tree.items():
        if isinstance(value, dict) and key != "memory":
            out |= _leaves(value, f"{prefix}{key}.")
        else:
            out.add(f"{prefix}{key}")
    return out


def _schema_leaves(schema: dict, prefix: str = "") -> set[str]:
    out = set()
    for key, sub in schema.get("properties", {}).items():
        if sub.get("type") == "object" and key != "memory":
            out |= _schema_leaves(sub, f"{prefix}{key}.")
        else:
            out.add(f"{prefix}{key}")
    return out


def test_schema_describes_every_default_and_nothing_else():
    defaults = config.DEFAULTS[config.NAMESPACE]
    schema = yaml.safe_load(config.SCHEMA_FILE.read_text())
    assert _leaves(defaults) == _schema_leaves(schema)
    jsonschema.validate(defaults, schema)


def test_every_schema_property_has_a_description_or_is_a_memory_fraction():
    schema = yaml.safe_load(config.SCHEMA_FILE.read_text())
    for name, group in schema["properties"].items():
        if "properties" not in group:  # a top-level key, e.g. engine
            assert "description" in group, name
            continue
        for key, sub in group["properties"].items():
            assert "description" in sub, key


def test_schema_rejects_a_bad_value():
    schema = yaml.safe_load(config.SCHEMA_FILE.read_text())
    bad = {"cluster": {"threads-per-worker": 0}}
    try:
        jsonschema.validate(bad, schema)
    except jsonschema.ValidationError:
        return
    raise AssertionError("threads-per-worker 0 passed the schema")


def test_precedence_argument_then_dask_config_then_default():
    assert config.get("cluster.threads-per-worker") == 1
    with dask.config.set({"caiman-dask.cluster.threads-per-worker": 3}):
        assert config.get("cluster.threads-per-worker") == 3
        assert config.get("cluster.threads-per-worker", 2) == 2
    assert config.get("cluster.threads-per-worker") == 1
