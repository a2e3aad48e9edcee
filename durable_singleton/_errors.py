"""The library's failures, as one family with the distinction a caller acts on.

Every failure the library raises (its start, status and stop, the handlers) is a
:class:`SingletonError`, and exactly one of:

- :class:`NotStarted`: nothing was started (and no next run handed over), so the
  request can be retried as it is;
- :class:`OutcomeUnknown`: the start (or the next run) may have happened, so the
  instance's status is read before a retry.

The kinds beneath them (``LockBusy``, ``StartOutcomeUnknown``, ...) say why.
"""

from __future__ import annotations

from typing import Optional


class SingletonError(Exception):
    """Base of every failure the library raises."""

    #: The request whose next (or waiting) run was dropped before this failure: a
    #: replacing start (``STOP_EXISTING``, ``TERMINATE_EXISTING``) that failed after its
    #: Stop or terminate dropped it. That run never runs; None when nothing was dropped.
    dropped_request_id: Optional[str] = None


class NotStarted(SingletonError):
    """Nothing was started: safe to retry."""


class OutcomeUnknown(SingletonError):
    """It may have started: read the instance's status before retrying."""
