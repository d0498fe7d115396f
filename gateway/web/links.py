"""Signed, expiring links in the parents' letters: «Ознакомлен» and «Отписаться».

A link names one e-mail delivery (one letter to one mailbox) and says what it is for and until when it works:

    {public_url}/p/ack/{delivery id}.{expires, unix seconds}.{signature}

The signature is HMAC-SHA256 over the purpose, the delivery id and the expiry, with the installation's secret
(`secret_env` in zvonok.yaml), cut to 128 bits and base64url-encoded. Nothing else is in the link: no e-mail
address, no name. The expiry is counted from the announcement's creation, so every retry of a letter carries
the same links.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime, timedelta

from gateway.domain import parse_number

ACK = "ack"
UNSUBSCRIBE = "unsubscribe"
LIFETIME = {ACK: timedelta(days=60), UNSUBSCRIBE: timedelta(days=365)}


class LinkError(Exception):
    """A link that is malformed, forged or expired; `str()` is Russian, for the parent."""


def _signature(secret: str, purpose: str, delivery_id: int, expires: int) -> str:
    mac = hmac.new(secret.encode(), f"zvonok:{purpose}:{delivery_id}:{expires}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()[:16]).decode().rstrip("=")


def sign(secret: str, purpose: str, delivery_id: int, expires: datetime) -> str:
    """The token of a link for `purpose` to one delivery, valid until `expires`."""
    if not secret:
        raise ValueError("no secret to sign links with")
    stamp = int(expires.timestamp())
    return f"{delivery_id}.{stamp}.{_signature(secret, purpose, delivery_id, stamp)}"


def verify(secret: str, purpose: str, token: str, now: datetime) -> int:
    """The delivery id a valid token names; LinkError for a bad, forged or expired one."""
    parts = token.split(".")
    numbers = [parse_number(p) for p in parts[:2]]
    if len(parts) != 3 or numbers[0] is None or numbers[1] is None:
        raise LinkError("ссылка повреждена: скопируйте её из письма целиком")
    delivery_id, stamp = numbers[0], numbers[1]
    if not secret or not hmac.compare_digest(parts[2], _signature(secret, purpose, delivery_id, stamp)):
        raise LinkError("ссылка недействительна: скопируйте её из письма целиком")
    if now.timestamp() > stamp:
        raise LinkError("срок действия ссылки истёк")
    return delivery_id


def letter_links(public_url: str, secret: str, delivery_id: int, created_at: datetime) -> tuple[str, str]:
    """(ack URL, unsubscribe URL) for a letter of an announcement created at `created_at`."""
    base = public_url.rstrip("/")
    ack = sign(secret, ACK, delivery_id, created_at + LIFETIME[ACK])
    unsubscribe = sign(secret, UNSUBSCRIBE, delivery_id, created_at + LIFETIME[UNSUBSCRIBE])
    return f"{base}/p/ack/{ack}", f"{base}/p/unsubscribe/{unsubscribe}"
