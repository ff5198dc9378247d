"""Configuration: package defaults in dask's config, precedence written once.

The package YAML ``caiman-dask.yaml`` is loaded into ``dask.config`` under the
``caiman-dask`` key as defaults, so a user's dask YAML files, ``DASK_CAIMAN_DASK__*``
environment variables and ``dask.config.set`` override it. :func:`get` applies the
one precedence rule: explicit argument > dask config > package default.
"""

from __future__ import annotations

import pathlib
from typing import Any

import dask.config
import yaml

NAMESPACE = "caiman-dask"
DEFAULTS_FILE = pathlib.Path(__file__).with_name("caiman-dask.yaml")
SCHEMA_FILE = pathlib.Path(__file__).with_name("caiman-dask-schema.yaml")


def _load_defaults() -> dict[str, Any]:
    with DEFAULTS_FILE.open() as fh:
        data = yaml.safe_load(fh)
    dask.config.update_defaults(data)
    return data


DEFAULTS: dict[str, Any] = _load_defaults()


def get(key: str, value: Any = None) -> Any:
    """Resolve a setting: ``value`` if given, else dask config, else the default.

    Parameters
    ----------
    key : str
        Dotted key below ``caiman-dask``, e.g. ``"cluster.threads-per-worker"``.
    value : Any, optional
        The caller's explicit argument; ``None`` means "not given".

    Returns
    -------
    Any
        The resolved value.
    """
    if value is not None:
        return value
    return dask.config.get(f"{NAMESPACE}.{key}")


def resolved() -> dict[str, Any]:
    """Return the whole resolved ``caiman-dask`` configuration as a plain dict."""
    return dict(dask.config.get(NAMESPACE))
