"""A limit of N per key (docs/jobs.md, "A limit per key"): what
:meth:`SingletonClient.start_limited <durable_singleton.SingletonClient.start_limited>`
takes and returns. Its failures are in :mod:`durable_singleton.errors` (``QueueFull``,
``LimitReached``, ``KeyInUse``, ``RequestCancelled``, ``QueueOutcomeUnknown``)."""

from ._limited import Admitted
from ._policy import OnFull

__all__ = ["Admitted", "OnFull"]
