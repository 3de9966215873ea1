"""Load DICOM instances into Orthanc through its REST API (``POST /instances``).

Posting is idempotent: Orthanc answers ``AlreadyStored`` for an instance it already has, so
a re-run of the same load only counts those instances as already present. Datasets are
serialised in memory; paths are read as bytes. Each worker thread has its own
``requests.Session`` (keep-alive, pooled connection), because a Session is not documented as
thread-safe.
"""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
import requests
from requests.adapters import HTTPAdapter

__all__ = ["LoadReport", "OrthancUnavailable", "load_into_orthanc", "to_bytes"]

Item = pydicom.Dataset | str | os.PathLike[str] | bytes

_MAX_FAILURES_KEPT = 50
_RETRY_STATUSES = frozenset({502, 503, 504})


class OrthancUnavailable(RuntimeError):
    """Orthanc did not answer ``GET /system`` successfully before the load started."""


@dataclass
class LoadReport:
    stored: int = 0
    already_present: int = 0
    failed: int = 0
    bytes_sent: int = 0
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (item, reason), capped

    @property
    def total(self) -> int:
        return self.stored + self.already_present + self.failed

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def summary(self) -> str:
        rate = self.total / self.seconds if self.seconds > 0 else 0.0
        return (
            f"{self.total} instances in {self.seconds:.1f} s ({rate:.0f}/s): "
            f"{self.stored} stored, {self.already_present} already present, "
            f"{self.failed} failed, {self.bytes_sent / 1e6:.1f} MB sent"
        )


def to_bytes(item: Item) -> bytes:
    """The DICOM Part 10 bytes of a dataset (written in memory), a file, or bytes as given."""
    if isinstance(item, bytes):
        return item
    if isinstance(item, pydicom.Dataset):
        buf = io.BytesIO()
        pydicom.dcmwrite(buf, item, enforce_file_format=True)
        return buf.getvalue()
    return Path(item).read_bytes()


def _label(item: Item) -> str:
    if isinstance(item, pydicom.Dataset):
        return str(item.get("SOPInstanceUID", "<dataset without SOPInstanceUID>"))
    if isinstance(item, bytes):
        return f"<{len(item)} bytes>"
    return str(item)


class _Poster:
    def __init__(
        self, base_url: str, auth: tuple[str, str] | None, timeout: float, retries: int
    ) -> None:
        self.url = base_url.rstrip("/") + "/instances"
        self.auth = auth
        self.timeout = timeout
        self.retries = retries
        self._local = threading.local()

    def session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = requests.Session()
            s.auth = self.auth
            s.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=1))
            s.mount("https://", HTTPAdapter(pool_connections=1, pool_maxsize=1))
            s.headers["Content-Type"] = "application/dicom"
            s.headers["Accept"] = "application/json"
            self._local.session = s
        return s

    def post(self, item: Item) -> tuple[str, int, str]:
        """Returns (outcome, bytes sent, reason) with outcome stored|present|failed."""
        try:
            body = to_bytes(item)
        except Exception as exc:  # unreadable file, unwritable dataset
            return "failed", 0, f"cannot serialise: {exc}"
        reason = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(2.0, 0.2 * 2**attempt))
            try:
                resp = self.session().post(self.url, data=body, timeout=self.timeout)
            except requests.RequestException as exc:
                reason = f"{type(exc).__name__}: {exc}"
                continue  # re-posting is idempotent in Orthanc
            if resp.status_code in _RETRY_STATUSES:
                reason = f"HTTP {resp.status_code}"
                continue
            if resp.status_code != 200:
                return "failed", len(body), f"HTTP {resp.status_code}: {resp.text[:300]}"
            try:
                status = resp.json().get("Status", "")
            except ValueError:
                return "failed", len(body), f"not JSON: {resp.text[:300]}"
            if status == "Success":
                return "stored", len(body), ""
            if status == "AlreadyStored":
                return "present", len(body), ""
            return "failed", len(body), f"Orthanc status {status!r}"
        return "failed", len(body), reason


def _check(base_url: str, auth: tuple[str, str] | None, timeout: float) -> None:
    url = base_url.rstrip("/") + "/system"
    try:
        resp = requests.get(url, auth=auth, timeout=timeout)
    except requests.RequestException as exc:
        raise OrthancUnavailable(f"{url}: {exc}") from exc
    if resp.status_code != 200:
        raise OrthancUnavailable(f"{url}: HTTP {resp.status_code}")


def load_into_orthanc(
    datasets_or_paths: Iterable[Item],
    *,
    base_url: str,
    auth: tuple[str, str] | None,
    workers: int = 8,
    timeout: float = 60.0,
    retries: int = 2,
) -> LoadReport:
    """POST every item to ``{base_url}/instances`` from ``workers`` threads.

    Items are pydicom datasets, paths of DICOM files, or Part 10 bytes; the iterable is
    consumed lazily (at most a few items per worker are held at once), so a generator of a
    large corpus can be passed directly. Connection errors and 502/503/504 are retried
    ``retries`` times. Raises :class:`OrthancUnavailable` if ``GET /system`` fails first.
    """
    if workers < 1:
        raise ValueError("workers must be >= 1")
    _check(base_url, auth, timeout)
    poster = _Poster(base_url, auth, timeout, retries)
    report = LoadReport()
    started = time.perf_counter()
    max_pending = workers * 4

    def account(fut: Future[tuple[str, int, str]], label: str) -> None:
        outcome, sent, reason = fut.result()
        report.bytes_sent += sent
        if outcome == "stored":
            report.stored += 1
        elif outcome == "present":
            report.already_present += 1
        else:
            report.failed += 1
            if len(report.failures) < _MAX_FAILURES_KEPT:
                report.failures.append((label, reason))

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="orthanc-load") as pool:
        pending: dict[Future[tuple[str, int, str]], str] = {}
        for item in _iterate(datasets_or_paths):
            if len(pending) >= max_pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    account(fut, pending.pop(fut))
            pending[pool.submit(poster.post, item)] = _label(item)
        for fut in list(pending):
            account(fut, pending.pop(fut))
    report.seconds = time.perf_counter() - started
    return report


def _iterate(items: Iterable[Item]) -> Iterator[Item]:
    if isinstance(items, pydicom.Dataset | bytes | str | os.PathLike):
        yield items  # a single item passed by mistake still works
        return
    yield from items
