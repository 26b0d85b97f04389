"""HTTP downloads for ``data import``: a timeout and a size cap per attempt, retries with back-off for errors that
may pass, none for those that will not, and a record of which hosts answered (to tell being offline apart)."""

from __future__ import annotations

import http.client
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter

from emotionlab.data.importer.items import ImportOptions, Status, too_large
from emotionlab.isolation import error_reason
from emotionlab.version import __version__

RETRY_HTTP_CODES = (408, 425, 429, 500, 502, 503, 504)
# A host whose first URLs all failed to connect is not tried for the rest of the list.
HOST_DOWN_AFTER = 2


class FetchError(Exception):
    """Why a download failed, whether another attempt may help, and whether it means 'no network'."""

    def __init__(self, reason: str, *, retry: bool, unreachable: bool = False, status: Status = "failed"):
        super().__init__(reason)
        self.reason, self.retry, self.unreachable, self.status = reason, retry, unreachable, status


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) only (urllib would also follow one to ftp)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urllib.parse.urlsplit(newurl).scheme.lower() not in ("http", "https"):
            raise FetchError(f"redirected to a non-http URL ({newurl})", retry=False)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_HttpOnlyRedirects)


class Network:
    """Which hosts answered and which could not be reached (shared by the download threads)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.answered: set[str] = set()
        self.unreachable: Counter = Counter()
        self.first_unreachable = ""

    def mark_answered(self, host: str) -> None:
        with self._lock:
            self.answered.add(host)

    def mark_unreachable(self, host: str, reason: str) -> None:
        with self._lock:
            self.unreachable[host] += 1
            self.first_unreachable = self.first_unreachable or f"{host}: {reason}"

    def host_down(self, host: str) -> bool:
        with self._lock:
            return host not in self.answered and self.unreachable[host] >= HOST_DOWN_AFTER


def _classify(error: BaseException) -> FetchError:
    """A download exception as a reason, whether another attempt may help, and whether it means 'no network'."""
    if isinstance(error, FetchError):
        return error
    if isinstance(error, urllib.error.HTTPError):
        return FetchError(f"HTTP {error.code} {error.reason}", retry=error.code in RETRY_HTTP_CODES)
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(reason, socket.gaierror):
        return FetchError("host name not found (DNS)", retry=True, unreachable=True)
    if isinstance(reason, ConnectionRefusedError):
        return FetchError("connection refused", retry=True, unreachable=True)
    if isinstance(reason, TimeoutError | socket.timeout):
        return FetchError("timed out", retry=True)
    if isinstance(reason, http.client.IncompleteRead | http.client.RemoteDisconnected | ConnectionError):
        return FetchError(f"connection broken ({type(reason).__name__})", retry=True)
    if isinstance(reason, OSError) and "CERTIFICATE" in str(reason).upper():
        return FetchError(f"TLS certificate not accepted ({reason})", retry=False)
    if isinstance(reason, OSError | http.client.HTTPException):
        return FetchError(f"download failed ({error_reason(reason)})", retry=True)
    return FetchError(f"download failed ({error_reason(error)})", retry=False)


def _fetch_once(url: str, options: ImportOptions, network: Network, host: str) -> bytes:
    """One attempt: the whole body, or a ``FetchError`` as soon as it is too large, too slow or broken."""
    request = urllib.request.Request(url, headers={"User-Agent": f"emotionlab/{__version__}"})
    deadline = (
        time.monotonic() + 6 * options.timeout
    )  # a server that trickles bytes cannot hold a thread for ever
    try:
        with _OPENER.open(request, timeout=options.timeout) as response:
            network.mark_answered(host)
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > options.max_bytes:
                raise FetchError(too_large(int(declared), options.max_bytes), retry=False, status="rejected")
            chunks, size = [], 0
            while chunk := response.read1(1 << 16):  # what has arrived: a trickle cannot block a read
                size += len(chunk)
                if size > options.max_bytes:
                    raise FetchError(
                        f"file too large (more than {options.max_bytes:,} bytes); download stopped",
                        retry=False,
                        status="rejected",
                    )
                if time.monotonic() > deadline:
                    raise FetchError(
                        f"timed out (still downloading after {6 * options.timeout:g} s)", retry=True
                    )
                chunks.append(chunk)
            if declared and declared.isdigit() and size != int(declared):  # http.client does not check this
                raise FetchError(f"connection broken (got {size:,} of {int(declared):,} bytes)", retry=True)
            return b"".join(chunks)
    except urllib.error.HTTPError as error:
        network.mark_answered(host)
        raise _classify(error) from error
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as error:
        raise _classify(error) from error


def fetch_url(url: str, options: ImportOptions, network: Network, stop: threading.Event) -> bytes:
    """The body of ``url``, with retries; raises ``FetchError`` with the last reason."""
    host = urllib.parse.urlsplit(url).netloc.lower()
    for attempt in range(options.retries + 1):
        if network.host_down(host):
            raise FetchError(
                f"host not reachable (earlier downloads from {host} failed to connect)",
                retry=False,
                unreachable=True,
            )
        try:
            return _fetch_once(url, options, network, host)
        except FetchError as error:
            if not error.retry or attempt == options.retries:
                if error.unreachable:
                    network.mark_unreachable(host, error.reason)
                raise
            if stop.wait(options.backoff * 2**attempt):
                raise FetchError("stopped", retry=False) from error
    raise AssertionError("unreachable")
