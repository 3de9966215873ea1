"""Idempotent registration of the Patient Subscription and the OperationDefinitions of
``$fetch-imaging`` and ``$imaging-sync-status``.

The Subscription (R4, criteria based) lives under a fixed id, so registering twice, from
several replicas or after a restart, converges on one resource:

    PUT Subscription/<id>   status=requested, criteria=Patient?, channel.type=rest-hook,
                            channel.endpoint=<notify url>, payload application/fhir+json,
                            header "X-Sidecar-Secret: <secret>", send-delete-messages on

It is written only when missing, different, or not ``active`` (HAPI sets ``error`` or
``off`` when it gives up on it; an administrator may delete it); HAPI moves a ``requested``
Subscription to ``active`` by itself when REST-hook delivery is enabled, which is polled.
Each OperationDefinition is PUT only when its content differs from its file. The
``$imaging-sync-status`` one describes an operation the sidecar serves (operators only), not
the FHIR server: a catalogue entry, which the FHIR server's CapabilityStatement does not list.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from importlib import resources
from typing import Any

from sidecar.core.credentials import SECRET_HEADER
from sidecar.core.outcome import FetchError
from sidecar.ports import FhirServer
from sidecar.settings import SyncSettings

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
SEND_DELETE_MESSAGES = (
    "http://hapifhir.io/fhir/StructureDefinition/subscription-send-delete-messages"
)
OPERATION_DEFINITION_FILE = "OperationDefinition-fetch-imaging.json"
#: ``$imaging-sync-status``: served by the sidecar itself (operators), described here too
SYNC_STATUS_DEFINITION_FILE = "OperationDefinition-imaging-sync-status.json"
SUBSCRIPTION_REASON = "dicom-fhir-sidecar: sync a Patient's imaging when it is created or changed"


class RegistrationError(RuntimeError):
    """Registration cannot proceed (no notify secret) or the FHIR server refused a step."""


def desired_subscription(settings: SyncSettings, notify_secret: str | None) -> dict[str, Any]:
    """The Subscription resource this sidecar wants on the FHIR server.

    Its header carries the *notify* secret, which only lets a caller ask for a re-sync of a
    Patient the worker then reads from FHIR itself; it never authorizes ``$fetch-imaging``.
    """
    if not notify_secret:
        raise RegistrationError("SIDECAR_NOTIFY_SECRET is required to register the Subscription")
    return {
        "resourceType": "Subscription",
        "id": settings.subscription_id,
        "status": "requested",
        "reason": SUBSCRIPTION_REASON,
        "criteria": "Patient?",
        "channel": {
            "extension": [{"url": SEND_DELETE_MESSAGES, "valueBoolean": True}],
            "type": "rest-hook",
            "endpoint": settings.notify_url,
            "payload": FHIR_JSON,
            "header": [f"{SECRET_HEADER}: {notify_secret}"],
        },
    }


def subscription_matches(current: dict[str, Any] | None, desired: dict[str, Any]) -> bool:
    """True when the stored Subscription already says what we want (status aside)."""
    if not current or current.get("resourceType") != "Subscription":
        return False

    def essence(sub: dict[str, Any]) -> tuple:
        channel = sub.get("channel") or {}
        deletes = any(
            e.get("url") == SEND_DELETE_MESSAGES and e.get("valueBoolean") in (True, "true")
            for e in channel.get("extension") or []
        )
        return (
            sub.get("criteria"),
            channel.get("type"),
            (channel.get("endpoint") or "").rstrip("/"),
            channel.get("payload"),
            sorted(h.strip() for h in channel.get("header") or []),
            deletes,
        )

    return essence(current) == essence(desired)


def operation_definition(file: str = OPERATION_DEFINITION_FILE) -> dict[str, Any]:
    text = resources.files("sidecar").joinpath("resources", file).read_text()
    return json.loads(text)


def _content(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k not in ("meta", "text")}


class Registrar:
    """Registers and watches the Subscription and OperationDefinition on the FHIR server,
    through the sidecar's one FHIR client."""

    def __init__(self, settings: SyncSettings, fhir: FhirServer, notify_secret: str | None) -> None:
        self.settings = settings
        self.fhir = fhir
        self.notify_secret = notify_secret
        self.last_status: dict[str, Any] = {"status": "unknown"}

    def desired_subscription(self) -> dict[str, Any]:
        """The Subscription to register; RegistrationError without a notify secret."""
        return desired_subscription(self.settings, self.notify_secret)

    # -- Subscription ----------------------------------------------------------------------

    def subscription_status(self) -> dict[str, Any]:
        """``{"status": requested|active|error|off|missing|unreachable, ...}`` right now."""
        sub_id = self.settings.subscription_id
        try:
            current = self.fhir.read("Subscription", sub_id)
        except FetchError as exc:
            return {"id": sub_id, "status": "unreachable", "reason": exc.diagnostics}
        if current is None:
            return {"id": sub_id, "status": "missing"}
        status: dict[str, Any] = {"id": sub_id, "status": current.get("status", "unknown")}
        if current.get("error"):
            status["error"] = current["error"]
        if not self.notify_secret:
            status["differs"] = True
            status["reason"] = "SIDECAR_NOTIFY_SECRET is not set"
        elif not subscription_matches(current, self.desired_subscription()):
            status["differs"] = True
        return status

    def mismatch(self) -> str:
        """In words, what differs between the stored Subscription and the one these settings
        would register (for ``dicom-fhir check``; never the notify secret)."""
        current = self.fhir.read("Subscription", self.settings.subscription_id) or {}
        stored = ((current.get("channel") or {}).get("endpoint") or "").rstrip("/")
        wanted = self.settings.notify_url.rstrip("/")
        if stored != wanted:
            return (
                f"its endpoint is {stored or 'empty'}, these settings would register {wanted}:"
                " set SIDECAR_NOTIFY_URL to where HAPI reaches the sidecar (serve --bind sets"
                " it otherwise)"
            )
        return (
            "its criteria, payload or header (the notify secret) differ from these settings';"
            " dicom-fhir register rewrites it"
        )

    def ensure_subscription(self, *, wait: bool = True) -> dict[str, Any]:
        """Create or repair the Subscription; with ``wait``, poll until HAPI activates it."""
        desired = self.desired_subscription()
        path = f"Subscription/{self.settings.subscription_id}"
        current = self.fhir.read("Subscription", self.settings.subscription_id)
        action = "unchanged"
        if not subscription_matches(current, desired) or (current or {}).get("status") not in (
            "active",
            "requested",
        ):
            action = "created" if current is None else "updated"
            current = self.fhir.put(desired)
            log.info(
                "subscription registered",
                extra={"subscription": path, "endpoint": self.settings.notify_url},
            )
        status = (current or {}).get("status", "requested")
        if wait and status != "active":
            status = self._wait_active(path)
        self.last_status = {"id": self.settings.subscription_id, "status": status, "action": action}
        return self.last_status

    def _wait_active(self, path: str) -> str:
        deadline = time.monotonic() + self.settings.activation_timeout_seconds
        status = "requested"
        while time.monotonic() < deadline:
            current = self.fhir.read("Subscription", self.settings.subscription_id) or {}
            status = current.get("status", "missing")
            if status in ("active", "error", "off", "missing"):
                break
            time.sleep(0.5)
        if status != "active":
            log.warning(
                "subscription not active",
                extra={"subscription": path, "status": status},
            )
        return status

    # -- OperationDefinition ---------------------------------------------------------------

    def ensure_operation_definition(self, file: str = OPERATION_DEFINITION_FILE) -> str:
        """PUT the OperationDefinition of ``file`` (default ``fetch-imaging``) when it
        differs; ``created|updated|unchanged``."""
        desired = operation_definition(file)
        # HAPI answers a *read* of OperationDefinition/{id} from its CapabilityStatement
        # provider (HAPI-2249 for stored ones), so the stored resource is found by search.
        found = self.fhir.search("OperationDefinition", {"_id": desired["id"]}, limit=1)
        current = found[0] if found else None
        if current is not None and _content(current) == _content(desired):
            return "unchanged"
        self.fhir.put(desired)
        return "created" if current is None else "updated"

    def register_all(self, *, wait: bool = True) -> dict[str, Any]:
        return {
            "operation_definition": self.ensure_operation_definition(),
            "sync_status_definition": self.ensure_operation_definition(SYNC_STATUS_DEFINITION_FILE),
            "subscription": self.ensure_subscription(wait=wait),
        }

    # -- background watch --------------------------------------------------------------------

    def watch(self, stop: threading.Event) -> None:
        """Register now, then re-register whenever the Subscription goes missing or wrong.

        Runs until ``stop`` is set; FHIR outages are retried with a capped backoff, so a
        slow-starting HAPI does not block or crash the sidecar.
        """
        delay = 2.0
        registered = False
        while not stop.is_set():
            try:
                if not registered:
                    self.register_all(wait=True)
                    registered = True
                else:
                    status = self.subscription_status()
                    self.last_status = status
                    if status["status"] in ("missing", "error", "off") or status.get("differs"):
                        log.warning("subscription needs repair", extra=status)
                        self.ensure_subscription(wait=True)
                delay = self.settings.registration_check_seconds
            except (FetchError, RegistrationError) as exc:
                self.last_status = {"status": "unreachable", "reason": _reason(exc)}
                log.warning("registration failed; will retry", extra={"reason": _reason(exc)})
                delay = min(max(delay * 2, 2.0), self.settings.registration_check_seconds)
            stop.wait(delay)


def start_registration_thread(registrar: Registrar) -> tuple[threading.Thread, threading.Event]:
    """The background registration + watchdog used by ``serve`` (daemon thread)."""
    stop = threading.Event()
    thread = threading.Thread(
        target=registrar.watch, args=(stop,), name="sidecar-registration", daemon=True
    )
    thread.start()
    return thread, stop


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "diagnostics", None) or str(exc)
    return f"{type(exc).__name__}: {text}"[:300]
