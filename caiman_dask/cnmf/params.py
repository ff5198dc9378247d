"""CNMF parameters: CaImAn's ``CNMFParams`` groups as small frozen dataclasses.

Names and defaults follow CaImAn 1.12 so one JSON parameter file serves both engines.
Keys that CaImAn knows but the built-in engine does not use (solver choices, CNMF-E and
online options, ...) are accepted and kept so a round trip through ``to_dict`` is loss-free;
they are listed in each group's ``UNUSED`` tuple. ``quality.use_cnn`` must be ``False``: the
built-in engine has no CNN classifier (``validate`` says so); use the CaImAn engine for it.

CaImAn groups that belong to other stages (``motion``, ``online``, ``ring_CNN``) are accepted
by :meth:`CNMFParams.from_dict` and kept verbatim in ``CNMFParams.other``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from caiman_dask.cnmf.param_groups import (
    GROUPS,
    PASSTHROUGH_GROUPS,
    DataParams,
    InitParams,
    MergingParams,
    PatchParams,
    PreprocessParams,
    QualityParams,
    SpatialParams,
    TemporalParams,
)
from caiman_dask.errors import ConfigError, did_you_mean

__all__ = [
    "CNMFParams", "DataParams", "InitParams", "MergingParams", "PatchParams",
    "PreprocessParams", "QualityParams", "SpatialParams", "TemporalParams",
]


def _coerce(value: Any) -> Any:
    """Turn JSON lists into tuples (recursively) so frozen dataclasses stay hashable."""
    if isinstance(value, list | tuple):
        return tuple(_coerce(v) for v in value)
    if hasattr(value, "tolist"):
        return _coerce(value.tolist())
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _unknown(kind: str, name: str, known: list[str], where: str) -> ConfigError:
    hint = did_you_mean(name, known)
    return ConfigError(f"unknown CNMF parameter {kind} {name!r}{where}.{hint} "
                       f"Known: {', '.join(sorted(known))}.")


def _build_group(name: str, values: Mapping[str, Any]) -> Any:
    cls = GROUPS[name]
    known = [f.name for f in dataclasses.fields(cls)]
    for key in values:
        if key not in known:
            raise _unknown("key", key, known, f" in group {name!r}")
    return cls(**{k: _coerce(v) for k, v in values.items()})


@dataclasses.dataclass(frozen=True)
class CNMFParams:
    """All CNMF parameters, grouped like CaImAn's ``CNMFParams``.

    Build it from CaImAn's nested dict with :meth:`from_dict`, check it against the movie
    with :meth:`validate`, write it back with :meth:`to_dict` (JSON-serialisable).
    """

    data: DataParams = DataParams()
    patch: PatchParams = PatchParams()
    preprocess: PreprocessParams = PreprocessParams()
    init: InitParams = InitParams()
    spatial: SpatialParams = SpatialParams()
    temporal: TemporalParams = TemporalParams()
    merging: MergingParams = MergingParams()
    quality: QualityParams = QualityParams()
    other: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def from_dict(cls, d: Mapping[str, Mapping[str, Any]]) -> CNMFParams:
        """Build parameters from CaImAn's nested dict ``{group: {key: value}}``.

        Raises
        ------
        ConfigError
            For an unknown group or key (with a did-you-mean suggestion) or a group that
            is not a mapping.
        """
        groups: dict[str, Any] = {}
        other = []
        for name, values in d.items():
            if name in PASSTHROUGH_GROUPS:
                other.append((name, _coerce_mapping(values)))
                continue
            if name not in GROUPS:
                raise _unknown("group", name, list(GROUPS) + list(PASSTHROUGH_GROUPS), "")
            if not isinstance(values, Mapping):
                raise ConfigError(f"CNMF parameter group {name!r} must be a mapping of "
                                  f"key -> value, got {type(values).__name__}")
            groups[name] = _build_group(name, values)
        return cls(**groups, other=tuple(other))

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Return CaImAn's nested dict (JSON-serialisable: tuples become lists)."""
        out = {name: _jsonable(dataclasses.asdict(getattr(self, name))) for name in GROUPS}
        for name, values in self.other:
            out[name] = _jsonable(dict(values))
        return out

    def replace(self, **groups: Mapping[str, Any]) -> CNMFParams:
        """Return a copy with some keys of some groups changed, e.g. ``init={'K': 5}``."""
        new = {}
        for name, values in groups.items():
            if name not in GROUPS:
                raise _unknown("group", name, list(GROUPS), "")
            merged = {**dataclasses.asdict(getattr(self, name)), **values}
            new[name] = _build_group(name, merged)
        return dataclasses.replace(self, **new)

    def validate(self, dims: tuple[int, int]) -> CNMFParams:
        """Check the values against a frame (or patch) shape ``dims = (d1, d2)``.

        Returns ``self`` so calls chain. Raises ParameterError naming the parameter.
        """
        from caiman_dask.cnmf._validate import validate_params

        validate_params(self, tuple(int(d) for d in dims))
        return self


def _coerce_mapping(values: Any) -> tuple[tuple[str, Any], ...]:
    if not isinstance(values, Mapping):
        raise ConfigError(f"CNMF parameter group must be a mapping, got {type(values).__name__}")
    return tuple((k, _coerce(v)) for k, v in values.items())

