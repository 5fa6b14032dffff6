"""Exceptions raised by ecm_dask.

Every error meant for a user derives from :class:`EcmError` and carries a one-line message that
names the file, frame or parameter at fault and says what to do.  The CLI prints the message alone
(no traceback) and exits with status 2.
"""

from __future__ import annotations


class EcmError(Exception):
    """Base class of all errors ecm_dask reports to users."""


class InputError(EcmError, ValueError):
    """An input file or folder cannot be read as an image series (missing, corrupt, wrong shape...)."""


class MetadataError(EcmError, ValueError):
    """A required metadata value (frame time, pixel size, ...) is missing or absurd."""


class ValidationError(EcmError, ValueError):
    """A dataset does not follow the ecm_dask data model; the message lists every problem."""

    def __init__(self, problems: list[str], what: str = "dataset", kind: str = "series"):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{what} is not a valid ecm_dask {kind} ({len(self.problems)} problem(s)):\n{lines}")


class StoreError(EcmError, OSError):
    """A store cannot be created, written or resumed (exists, incomplete, belongs to other input...)."""


class ParameterError(EcmError, ValueError):
    """An option is invalid: an analysis option (ROI, lag range, bad frames, pooling...) for the series at hand, or
    a setting refused as unsafe (a cluster listening beyond loopback without TLS)."""


class ResourceError(EcmError, RuntimeError):
    """The machine or cluster cannot run the work as configured (memory limit too small, workers lost, no
    progress); the message says what to change.  Completed work is kept for a resume."""
