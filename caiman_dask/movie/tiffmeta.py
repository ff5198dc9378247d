"""Frame rate and pixel size from TIFF metadata (OME-XML and ImageJ), and TIFF error capture."""

from __future__ import annotations

import contextlib
import logging
import struct
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import tifffile

from caiman_dask.errors import CaimanDaskError, MovieError

SECONDS = {"s": 1.0, "ms": 1e-3, "µs": 1e-6, "\u00b5s": 1e-6, "us": 1e-6, "ns": 1e-9,
           "min": 60.0, "h": 3600.0}
MICRONS = {"µm": 1.0, "\u00b5m": 1.0, "um": 1.0, "micron": 1.0, "microns": 1.0,
           "\\u00b5m": 1.0, "\\u00B5m": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6}
Scale = tuple[float | None, tuple[float, float] | None]


def tiff_scale(tf: tifffile.TiffFile) -> Scale:
    """Return ``(fr, dxy)`` from OME-XML, else ImageJ metadata; None where absent.

    ``fr`` is 1 / OME ``TimeIncrement`` or 1 / ImageJ ``finterval`` (else ImageJ ``fps``);
    ``dxy`` is ``(dy, dx)`` in micrometres from OME ``PhysicalSizeY/X`` or from the
    X/YResolution tags when ImageJ's ``unit`` is a micrometre unit.
    """
    fr: float | None = None
    dxy: tuple[float, float] | None = None
    if tf.ome_metadata:
        fr, dxy = _ome_scale(tf.ome_metadata)
    if tf.imagej_metadata:
        ij_fr, ij_dxy = _imagej_scale(tf.imagej_metadata, tf.pages.first)
        fr = fr if fr is not None else ij_fr
        dxy = dxy if dxy is not None else ij_dxy
    return fr, dxy


def _ome_scale(xml: str) -> Scale:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None, None
    pixels = next((el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return None, None
    step = _scaled(pixels.get("TimeIncrement"), pixels.get("TimeIncrementUnit", "s"), SECONDS)
    dx = _scaled(pixels.get("PhysicalSizeX"), pixels.get("PhysicalSizeXUnit", "µm"), MICRONS)
    dy = _scaled(pixels.get("PhysicalSizeY"), pixels.get("PhysicalSizeYUnit", "µm"), MICRONS)
    fr = 1.0 / step if step else None
    return fr, ((dy, dx) if dx and dy else None)


def _imagej_scale(meta: dict[str, Any], page: Any) -> Scale:
    fr = None
    finterval = _positive(meta.get("finterval"))
    if finterval:
        fr = 1.0 / finterval
    elif _positive(meta.get("fps")):
        fr = float(meta["fps"])
    dxy = None
    unit = str(meta.get("unit", "")).strip()
    if unit in MICRONS and page is not None:
        dx = _inverse_resolution(page.tags.get("XResolution"))
        dy = _inverse_resolution(page.tags.get("YResolution"))
        if dx and dy:
            dxy = (dy * MICRONS[unit], dx * MICRONS[unit])
    return fr, dxy


def _inverse_resolution(tag: Any) -> float | None:
    """Micrometres (in the ImageJ unit) per pixel from a (numerator, denominator) tag."""
    if tag is None:
        return None
    value = tag.value
    num, den = (value if isinstance(value, tuple) else (value, 1))
    return float(den) / float(num) if num and den else None


def _scaled(value: str | None, unit: str, table: dict[str, float]) -> float | None:
    number = _positive(value)
    if number is None or unit not in table:
        return None
    return number * table[unit]


def _positive(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def tiff_errors(path: str) -> Iterator[None]:
    """Turn tifffile exceptions and logged errors into one MovieError naming ``path``.

    tifffile logs (rather than raises) many problems of damaged files, e.g. an IFD
    offset past the end of a truncated file, and then returns fewer pages.
    """
    handler = _Collect()
    logger = logging.getLogger("tifffile")
    logger.addHandler(handler)
    try:
        yield
    except (CaimanDaskError, tifffile.TiffFileError, struct.error, ValueError, IndexError,
            KeyError, EOFError) as exc:
        if handler.messages:
            raise _damaged(path, handler.messages) from None
        if isinstance(exc, CaimanDaskError):
            raise
        raise MovieError(f"{path}: not a readable TIFF movie (corrupt or truncated?): "
                         f"{exc}") from None
    finally:
        logger.removeHandler(handler)
    if handler.messages:
        raise _damaged(path, handler.messages)


def _damaged(path: str, messages: list[str]) -> MovieError:
    return MovieError(f"{path}: damaged TIFF (truncated or corrupt): {'; '.join(messages[:3])}"
                      ". Copy the file again or re-export it")
