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


class SingletonError(Exception):
    """Base of every failure the library raises."""


class NotStarted(SingletonError):
    """Nothing was started: safe to retry."""


class OutcomeUnknown(SingletonError):
    """It may have started: read the instance's status before retrying."""
