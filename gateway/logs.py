"""Logging that cannot leak: every record is scrubbed of the configured secrets before it is written.

Personal data is kept out of log calls by convention (log delivery ids, never addresses or names); secrets are
additionally masked here, whatever a library or a careless message puts into a record.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable


class SecretFilter(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        masked = message
        for secret in self.secrets:
            masked = masked.replace(secret, "***")
        if masked != message or record.exc_info:
            if record.exc_info:
                text = logging.Formatter().formatException(record.exc_info)
                for secret in self.secrets:
                    text = text.replace(secret, "***")
                masked = f"{masked}\n{text}"
                record.exc_info = None
                record.exc_text = None
            record.msg, record.args = masked, None
        return True


def setup_logging(verbosity: int, secrets: Iterable[str] = ()) -> None:
    """Log to stderr: warnings by default, info with -v, debug with -vv; secrets masked."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(SecretFilter(secrets))
    handler.set_name("zvonok")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "zvonok"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
