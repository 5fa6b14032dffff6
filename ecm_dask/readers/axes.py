"""Which stored axis is time: from the file's own axis labels (HDF5 dimension scales, Berkeley EMD ``dimN``
vectors) or from ``--axes``, never by assuming axis 0 when the labels say otherwise.

:func:`resolve_axes` returns the order that brings the stored array to ``(time, y, x)``:

* ``axes`` given (``"tyx"``, ``"yxt"``, ...: the stored axes in order) wins; if the labels say something else, one
  warning line names both;
* otherwise each stored axis is classified from its units and name: **time** (s, ms, ...; names time/t/frame),
  **length** (nm, Å, µm, px...; names x/y), **angle** (rad, mrad, deg, 1/nm...; names k/q/theta), or unknown;
  exactly one time axis is reordered to the front; two time axes, or no time axis while the first axis is a length
  or an angle, is an :class:`~ecm_dask.errors.InputError` naming the file, the dataset and the labels;
* an unlabelled array keeps axis 0 as time (as before).
"""

from __future__ import annotations

import sys

from ..errors import InputError
from .base import LENGTH_UNITS_NM, TIME_UNITS_S

TIME_NAMES = ("t", "time", "frame", "frames", "frame_number", "frame number", "image", "images", "n", "timestamp")
Y_NAMES = ("y", "row", "rows", "height")
X_NAMES = ("x", "col", "cols", "column", "columns", "width")
LENGTH_NAMES = (*Y_NAMES, *X_NAMES, "z", "length", "distance", "position")
ANGLE_NAMES = ("k", "q", "kx", "ky", "qx", "qy", "theta", "angle", "scattering angle", "tilt", "alpha", "beta")
ANGLE_UNITS = ("rad", "mrad", "urad", "µrad", "μrad", "deg", "degree", "degrees", "°", "1/nm", "nm^-1", "1/a", "1/å",
               "a^-1", "å^-1", "1/m", "1/um", "1/µm")
LENGTH_EXTRA = ("px", "pixel", "pixels")
TIME_EXTRA = ("frame", "frames", "ps", "fs", "msec", "usec", "µsec", "h", "hour", "hours")  # units of a time axis


def letter(name: str | None, units: str | None) -> str | None:
    """``"t"``, ``"y"``, ``"x"`` when one axis label says which axis it is; None otherwise (a length or angle
    not named y or x, e.g. ``z [nm]`` or ``q [1/nm]``, is known not to be time but is no letter)."""
    kind = classify(name, units)
    if kind == "time":
        return "t"
    n = str(name).strip().lower().rsplit("/", 1)[-1] if name is not None else ""
    if n in Y_NAMES:
        return "y"
    if n in X_NAMES:
        return "x"
    return None


def classify(name: str | None, units: str | None) -> str | None:
    """``"time"``, ``"length"``, ``"angle"`` or None for one axis label (units first, then the name)."""
    u = str(units).strip() if units is not None else ""
    if u:
        if TIME_UNITS_S.get(u, TIME_UNITS_S.get(u.lower())) is not None or u.lower() in TIME_EXTRA:
            return "time"
        if u.lower() in ANGLE_UNITS or u in ANGLE_UNITS:
            return "angle"
        if LENGTH_UNITS_NM.get(u, LENGTH_UNITS_NM.get(u.lower())) is not None or u.lower() in LENGTH_EXTRA:
            return "length"
    n = str(name).strip().lower() if name is not None else ""
    if n:
        n = n.rsplit("/", 1)[-1]
        if n in TIME_NAMES:
            return "time"
        if n in LENGTH_NAMES:
            return "length"
        if n in ANGLE_NAMES:
            return "angle"
    return None


def parse_axes(axes: str) -> str:
    """``--axes``: the letters t, y, x once each, e.g. ``"yxt"``."""
    a = str(axes).strip().lower()
    if len(a) != 3 or sorted(a) != ["t", "x", "y"]:
        raise InputError(f"--axes must name the stored axes with the letters t, y, x once each (e.g. tyx or yxt), "
                         f"got {axes!r}")
    return a


def _describe(labels) -> str:
    parts = []
    for i, (name, units) in enumerate(labels):
        what = " ".join(str(v) for v in (name, f"[{units}]" if units else None) if v) or "unlabelled"
        parts.append(f"axis {i}: {what}")
    return "; ".join(parts)


def resolve_axes(label: str, labels: list[tuple[str | None, str | None]], axes: str | None = None, *,
                 time_last_reverses: bool = False, warn=None) -> tuple[int, int, int]:
    """The stored-axis indices ``(t, y, x)`` of a 3-D array.

    Parameters
    ----------
    label : the file and dataset, for messages
    labels : ``(name, units)`` of each stored axis (None where absent)
    axes : explicit stored order (``--axes``), e.g. ``"yxt"``
    time_last_reverses : when time is the last stored axis and nothing names y and x, take the other two in reverse
        (Berkeley EMD files written by HyperSpy/rosettasciio store the transposed array)
    warn : callable for the one warning line (default: stderr)
    """
    kinds = [classify(n, u) for n, u in labels]
    if axes is not None:
        a = parse_axes(axes)
        order = (a.index("t"), a.index("y"), a.index("x"))
        said = [letter(n, u) for n, u in labels]
        if any((s is not None and s != a[i]) or (a[i] == "t" and kinds[i] in ("length", "angle"))
               for i, s in enumerate(said)):
            (warn or (lambda m: print(m, file=sys.stderr, flush=True)))(
                f"warning: {label}: --axes {a} disagrees with the file's axis labels ({_describe(labels)}); "
                f"reading axis {order[0]} as time as --axes says")
        return order
    times = [i for i, k in enumerate(kinds) if k == "time"]
    if len(times) > 1:
        raise InputError(f"{label}: the axis labels name {len(times)} time axes ({_describe(labels)}); say which "
                         "stored axis is which with --axes (e.g. --axes tyx)")
    if not times:
        if kinds[0] in ("length", "angle"):
            raise InputError(f"{label}: the axis labels say axis 0 is {'a length' if kinds[0] == 'length' else 'an angle'}"
                             f" and no axis is time ({_describe(labels)}); this is not a time series as stored - "
                             "give the order with --axes (e.g. --axes yxt) if it is one")
        times = [0]  # unlabelled (or y, x only): axis 0 is time, as stored by most tools
    t = times[0]
    others = [i for i in range(3) if i != t]
    names = [str(labels[i][0] or "").strip().lower().rsplit("/", 1)[-1] for i in others]
    if names[0] in X_NAMES and names[1] in Y_NAMES:
        others = others[::-1]
    elif not (names[0] in Y_NAMES and names[1] in X_NAMES) and t == 2 and time_last_reverses:
        others = others[::-1]
    return t, others[0], others[1]
