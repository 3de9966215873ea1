"""HTTP as every adapter uses it: pooled sessions, bounded answers, our credentials.

- :func:`pooled_session`: connections reused; connect errors and 502/503/504 retried by
  urllib3's ``Retry`` (read timeouts never: the caller's deadline would double); no
  redirects followed (an API answer never redirects, and a redirect to another host must
  not receive our credentials).
- :class:`BoundedAdapter` / :func:`read_bounded`: every answer arrives whole within a
  deadline (``requests``' read timeout restarts with each byte: a server dripping one byte a
  second would hold us forever) and within a size, counted *after* decompression with
  bounded ``zlib`` output (a 300 KB gzip answer may expand to 300 MB).
- :class:`ClientCredentials`: OAuth2 client credentials (RFC 6749 4.4) with a client secret
  or SMART Backend Services' ``private_key_jwt`` (RFC 7523), through authlib; a cached
  token, renewed before it expires, and dropped by :func:`renewing` after a 401.
"""

from __future__ import annotations

import io
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any, TypeVar

import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from pydantic import SecretStr
from requests.adapters import HTTPAdapter
from urllib3 import exceptions as urllib3_exceptions
from urllib3.util.retry import Retry

from sidecar.settings import HttpAuth

T = TypeVar("T")
RETRY_STATUSES = frozenset({502, 503, 504})
#: Content codings we accept (and announce): each is decoded with a bounded output.
ACCEPT_ENCODING = "gzip, deflate"
CHUNK = 64 * 1024


class AnswerTooLarge(requests.RequestException):
    """An answer was larger than the configured limit (decoded bytes)."""


def pooled_session(
    *,
    pool_size: int,
    retries: int,
    methods: frozenset[str] = frozenset({"GET"}),
    deadline: float | None = None,
    max_bytes: int | None = None,
) -> requests.Session:
    """A session whose connections are reused; retries only connect errors and 502/503/504.

    Read timeouts are not retried, nor are methods outside ``methods``; Retry-After is not
    honoured, so a retry never outlives the timeout. With ``deadline`` (seconds) and
    ``max_bytes`` every answer must arrive whole within them (:class:`BoundedAdapter`).
    """
    retry = Retry(
        total=retries,
        connect=retries,
        read=False,  # re-raise read timeouts as such (no retry)
        status=retries,
        other=0,
        redirect=0,
        allowed_methods=methods,
        status_forcelist=RETRY_STATUSES,
        backoff_factor=0.2,
        respect_retry_after_header=False,
        raise_on_status=False,
        raise_on_redirect=False,
    )
    session = requests.Session()
    session.max_redirects = 0  # a redirect is an error (requests.TooManyRedirects)
    session.trust_env = False  # no proxies or netrc credentials from the environment
    session.headers["Accept-Encoding"] = ACCEPT_ENCODING
    options = {"pool_connections": 4, "pool_maxsize": pool_size, "max_retries": retry}
    if deadline is None:
        adapter: HTTPAdapter = HTTPAdapter(**options)
    else:
        adapter = BoundedAdapter(deadline, max_bytes, **options)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _decoder(encoding: str) -> Any:
    """A zlib decompressor for one Content-Encoding (None: identity)."""
    coding = encoding.strip().lower()
    if coding in ("", "identity"):
        return None
    if coding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if coding == "deflate":
        return zlib.decompressobj()
    raise urllib3_exceptions.DecodeError(f"unsupported Content-Encoding {encoding!r}")


def read_bounded(
    response: requests.Response,
    *,
    give_up: float,
    max_bytes: int | None,
) -> bytes:
    """The whole (decoded) body of a streamed response, or ``requests.Timeout`` past the
    monotonic time ``give_up`` / :class:`AnswerTooLarge` past ``max_bytes`` decoded bytes.
    The connection goes back to the pool only after a complete read."""
    limit = max_bytes if max_bytes is not None else float("inf")
    decoder = _decoder(response.headers.get("Content-Encoding", ""))
    raw = response.raw
    out = bytearray()
    try:
        while chunk := raw.read1(CHUNK, decode_content=False):
            while chunk:
                if decoder is None:
                    piece, chunk = chunk, b""
                else:  # never more than what may still fit: a bomb stops here
                    piece = decoder.decompress(chunk, int(min(limit - len(out) + 1, 2**30)))
                    chunk = decoder.unconsumed_tail
                out += piece
                if len(out) > limit:
                    raise AnswerTooLarge(
                        f"the answer is larger than {max_bytes} bytes", request=response.request
                    )
                if not piece and chunk:  # no progress is possible with this input
                    raise zlib.error("the compressed answer does not decode")
            if time.monotonic() > give_up:
                raise requests.Timeout("no whole answer in time", request=response.request)
        if decoder is not None:
            out += decoder.flush()
            if len(out) > limit:
                raise AnswerTooLarge(
                    f"the answer is larger than {max_bytes} bytes", request=response.request
                )
    except urllib3_exceptions.ReadTimeoutError as exc:
        response.close()
        raise requests.ReadTimeout(exc, request=response.request) from exc
    except (urllib3_exceptions.ProtocolError, urllib3_exceptions.DecodeError, zlib.error) as exc:
        response.close()
        raise requests.ConnectionError(exc, request=response.request) from exc
    except requests.RequestException:
        response.close()  # the connection is half read: never back into the pool
        raise
    raw.release_conn()  # read to the end: the connection may serve the next request
    return bytes(out)


def replace_body(response: requests.Response, body: bytes) -> requests.Response:
    """The response with ``body`` as its (already decoded) content."""
    response.raw = io.BytesIO(body)
    response.headers.pop("Content-Encoding", None)
    return response


class BoundedAdapter(HTTPAdapter):
    """An adapter that bounds every whole answer in time and (decoded) size; callers that
    ask to stream get the stream as it is and bound it themselves."""

    def __init__(self, deadline: float, max_bytes: int | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.deadline = deadline
        self.max_bytes = max_bytes

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, stream: bool = False, **kwargs: Any
    ) -> requests.Response:
        give_up = time.monotonic() + self.deadline
        response = super().send(request, stream=True, **kwargs)
        if stream:
            return response
        return replace_body(
            response, read_bounded(response, give_up=give_up, max_bytes=self.max_bytes)
        )


def bounded_hook(deadline: float, max_bytes: int) -> Callable[..., requests.Response]:
    """A response hook for clients that cannot take our session (fhirpy calls
    ``requests.request``): with ``stream=True`` it reads each answer under the same bounds
    (the deadline counted from the response's headers, the connect timeout before)."""

    def hook(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        give_up = time.monotonic() + deadline
        return replace_body(response, read_bounded(response, give_up=give_up, max_bytes=max_bytes))

    return hook


# -- credentials -------------------------------------------------------------------------------


class BearerAuth(requests.auth.AuthBase):
    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request


def _secret(value: SecretStr | None) -> str:
    return value.get_secret_value() if value is not None else ""


class ClientCredentials(requests.auth.AuthBase):
    """OAuth2 client credentials through authlib: a cached access token, fetched again a
    little before it expires or after :meth:`expire` (a 401: revoked, or the server's clock).

    With ``private_key`` the client authenticates with a signed JWT assertion
    (``private_key_jwt``, RFC 7523 2.2, as SMART Backend Services require: RS384/ES384
    preferred, ``kid`` from ``key_id``); otherwise with its secret (``client_secret_basic``).
    """

    def __init__(self, auth: HttpAuth, *, timeout: float) -> None:
        self._token_url = str(auth.token_url)
        self._scope = auth.scope
        self._timeout = timeout
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0
        if auth.private_key is not None:
            self._oauth = OAuth2Session(
                auth.client_id,
                _secret(auth.private_key),
                token_endpoint_auth_method=PrivateKeyJWT.name,
                scope=auth.scope,
            )
            headers = {"kid": auth.key_id} if auth.key_id else None
            alg = "ES384" if "EC PRIVATE" in _secret(auth.private_key) else "RS384"
            self._oauth.register_client_auth_method(
                PrivateKeyJWT(self._token_url, headers=headers, alg=alg)
            )
        else:
            self._oauth = OAuth2Session(
                auth.client_id,
                _secret(auth.client_secret),
                token_endpoint_auth_method="client_secret_basic",
                scope=auth.scope,
            )
        self._oauth.trust_env = False
        self._oauth.max_redirects = 0

    def token(self) -> str:
        with self._lock:
            if self._token is None or time.monotonic() >= self._renew_at:
                answer = self._oauth.fetch_token(
                    self._token_url, grant_type="client_credentials", timeout=self._timeout
                )
                self._token = str(answer["access_token"])
                lifetime = float(answer.get("expires_in") or 300)
                self._renew_at = time.monotonic() + max(lifetime - 30, lifetime / 2)
            return self._token

    def expire(self) -> None:
        """Forget the token: the next request fetches a new one."""
        with self._lock:
            self._token = None

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token()}"
        return request


def renewing(auth: Any, call: Callable[[], T], is_unauthorized: Callable[[Exception], bool]) -> T:
    """Run ``call``; after a 401, when ``auth`` can fetch a new token, once more with it."""
    try:
        return call()
    except Exception as exc:
        if not (isinstance(auth, ClientCredentials) and is_unauthorized(exc)):
            raise
        auth.expire()
        return call()


def requests_auth(auth: HttpAuth, *, timeout: float) -> requests.auth.AuthBase | None:
    """The requests auth object for configured credentials (None: anonymous)."""
    if auth.mode == "basic":
        return requests.auth.HTTPBasicAuth(str(auth.username), _secret(auth.password))
    if auth.mode == "bearer":
        return BearerAuth(_secret(auth.token))
    if auth.mode == "oauth2":
        return ClientCredentials(auth, timeout=timeout)
    return None
