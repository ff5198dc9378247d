"""Keep credentials out of logs, saved files and error messages.

Storage options are never written anywhere by the pipeline; this module removes what
could still leak through text: the secret values of the run's storage options and of
the usual credential environment variables, ``name=value`` pairs whose name says
secret, AWS access key ids, and ``user:password@`` in URLs.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "***"
#: Option names whose values are credentials (s3fs, gcsfs, adlfs, HTTP auth...).
SECRET_NAME = re.compile(r"(secret|token|password|passwd|credential|private|signature|"
                         r"sas|account_key|connection_string|^key$|access_key)", re.IGNORECASE)
#: Environment variables that hold credentials.
SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
              "AWS_ACCESS_KEY_ID", "AZURE_STORAGE_KEY", "AZURE_STORAGE_ACCOUNT_KEY",
              "AZURE_STORAGE_SAS_TOKEN", "AZURE_STORAGE_CONNECTION_STRING", "GOOGLE_TOKEN")
PATTERNS = (
    re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),  # AWS access key ids
    re.compile(r"(?<=://)[^/@\s:]+:[^/@\s]+(?=@)"),  # user:password@ in URLs
)
#: ``name=value`` / ``"name": "value"`` pairs whose name says secret: the value is masked.
#: Names ending in Error/Exception/Warning are exception classes, not credentials.
_PAIR = re.compile(r"(?i)(\b[\w-]*(?:secret|token|password|passwd|signature|credential)"
                   r"[\w-]*(?<!error)(?<!exception)(?<!warning)[\"']?\s*[=:]\s*[\"']?)"
                   r"([^\s\"',&;}]+)")


def secrets_of(storage_options: Mapping[str, Any] | None) -> frozenset[str]:
    """The secret strings of ``storage_options`` (nested) and of the environment."""
    found = {os.environ[name] for name in SECRET_ENV if os.environ.get(name)}
    found.update(_walk(storage_options or {}))
    return frozenset(s for s in found if len(s) >= 4)


def _walk(options: Mapping[str, Any]) -> Iterable[str]:
    for name, value in options.items():
        if isinstance(value, Mapping):
            yield from _walk(value)
        elif isinstance(value, str) and SECRET_NAME.search(str(name)):
            yield value


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with known secrets and anything that looks like a credential masked."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = PATTERNS[0].sub(MASK, text)
    text = PATTERNS[1].sub(MASK, text)
    return _PAIR.sub(lambda m: m.group(1) + MASK, text)


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in every record it passes."""

    def __init__(self, secrets: Iterable[str] = ()):
        super().__init__()
        self.secrets = frozenset(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace the record's message by its redacted text."""
        message = record.getMessage()
        clean = redact(message, self.secrets)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            scrub(record.exc_info[1], self.secrets)
        return True


def scrub(exc: BaseException, secrets: Iterable[str] = ()) -> BaseException:
    """Mask secrets in ``exc``'s message (and its causes') in place; return it."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current)
        clean = redact(text, secrets)
        if clean != text:
            current.args = (clean,)
        notes = getattr(current, "__notes__", None)
        if notes:
            current.__notes__ = [redact(n, secrets) for n in notes]
        current = current.__cause__ or current.__context__
    return exc
