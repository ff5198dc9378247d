"""Save and load estimates in the HDF5 layout of CaImAn's ``CNMF.save`` / ``load_CNMF``.

Layout, as read from CaImAn 1.12 (master of May 2025, commit 881e627a;
``caiman/utils/utils.py``: ``save_dict_to_hdf5``,
``recursively_save_dict_contents_to_group``, ``recursively_load_dict_contents_from_group``;
``cnmf/cnmf.py``: ``CNMF.save``, ``load_CNMF``). ``CNMF.save`` writes ``cnm.__dict__``:

=====================  ==========================================  ===========================
Python value           HDF5 form                                   CaImAn's loader returns
=====================  ==========================================  ===========================
dict, CNMFParams,      group, one member per key                   dict
Estimates
str                    attribute of the enclosing group             str
                       (CaImAn < 1.9.9: scalar string dataset)      (old files: bytes)
None                   scalar string dataset ``"NoneType"``        None
int, float, numpy      scalar dataset                              numpy scalar
scalar
bool                   scalar boolean dataset                      bool
numpy array            dataset                                     array
list/tuple of str      fixed-length bytes (``S``) array            bytes array
other list/tuple       dataset of ``np.array(value)``              array; a tuple for keys dims,
                                                                   medw, sigma_smooth_snmf, dxy,
                                                                   max_shifts, strides, overlaps
scipy.sparse           group with datasets ``data``, ``indices``,  csc_matrix for keys A, W, Ab,
                       ``indptr`` (of ``tocsc()``) and ``shape``    downscale_matrix,
                                                                   upscale_matrix (W and
                                                                   upscale_matrix as csr);
                                                                   a plain dict otherwise
=====================  ==========================================  ===========================

CaImAn's writer skips keys groups, idx_tot, ind_A, Ab_epoch, coordinates, loaded_model,
optional_outputs, merged_ROIs, tf_in, tf_out, empty_merged, and writes ``g = None`` as 0.

Top level (``CNMF.__dict__``): ``dview`` ("NoneType"), ``dims``, ``skip_refinement``,
``remove_very_bad_comps``, optional ``mmap_file`` (string attribute), group ``params``
and group ``estimates``. ``load_CNMF`` calls ``CNMFParams.set(name, dict)`` for every
member of ``params`` (a KeyError for any name that is not a CNMFParams group, see
:data:`PARAM_GROUPS`), sets every member of ``estimates`` as an attribute of a new
``Estimates`` (falling back to the top-level ``dims`` when ``estimates/dims`` is None),
and every other top-level member as an attribute of the CNMF object. ``CNMF.save``
only writes names containing ``.hdf5``; ``load_CNMF`` reads ``.hdf5`` and ``.h5``.

Additions of ours, harmless to CaImAn's loader (it ignores dataset attributes, and the
group ``caiman_dask`` just becomes ``cnm.caiman_dask``): each dataset we write carries the
attribute ``caiman_dask_type`` (``none``, ``bool``, ``int``, ``float``, ``numpy``,
``ndarray``, ``list``, ``tuple``, ``list:str``, ``tuple:slice``, ..., ``sparse:<format>``
on a sparse group's ``shape``) so that our loader restores the exact Python value;
the group ``caiman_dask`` holds the writer's name and the caller's ``extra`` dict.
Values with no lossless form raise :class:`~caiman_dask.errors.ResultsError`, and
``save_estimates`` re-reads params and extra from the file before publishing it.
"""

from __future__ import annotations

import dataclasses
import errno
import math
import os
import pathlib
import shutil
import tempfile
from collections.abc import Mapping
from typing import Any

import h5py
import numpy as np
import scipy.sparse as sp

from caiman_dask.errors import (
    ParameterError,
    ResultsError,
    ResultsNotFoundError,
    StoreExistsError,
    disk_full,
    is_disk_full,
)
from caiman_dask.results.estimates import Estimates

PARAM_GROUPS: tuple[str, ...] = (
    "data", "patch", "preprocess", "init", "spatial", "temporal", "merging", "quality",
    "online", "motion", "ring_CNN",
)
SUFFIXES: tuple[str, ...] = (".hdf5", ".h5")
TYPE_ATTR = "caiman_dask_type"
WRITER = "caiman-dask results, format 1"
_TUPLE_KEYS = {"dims", "medw", "sigma_smooth_snmf", "dxy", "max_shifts", "strides", "overlaps"}
_SPARSE_PARTS = ("data", "indices", "indptr", "shape")


# ----------------------------------------------------------------------------- writing
def _encode(value: Any, where: str) -> tuple[Any, str]:
    """Return ``(data for h5py, type tag)`` for a value stored as one dataset."""
    if value is None:
        return "NoneType", "none"
    for kind in (bool, int, float):
        if type(value) is kind:
            return np.asarray(value)[()], kind.__name__
    if isinstance(value, np.generic) and value.dtype.kind in "biufc":
        return value, "numpy"
    if isinstance(value, np.ndarray) and value.dtype.kind in "biufcS":
        return value, "ndarray"
    if type(value) in (list, tuple):
        return _encode_sequence(value, type(value).__name__, where)
    raise ResultsError(f"cannot store {where} = {value!r} ({type(value).__name__}) in HDF5")


def _encode_sequence(value: list | tuple, container: str, where: str) -> tuple[Any, str]:
    if value and all(isinstance(v, str) for v in value):
        return np.array([v.encode("utf-8") for v in value]), f"{container}:str"
    if value and all(isinstance(v, slice) for v in value):
        text = [f"slice({v.start}, {v.stop}, {v.step})".encode() for v in value]
        return np.array(text), f"{container}:slice"
    arr = np.array(value) if value else np.zeros(0)
    if arr.dtype.kind not in "biuf":
        raise ResultsError(
            f"cannot store {where} = {value!r}: lists and tuples must hold only numbers, "
            "only strings or only slices"
        )
    return arr, container


def _write_value(group: h5py.Group, key: Any, value: Any, where: str) -> None:
    if not isinstance(key, str) or not key or "/" in key or key == ".":
        raise ResultsError(
            f"cannot store key {key!r} under {where or '/'!r}: keys must be names without '/'"
        )
    where = f"{where}/{key}" if where else key
    if isinstance(value, str):
        try:
            group.attrs[key] = value
        except ValueError as exc:
            raise ResultsError(f"cannot store {where} = {value!r} in HDF5: {exc}") from None
    elif isinstance(value, Mapping):
        _write_dict(group.create_group(key), value, where)
    elif sp.issparse(value):
        _write_sparse(group.create_group(key), value)
    else:
        data, tag = _encode(value, where)
        try:
            group.create_dataset(key, data=data).attrs[TYPE_ATTR] = tag
        except (TypeError, ValueError, OverflowError) as exc:
            raise ResultsError(f"cannot store {where} = {value!r} in HDF5: {exc}") from None


def _write_dict(group: h5py.Group, values: Mapping[str, Any], where: str) -> None:
    for key, value in values.items():
        _write_value(group, key, value, where)


def _write_sparse(group: h5py.Group, matrix: sp.spmatrix) -> None:
    csc = matrix if matrix.format == "csc" else sp.csc_matrix(matrix)
    for name in ("data", "indices", "indptr"):
        group.create_dataset(name, data=getattr(csc, name)).attrs[TYPE_ATTR] = "ndarray"
    shape = group.create_dataset("shape", data=np.asarray(csc.shape, dtype=np.int64))
    shape.attrs[TYPE_ATTR] = f"sparse:{matrix.format}"


def _estimates_dict(estimates: Estimates) -> dict[str, Any]:
    out = {f.name: getattr(estimates, f.name) for f in dataclasses.fields(estimates)}
    out["dims"] = tuple(estimates.dims)
    return out


def _payload_bytes(values: Any) -> int:
    """Bytes of the arrays in ``values`` (nested dicts, sparse matrices)."""
    if isinstance(values, Mapping):
        return sum(_payload_bytes(v) for v in values.values())
    if sp.issparse(values):
        csc = values.tocsc()
        return csc.data.nbytes + csc.indices.nbytes + csc.indptr.nbytes
    return values.nbytes if isinstance(values, np.ndarray) else 0


def _check_space(folder: pathlib.Path, estimates: Estimates) -> None:
    """Refuse before writing when the disk cannot hold the arrays (plus 1 MiB of HDF5
    metadata): HDF5 fails late, at close, and leaves objects that error when freed."""
    need = _payload_bytes(_estimates_dict(estimates)) + (1 << 20)
    free = shutil.disk_usage(folder).free
    if free < need:
        raise OSError(errno.ENOSPC, f"{need} bytes needed, {free} free", str(folder))


def _write_file(h5: h5py.File, estimates: Estimates, params: dict, extra: dict) -> None:
    _write_dict(h5.create_group("estimates"), _estimates_dict(estimates), "estimates")
    _write_dict(h5.create_group("params"), params, "params")
    top = {"dims": tuple(estimates.dims), "dview": None, "skip_refinement": False,
           "remove_very_bad_comps": False}
    _write_dict(h5, top, "")
    meta = h5.create_group("caiman_dask")
    meta.attrs["writer"] = WRITER
    _write_dict(meta.create_group("extra"), extra, "extra")


# ----------------------------------------------------------------------------- reading
def _decode(raw: Any, tag: str) -> Any:
    kind, _, element = tag.partition(":")
    if kind == "none":
        return None
    if kind in ("bool", "int", "float"):
        return {"bool": bool, "int": int, "float": float}[kind](raw)
    if kind == "ndarray":
        return np.asarray(raw)
    if kind == "numpy":
        return raw
    container = tuple if kind == "tuple" else list
    if element == "str":
        return container(b.decode("utf-8") for b in raw.tolist())
    if element == "slice":
        return container(_parse_slice(b.decode()) for b in raw.tolist())
    return container(raw.tolist())


def _parse_slice(text: str) -> slice:
    parts = [p.strip() for p in text[len("slice("):-1].split(",")]
    return slice(*(None if p == "None" else int(p) for p in parts))


def _read_untagged(key: str, raw: Any) -> Any:
    """Interpret a dataset as CaImAn's loader does (files written by CaImAn)."""
    if isinstance(raw, (bytes, str)):
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        return None if text == "NoneType" else text
    if isinstance(raw, np.bool_):
        return bool(raw)
    if key in _TUPLE_KEYS and isinstance(raw, np.ndarray):
        return tuple(raw.tolist())
    return raw


def _sparse_format(key: str, group: h5py.Group) -> str | None:
    """Format of a stored sparse matrix, or None for a plain group.

    Untagged (CaImAn's) groups holding exactly data/indices/indptr/shape are read as
    sparse whatever their key (CaImAn's loader does so only for A, W, Ab and the
    scale matrices), csr for W and upscale_matrix as CaImAn does, csc otherwise.
    """
    shape = group.get("shape")
    tag = str(shape.attrs.get(TYPE_ATTR, "")) if isinstance(shape, h5py.Dataset) else ""
    if tag.startswith("sparse:"):
        return tag.split(":", 1)[1]
    if set(group.keys()) == set(_SPARSE_PARTS) and not group.attrs:
        return "csr" if key in ("W", "upscale_matrix") else "csc"
    return None


def _read_dataset(key: str, item: h5py.Dataset) -> Any:
    tag = item.attrs.get(TYPE_ATTR)
    return _read_untagged(key, item[()]) if tag is None else _decode(item[()], str(tag))


def _read_group(group: h5py.Group) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in group.attrs.items():
        out[key] = value.decode("utf-8") if isinstance(value, bytes) else value
    for key, item in group.items():
        if isinstance(item, h5py.Dataset):
            out[key] = _read_dataset(key, item)
        elif (fmt := _sparse_format(key, item)) is not None:
            parts = [item[name][()] for name in _SPARSE_PARTS]
            matrix = sp.csc_matrix(tuple(parts[:3]), shape=tuple(int(n) for n in parts[3]))
            out[key] = matrix if fmt == "csc" else matrix.asformat(fmt)
        else:
            out[key] = _read_group(item)
    return out


def _as_array(value: Any) -> np.ndarray | None:
    if value is None or isinstance(value, np.ndarray):
        return value
    return value.toarray() if sp.issparse(value) else np.asarray(value)


def _estimates_from(values: dict[str, Any], top_dims: Any, path: str) -> Estimates:
    if not sp.issparse(values.get("A")):
        raise ResultsError(f"{path}: estimates/A is missing or not sparse; not a CNMF results file")
    names = [f.name for f in dataclasses.fields(Estimates) if f.name not in ("A", "dims")]
    kwargs = {name: _as_array(values.get(name)) for name in names}
    if kwargs["g"] is not None and kwargs["g"].ndim == 0:
        kwargs["g"] = None  # CaImAn writes g=None as 0
    for name in ("idx_components", "idx_components_bad"):
        if kwargs[name] is not None and kwargs[name].dtype.kind not in "iu":
            kwargs[name] = kwargs[name].astype(np.int64)
    dims = values.get("dims")
    dims = top_dims if dims is None else dims
    if dims is None:
        raise ResultsError(f"{path}: neither estimates/dims nor dims is stored")
    try:
        return Estimates(A=values["A"], dims=tuple(dims), **kwargs)
    except ParameterError as exc:
        raise ResultsError(f"{path}: inconsistent estimates: {exc}") from None


def _open(path: str | os.PathLike[str]) -> h5py.File:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ResultsNotFoundError(f"results file {path!r} does not exist")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise ResultsError(f"results file {path!r} is not a readable HDF5 file: {exc}") from None


def load_estimates(path: str | os.PathLike[str]) -> tuple[Estimates, dict[str, Any]]:
    """Load estimates and parameters from a file of ours or one written by ``CNMF.save``.

    Parameters
    ----------
    path : str or path-like
        The ``.hdf5`` / ``.h5`` results file.

    Returns
    -------
    estimates : Estimates
        The stored components (bit-exact arrays for files of ours).
    params : dict
        ``{group: {key: value}}``; values restored exactly for files of ours, as
        CaImAn's loader returns them for CaImAn's files (strings as ``str``).
    """
    with _open(path) as h5:
        if "estimates" not in h5 or not isinstance(h5["estimates"], h5py.Group):
            raise ResultsError(f"{os.fspath(path)}: no 'estimates' group; not a CNMF results file")
        values = _read_group(h5["estimates"])
        dims = h5.get("dims")
        top_dims = _read_dataset("dims", dims) if isinstance(dims, h5py.Dataset) else None
        params = _read_group(h5["params"]) if "params" in h5 else {}
    return _estimates_from(values, top_dims, os.fspath(path)), params


def load_extra(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Return the ``extra`` dict given to :func:`save_estimates` (``{}`` for CaImAn's files)."""
    with _open(path) as h5:
        group = h5.get("caiman_dask/extra")
        return _read_group(group) if isinstance(group, h5py.Group) else {}


# ----------------------------------------------------------------------------- saving
def _params_dict(params: Any) -> dict[str, Any]:
    if hasattr(params, "to_dict") and not isinstance(params, Mapping):
        params = params.to_dict()  # a CaImAn CNMFParams object
    if not isinstance(params, Mapping):
        raise ResultsError(f"params must be a dict of CaImAn parameter groups, got {type(params)}")
    for name, group in params.items():
        if name not in PARAM_GROUPS or not isinstance(group, Mapping):
            raise ResultsError(
                f"params[{name!r}]: CaImAn's load_CNMF reads only dicts named {PARAM_GROUPS}; "
                "move other settings to extra="
            )
    return _plain(params)


def _plain(value: Any) -> Any:
    """Turn nested mappings into plain dicts (what loading gives back)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _target(path: str | os.PathLike[str], overwrite: bool) -> pathlib.Path:
    final = pathlib.Path(path)
    name = str(final)
    if final.suffix.lower() not in SUFFIXES:
        raise ResultsError(f"results file {name!r} must end in .hdf5 or .h5 (load_CNMF needs it)")
    if not final.parent.is_dir():
        raise ResultsError(f"cannot write {name!r}: its directory does not exist")
    if final.exists() and not overwrite:
        raise StoreExistsError(f"results file {name!r} exists; pass overwrite=True to replace it")
    return final


def _difference(a: Any, b: Any, where: str) -> str | None:
    """Return the path of the first place where ``a`` and ``b`` differ (types included)."""
    if type(a) is not type(b):
        return where
    if isinstance(a, dict):
        if a.keys() != b.keys():
            return where
        diffs = (_difference(a[k], b[k], f"{where}/{k}") for k in a)
        return next((d for d in diffs if d), None)
    if isinstance(a, (list, tuple)):
        if len(a) != len(b):
            return where
        diffs = (_difference(x, y, f"{where}[{n}]") for n, (x, y) in enumerate(zip(a, b)))
        return next((d for d in diffs if d), None)
    if sp.issparse(a):
        a, b = sp.csc_matrix(a), sp.csc_matrix(b)
        same = a.shape == b.shape and all(
            _difference(getattr(a, n), getattr(b, n), where) is None for n in _SPARSE_PARTS[:3])
    elif isinstance(a, (np.ndarray, np.generic)):
        same = a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    elif isinstance(a, float):
        same = a.hex() == b.hex() or (math.isnan(a) and math.isnan(b))
    else:
        same = bool(a == b)
    return None if same else where


def _verify(tmp: pathlib.Path, params: dict[str, Any], extra: dict[str, Any]) -> None:
    with h5py.File(tmp, "r") as h5:
        stored = {"params": _read_group(h5["params"]),
                  "extra": _read_group(h5["caiman_dask/extra"])}
    where = _difference({"params": params, "extra": extra}, stored, "")
    if where is not None:
        raise ResultsError(f"{where.lstrip('/')} would not load back unchanged from HDF5; "
                          "store it as a number, string, array, or a list/tuple of one kind")


def _publish(tmp: pathlib.Path, final: pathlib.Path, overwrite: bool) -> None:
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    if overwrite:
        os.replace(tmp, final)
        return
    try:
        os.link(tmp, final)  # fails, atomically, when final exists
    except FileExistsError:
        raise StoreExistsError(f"results file {str(final)!r} appeared while writing; "
                               "pass overwrite=True to replace it") from None
    except OSError:  # no hard links on this filesystem
        if final.exists():
            raise StoreExistsError(f"results file {str(final)!r} exists") from None
        os.replace(tmp, final)


def save_estimates(
    path: str | os.PathLike[str],
    estimates: Estimates,
    params: Mapping[str, Any],
    *,
    overwrite: bool = False,
    extra: Mapping[str, Any] | None = None,
) -> pathlib.Path:
    """Write estimates and parameters in CaImAn's ``CNMF.save`` layout (see module docs).

    Parameters
    ----------
    path : str or path-like
        Destination ending in ``.hdf5`` or ``.h5`` (CaImAn's ``load_CNMF`` needs one).
    estimates : Estimates
        The components to save.
    params : dict or CNMFParams
        ``{group: {key: value}}`` with CaImAn's group names (:data:`PARAM_GROUPS`).
    overwrite : bool, optional
        Replace an existing file; otherwise :class:`StoreExistsError`.
    extra : dict, optional
        Further values of ours, stored under ``caiman_dask/extra``; see :func:`load_extra`.

    Returns
    -------
    pathlib.Path
        The path written. The file is built under a temporary name in the same
        directory and renamed into place only when complete and verified.

    Raises
    ------
    StoreExistsError
        ``path`` exists and ``overwrite`` is False.
    DiskFullError
        The disk cannot hold the file (checked before writing, and caught while
        writing); an existing file at ``path`` is left as it was.
    """
    if not isinstance(estimates, Estimates):
        raise ParameterError(f"estimates must be an Estimates, got {type(estimates).__name__}")
    final = _target(path, overwrite)
    params, extra = _params_dict(params), _plain(extra or {})
    try:
        _write_verified(final, estimates, params, extra, overwrite)
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full(str(final), exc) from exc
        raise
    return final


def _write_verified(final: pathlib.Path, estimates: Estimates, params: dict[str, Any],
                    extra: dict[str, Any], overwrite: bool) -> None:
    """Build the file under a temporary name, check it, rename it into place."""
    _check_space(final.parent, estimates)
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = pathlib.Path(name)
    try:
        with h5py.File(tmp, "w") as h5:
            _write_file(h5, estimates, params, extra)
        _verify(tmp, params, extra)
        _publish(tmp, final, overwrite)
    finally:
        tmp.unlink(missing_ok=True)
