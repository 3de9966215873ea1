"""The one retry policy: how often and how long every retried action waits (tenacity).

Every retry in the sidecar is one of these policies, named for what it retries: a FHIR
request after a transient failure (:func:`transient`), a patient of the backfill through an
outage, a write that met a concurrent writer (:func:`conflicts`), a sample upload. Each is a
``tenacity.Retrying``: call it with the action (``policy(action)``), or iterate it when each
attempt must re-read something first. The last failure is re-raised as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

log = logging.getLogger(__name__)


def _log_retry(what: str) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.info(
            "retrying",
            extra={
                "action": what,
                "attempt": state.attempt_number,
                "error": type(error).__name__ if error else None,
                "delay": round(state.upcoming_sleep, 2),
            },
        )

    return before_sleep


def policy(
    what: str,
    *,
    attempts: int,
    retry_on: Callable[[BaseException], bool],
    first_wait: float,
    max_wait: float = 30.0,
) -> Retrying:
    """Up to ``attempts`` tries of an action, while ``retry_on`` says its failure is
    transient, waiting ``first_wait`` s, then twice as long each time, at most ``max_wait``."""
    return Retrying(
        stop=stop_after_attempt(max(attempts, 1)),
        retry=retry_if_exception(retry_on),
        wait=wait_exponential(multiplier=first_wait, exp_base=2, min=first_wait, max=max_wait),
        before_sleep=_log_retry(what),
        reraise=True,
    )


def transient(what: str, retries: int, is_transient: Callable[[BaseException], bool]) -> Retrying:
    """A request retried ``retries`` times after connect errors and 502/503/504 (0.2 s, 0.4 s,
    ...): short pauses, so a retry never outlives the caller's own timeout by much."""
    return policy(what, attempts=retries + 1, retry_on=is_transient, first_wait=0.2, max_wait=2.0)


def conflicts(what: str, attempts: int, is_conflict: Callable[[BaseException], bool]) -> Retrying:
    """A write re-planned after a concurrent writer changed what it read (HTTP 409/412): at
    once, then after 0.1 s, 0.2 s (the caller re-reads before each attempt)."""
    return policy(what, attempts=attempts, retry_on=is_conflict, first_wait=0.1, max_wait=1.0)
