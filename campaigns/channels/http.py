"""One HTTP POST with retries, shared by the backends that talk to a provider over HTTP (SMS, webhooks).

Only what may pass is retried, inside the call, with exponential backoff: a timeout, a refused or
dropped connection, a 5xx, a 429. Any other 4xx is the provider saying no to this message, and is
answered at once. The standard library does the work (urllib.request): no client to install.
Credentials travel in the headers given, and are never put in an error or a log line.
"""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from campaigns.channels.base import OutboundMessage, Outcome

# What an answer is kept of: enough to show the provider's reason, not a whole page.
ANSWER_LIMIT = 2000
BACKOFF_CAP_SECONDS = 30.0


@dataclass(frozen=True)
class HttpResult:
    ok: bool  # a 2xx
    transient: bool  # worth trying again later (after the retries inside the call)
    status: int | None  # None when no answer came (timeout, no connection)
    body: str
    error: str  # why it failed, in a line, for Delivery.detail


def _is_transient_status(status: int) -> bool:
    return status == 429 or status >= 500


def http_post(
    *,
    url: str,
    body: bytes,
    headers: dict[str, str],
    timeout: float = 10.0,
    retries: int = 2,
    backoff: float = 0.5,
) -> HttpResult:
    """POST `body` to `url`, trying up to `retries` more times after a transient failure, waiting
    `backoff`, then twice, four times as long. Never raises for what the network or the server did."""
    if urlsplit(url).scheme not in ("http", "https"):
        return HttpResult(False, False, None, "", f"Not an http(s) URL: {url!r}")
    result = HttpResult(False, True, None, "", "not tried")
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(min(backoff * 2 ** (attempt - 1), BACKOFF_CAP_SECONDS))
        result = _post_once(url=url, body=body, headers=headers, timeout=timeout)
        if not result.transient:
            return result
    return result


def _post_once(*, url: str, body: bytes, headers: dict[str, str], timeout: float) -> HttpResult:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 - scheme checked
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - scheme checked
            answer = response.read(ANSWER_LIMIT).decode("utf-8", "replace")
            return HttpResult(True, False, response.status, answer, "")
    except urllib.error.HTTPError as error:
        answer = error.read(ANSWER_LIMIT).decode("utf-8", "replace") if error.fp else ""
        error.close()
        transient = _is_transient_status(error.code)
        return HttpResult(False, transient, error.code, answer, f"HTTP {error.code}: {answer[:500]}".strip())
    except TimeoutError as error:
        return HttpResult(False, True, None, "", f"Timed out after {timeout:g} s ({error})")
    except urllib.error.URLError as error:
        reason = error.reason
        if isinstance(reason, TimeoutError):
            return HttpResult(False, True, None, "", f"Timed out after {timeout:g} s ({reason})")
        return HttpResult(False, True, None, "", f"No connection: {reason}")
    except (OSError, http.client.HTTPException) as error:  # a connection reset or dropped mid-answer
        return HttpResult(False, True, None, "", f"{type(error).__name__}: {error}")


def outcomes_each(
    messages: Sequence[OutboundMessage],
    post: Callable[[OutboundMessage], HttpResult],
    *,
    provider_id: Callable[[HttpResult, OutboundMessage], str] | None = None,
    give_up_after: int = 3,
) -> list[Outcome]:
    """POST each message and turn each answer into its outcome. After `give_up_after` transient
    failures in a row the provider is taken to be down: the rest of the batch is left transient
    untried, so that a hanging provider does not keep the batch past its lease."""
    outcomes: list[Outcome] = []
    in_a_row = 0
    for index, message in enumerate(messages):
        result = post(message)
        if result.ok:
            in_a_row = 0
            outcomes.append(
                Outcome.sent(message, provider_id(result, message) if provider_id else message.idempotency_key)
            )
        elif result.transient:
            in_a_row += 1
            outcomes.append(Outcome.transient(message, result.error))
            if give_up_after and in_a_row >= give_up_after:
                error = f"Not tried: the provider failed {in_a_row} times in a row ({result.error})"
                outcomes.extend(Outcome.transient(rest, error) for rest in messages[index + 1 :])
                break
        else:
            in_a_row = 0
            outcomes.append(Outcome.permanent(message, result.error))
    return outcomes
