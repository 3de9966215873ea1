"""Pooled HTTP sessions with our own retry policy and authentication (FHIR and PACS alike)."""

from __future__ import annotations

import threading
import time

import requests
from pydantic import SecretStr
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from sidecar.settings import HttpAuth

RETRY_STATUSES = frozenset({502, 503, 504})


def pooled_session(
    *, pool_size: int, retries: int, methods: frozenset[str] = frozenset({"GET"})
) -> requests.Session:
    """A session whose connections are reused; retries only connect errors and 502/503/504.

    Read timeouts are not retried (the caller's deadline would double), nor are methods
    outside ``methods``; Retry-After is not honoured, so a retry never outlives the timeout.
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
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


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
