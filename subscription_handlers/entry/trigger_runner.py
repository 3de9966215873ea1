"""The loop every trigger runs in: take the lease, run one step, record the status, wait.

A step returns a :class:`StepReport`; a failing step (PACS or FHIR down) is recorded and
tried again at the next interval. The lease is renewed while a step runs, so a long step
(a resync over many Patients) is never run twice at once; a step whose holder lost the
lease meanwhile (it stalled past the lease and another process took over) cannot move the
cursor (:class:`~subscription_handlers.adapters.coordination.Lease`) and records nothing.
"""

from __future__ import annotations

import logging
import threading
import time

from sidecar.ports import StepReport, Trigger
from subscription_handlers.adapters.coordination import Lease, LeaseLost, TriggerStore
from subscription_handlers.adapters.queue import HueySyncQueue, owner_is_dead, process_owner

log = logging.getLogger(__name__)


class TriggerRunner:
    """Runs one trigger in a daemon thread until ``stop`` is set."""

    def __init__(self, trigger: Trigger, queue: HueySyncQueue, lease_seconds: float) -> None:
        self.trigger = trigger
        self.store: TriggerStore = queue.triggers
        self.lease_seconds = lease_seconds
        self.owner = process_owner()
        self.thread: threading.Thread | None = None

    def start(self, stop: threading.Event) -> threading.Thread:
        self.thread = threading.Thread(
            target=self.run, args=(stop,), name=f"trigger-{self.trigger.name}", daemon=True
        )
        self.thread.start()
        return self.thread

    def run(self, stop: threading.Event) -> None:
        name = self.trigger.name
        while not stop.is_set():
            try:
                if self.store.acquire(name, self.owner, self.lease_seconds, owner_is_dead):
                    self.run_step(stop)
            except Exception:  # noqa: BLE001 - storage hiccup: try again next interval
                log.exception("trigger loop failed", extra={"trigger": name})
            stop.wait(self.trigger.interval)
        try:
            self.store.release(name, self.owner)
        except Exception:  # noqa: BLE001
            log.exception("could not release the trigger lease", extra={"trigger": name})

    def run_step(self, stop: threading.Event | None = None) -> StepReport | None:
        """One step under the lease (renewed meanwhile); its status recorded."""
        name = self.trigger.name
        done = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(done,), daemon=True)
        renewer.start()
        started = time.time()
        try:
            report = self.trigger.step(Lease(self.store, name, self.owner))
        except LeaseLost:
            log.warning("trigger lease lost mid-step", extra={"trigger": name})
            return None
        except Exception as exc:  # noqa: BLE001 - recorded, retried at the next interval
            error = f"{type(exc).__name__}: {exc}"[:300]
            # the lag is unknown while the source does not answer, not the last one measured
            failed = {
                "interval": self.trigger.interval,
                "last_run": started,
                "error": error,
                "lag": None,
            }
            self.store.update_status(name, failed)
            log.warning("trigger step failed", extra={"trigger": name, "error": str(exc)})
            return None
        finally:
            done.set()
        status = {
            "interval": self.trigger.interval,
            "last_run": started,
            "last_ok": time.time(),
            "error": None,
            "lag": report.lag,
            "lag_unit": report.lag_unit,
            **report.extra,
        }
        self.store.update_status(name, status)  # submissions are counted by the queue
        if report.enqueued:
            log.info("trigger enqueued", extra={"trigger": name, "count": report.enqueued})
        return report

    def _renew(self, done: threading.Event) -> None:
        while not done.wait(self.lease_seconds / 3):
            try:  # renew only: a lease that lapsed meanwhile is not taken back
                held = self.store.renew(self.trigger.name, self.owner, self.lease_seconds)
            except Exception:  # noqa: BLE001 - storage hiccup: the next renewal tries again
                log.exception(
                    "could not renew the trigger lease", extra={"trigger": self.trigger.name}
                )
                continue
            if not held:  # lapsed or taken over: the step's cursor move fails, nothing recorded
                log.warning("trigger lease lost", extra={"trigger": self.trigger.name})
                return
