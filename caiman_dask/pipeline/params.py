"""Run parameters: CaImAn's parameter JSON, our YAML, ``CNMFParams`` objects, overrides.

One dict of CaImAn's groups (data, motion, patch, init, spatial, temporal, merging,
quality, ...) serves both engines. Unknown groups and keys are errors with a
did-you-mean (raised by the group parsers); the resolved parameters are written to the
run's output folder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from caiman_dask.cnmf.params import CNMFParams
from caiman_dask.errors import ConfigError
from caiman_dask.motion.params import MotionParams


@dataclass(frozen=True)
class RunParams:
    """Everything the main job needs: CNMF groups and the motion group."""

    cnmf: CNMFParams
    motion: MotionParams
    #: True when the user gave ``data.fr``; else the movie's recorded rate is used.
    fr_given: bool = field(default=False, compare=False)

    @classmethod
    def from_dict(cls, groups: Mapping[str, Any]) -> RunParams:
        """Build from CaImAn's nested dict ``{group: {key: value}}``."""
        if not isinstance(groups, Mapping):
            raise ConfigError(f"parameters must be a mapping of groups, got {type(groups).__name__}")
        motion = MotionParams.from_dict(groups.get("motion") or {})
        cnmf = CNMFParams.from_dict({k: v for k, v in groups.items() if k != "motion"})
        data = groups.get("data")
        given = isinstance(data, Mapping) and data.get("fr") is not None
        return cls(cnmf=cnmf, motion=motion, fr_given=given)

    def with_frame_rate(self, fr: float) -> RunParams:
        """These parameters with ``data.fr = fr`` (marked as given)."""
        data = dataclasses.replace(self.cnmf.data, fr=float(fr))
        return RunParams(cnmf=dataclasses.replace(self.cnmf, data=data), motion=self.motion,
                         fr_given=True)

    def to_dict(self) -> dict[str, Any]:
        """CaImAn's nested dict, JSON-safe."""
        return {**self.cnmf.to_dict(), "motion": self.motion.to_dict()}

    def caiman_dict(self) -> dict[str, Any]:
        """The groups as CaImAn's ``CNMFParams`` holds them (``motion.indices`` as slices),
        for results files that CaImAn's ``load_CNMF`` reads."""
        groups = self.to_dict()
        indices = groups["motion"].get("indices")
        if isinstance(indices, list):
            groups["motion"]["indices"] = tuple(slice(None) if i is None else i for i in indices)
        return groups

    def group(self, name: str) -> dict[str, Any]:
        """One group as a plain dict."""
        return self.to_dict()[name]


def read_params_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a CaImAn parameter JSON or a caiman-dask YAML file."""
    path = pathlib.Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read parameters from {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}:"
                          f" {exc}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path} must hold a mapping of parameter groups, e.g. "
                          "{'motion': {...}, 'init': {...}}")
    return dict(data)


def parse_override(text: str) -> tuple[str, str, Any]:
    """``"init.K=5"`` -> ``("init", "K", 5)`` (values parsed as YAML)."""
    name, sep, value = text.partition("=")
    group, dot, key = name.strip().partition(".")
    if not sep or not dot or not group or not key:
        raise ConfigError(f"override {text!r}: write GROUP.KEY=VALUE, e.g. init.K=5")
    try:
        return group, key, yaml.safe_load(value)
    except yaml.YAMLError:
        raise ConfigError(f"override {text!r}: {value!r} is not a value") from None


def resolve_params(source: Any = None, overrides: Sequence[str] = (),
                   defaults: Mapping[str, Any] | None = None) -> RunParams:
    """Parameters from a file, dict, RunParams or CaImAn ``CNMFParams``, then overrides.

    Parameters
    ----------
    source : path, dict, RunParams or object with ``to_dict()``, optional
        CaImAn's JSON (as its demos write it), our YAML, a nested dict, or a CaImAn
        ``CNMFParams`` object.
    overrides : sequence of str
        ``GROUP.KEY=VALUE`` strings applied last.
    defaults : dict, optional
        Groups used where ``source`` says nothing.
    """
    groups: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (defaults or {}).items()}
    for name, values in _as_groups(source).items():
        if not isinstance(values, Mapping):
            raise ConfigError(f"parameter group {name!r} must be a mapping, got {values!r}")
        groups.setdefault(name, {}).update(values)
    for text in overrides:
        group, key, value = parse_override(text)
        groups.setdefault(group, {})[key] = value
    return RunParams.from_dict(groups)


def _as_groups(source: Any) -> dict[str, Any]:
    if source is None:
        return {}
    if isinstance(source, RunParams):
        groups = source.to_dict()
        if not source.fr_given:
            groups["data"].pop("fr", None)
        return groups
    if isinstance(source, (str, os.PathLike)):
        return read_params_file(source)
    if isinstance(source, Mapping):
        return dict(source)
    if hasattr(source, "to_dict"):  # CaImAn's CNMFParams
        return dict(source.to_dict())
    raise ConfigError(f"cannot take parameters from a {type(source).__name__}: give a JSON or "
                      "YAML path, a dict of groups, or a CaImAn CNMFParams")
