"""Pooled HTTP sessions with our own retry policy and authentication (FHIR and PACS alike)."""

from __future__ import annotations

import io
import threading
import time
from typing import Any

import requests
from pydantic import SecretStr
from requests.adapters import HTTPAdapter
from urllib3 import exceptions as urllib3_exceptions
from urllib3.util.retry import Retry

from sidecar.settings import HttpAuth

RETRY_STATUSES = frozenset({502, 503, 504})


def pooled_session(
    *,
    pool_size: int,
    retries: int,
    methods: frozenset[str] = frozenset({"GET"}),
    deadline: float | None = None,
) -> requests.Session:
    """A session whose connections are reused; retries only connect errors and 502/503/504.

    Read timeouts are not retried (the caller's deadline would double), nor are methods
    outside ``methods``; Retry-After is not honoured, so a retry never outlives the timeout.
    With ``deadline`` (seconds), every answer must arrive whole within it
    (:class:`DeadlineAdapter`).
    """
    retry = Retry(
        total=retries,
        connect=retries,
        read=False,  # re-raise read timeouts as such (no retry)
        status=retries,
        other=0,
        allowed_methods=methods,
        status_forcelist=RETRY_STATUSES,
        backoff_factor=0.2,
        respect_retry_after_header=False,
        raise_on_status=False,
    )
    session = requests.Session()
    options = {"pool_connections": 4, "pool_maxsize": pool_size, "max_retries": retry}
    adapter = HTTPAdapter(**options) if deadline is None else DeadlineAdapter(deadline, **options)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class DeadlineAdapter(HTTPAdapter):
    """An adapter that bounds the whole answer, not only each wait between bytes.

    ``requests``' read timeout restarts with every byte, so a server that drips its answer
    (one byte a second) holds the caller forever. This adapter reads the body itself, with
    ``read1`` (returns whatever bytes arrived), and gives up with ``requests.Timeout`` once
    ``deadline`` seconds have passed since the request was sent. Callers that ask to
    stream get the stream as it is.
    """

    def __init__(self, deadline: float, **options: Any) -> None:
        super().__init__(**options)
        self.deadline = deadline

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, stream: bool = False, **kwargs: Any
    ) -> requests.Response:
        give_up = time.monotonic() + self.deadline
        response = super().send(request, stream=True, **kwargs)
        if stream:
            return response
        raw = response.raw
        chunks: list[bytes] = []
        try:
            while chunk := raw.read1(64 * 1024, decode_content=True):
                chunks.append(chunk)
                if time.monotonic() > give_up:
                    raise requests.Timeout(
                        f"no whole answer within {self.deadline:g} s", request=request
                    )
        except urllib3_exceptions.ReadTimeoutError as exc:
            response.close()
            raise requests.ReadTimeout(exc, request=request) from exc
        except (urllib3_exceptions.ProtocolError, urllib3_exceptions.DecodeError) as exc:
            response.close()
            raise requests.ConnectionError(exc, request=request) from exc
        except requests.Timeout:
            response.close()  # the connection is half read: never back into the pool
            raise
        raw.release_conn()
        response.raw = io.BytesIO(b"".join(chunks))
        return response


class BearerAuth(requests.auth.AuthBase):
    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request


def _secret(value: SecretStr | None) -> str:
    return value.get_secret_value() if value is not None else ""


class ClientCredentialsAuth(requests.auth.AuthBase):
    """OAuth2 client-credentials (RFC 6749 4.4): a cached token, renewed before it expires."""

    def __init__(self, auth: HttpAuth, *, timeout: float) -> None:
        self._auth = auth
        self._timeout = timeout
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self._http = requests.Session()

    def token(self, *, renew: bool = False) -> str:
        with self._lock:
            if renew or self._token is None or time.monotonic() > self._expires_at:
                data = {"grant_type": "client_credentials"}
                if self._auth.scope:
                    data["scope"] = self._auth.scope
                response = self._http.post(
                    str(self._auth.token_url),
                    data=data,
                    auth=(str(self._auth.client_id), _secret(self._auth.client_secret)),
                    timeout=self._timeout,
                )
                response.raise_for_status()
                body = response.json()
                self._token = str(body["access_token"])
                lifetime = float(body.get("expires_in", 300))
                self._expires_at = time.monotonic() + max(lifetime - 30, lifetime / 2)
            return self._token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token()}"
        request.register_hook("response", self._renew_on_401)
        return request

    def _renew_on_401(self, response: requests.Response, **kwargs) -> requests.Response:
        if response.status_code != 401 or getattr(response.request, "_renewed", False):
            return response
        retry = response.request.copy()
        retry.headers["Authorization"] = f"Bearer {self.token(renew=True)}"
        retry._renewed = True  # type: ignore[attr-defined]
        response.content  # noqa: B018 - release the connection before reusing it
        response.raw.release_conn()
        again = response.connection.send(retry, **kwargs)
        again.history.append(response)
        return again


def requests_auth(auth: HttpAuth, *, timeout: float) -> requests.auth.AuthBase | None:
    """The requests auth object for configured credentials (None: anonymous)."""
    if auth.mode == "basic":
        return requests.auth.HTTPBasicAuth(str(auth.username), _secret(auth.password))
    if auth.mode == "bearer":
        return BearerAuth(_secret(auth.token))
    if auth.mode == "oauth2":
        return ClientCredentialsAuth(auth, timeout=timeout)
    return None
