"""Who is asking, and what they may do: staff passwords (argon2id), the login throttle, browser sessions with
their CSRF tokens, and API tokens for integrations. The store keeps only hashes. What each role may do is the
route table's business (gateway.web.app). How and why: docs/architecture.md, "Who is asking".
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from gateway.domain import Role, School, Staff
from gateway.errors import InvalidInput, NotFound, Problem
from gateway.store.base import TokenRow

if TYPE_CHECKING:
    from gateway.app import Gateway

SESSION_COOKIE = "zvonok_session"
LOGIN_COOKIE = "zvonok_login"
DEVICE_COOKIE = "zvonok_device"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf"
SESSION_LIFETIME = timedelta(hours=12)
MIN_PASSWORD = 10
MAX_PASSWORD = 256
TOKEN_PREFIX = "zv_"  # noqa: S105 - the prefix, not a token

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True, slots=True)
class Principal:
    """A signed-in staff member: by a browser session (with its CSRF token) or by an API token."""

    school: School
    staff: Staff
    via: str  # "session" | "token"
    csrf_token: str = ""
    session_hash: str = ""

    @property
    def role(self) -> Role:
        return self.staff.role

    @property
    def administration(self) -> bool:
        """The director and deputies: the whole school."""
        return self.staff.role in (Role.DIRECTOR, Role.DEPUTY)

    def own_classes(self) -> set[str]:
        """The classes this person is the class teacher of."""
        return {name for name, cls in self.school.classes.items() if cls.teacher == self.staff.id}


def digest(value: str) -> str:
    """What the store keeps of a session id or an API token."""
    return hashlib.sha256(value.encode()).hexdigest()


def same(a: str, b: str) -> bool:
    return bool(a) and hmac.compare_digest(a.encode(), b.encode())


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput([Problem("пароль", f"пароль должен быть не короче {MIN_PASSWORD} символов")])
    if len(password) > MAX_PASSWORD:
        raise InvalidInput([Problem("пароль", f"пароль должен быть не длиннее {MAX_PASSWORD} символов")])


def hash_password(password: str) -> str:
    check_password_rules(password)
    return _hasher.hash(password)


async def verify_password(stored: str | None, password: str) -> bool:
    """Whether `password` matches the stored hash (None: no account; checked against a dummy all the same)."""

    def check() -> bool:
        try:
            return _hasher.verify(stored or _DUMMY_HASH, password[:MAX_PASSWORD]) and stored is not None
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.get_running_loop().run_in_executor(None, check)


def find_staff(gateway: Gateway, school_id: str | None, staff_id: str) -> tuple[School, Staff]:
    school = gateway.config.school(school_id)
    member = school.staff.get(staff_id)
    if member is None:
        raise NotFound(f"сотрудник «{staff_id}» не описан в школе «{school.name}»")
    return school, member


async def set_password(gateway: Gateway, school_id: str | None, staff_id: str, password: str) -> Staff:
    school, member = find_staff(gateway, school_id, staff_id)
    hashed = await asyncio.get_running_loop().run_in_executor(None, hash_password, password)
    await gateway.store.set_password(school.id, member.id, hashed, gateway.clock.now())
    return member


async def create_token(gateway: Gateway, school_id: str | None, staff_id: str, label: str = "") -> tuple[Staff, str]:
    """A new API token for a staff member: (who, the token). The token is shown once; the store keeps its hash."""
    school, member = find_staff(gateway, school_id, staff_id)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    await gateway.store.create_api_token(digest(token), school.id, member.id, label, gateway.clock.now())
    return member, token


async def revoke_token(gateway: Gateway, school: School, token_id: int, actor: str) -> tuple[TokenRow, bool]:
    """Revoke one of the school's API tokens at once (the next request with it gets 401), writing the audit log:
    (the token as it now is, whether this call revoked it). NotFound for a token of no such number in the school.
    Who may is the caller's business: the owner, or the IT admin for the school's."""
    row = next((r for r in await gateway.store.api_tokens(school.id) if r.id == token_id), None)
    if row is None:
        raise NotFound(f"токен API № {token_id} не найден")
    now = gateway.clock.now()
    revoked = await gateway.store.revoke_api_token(row.id, now)
    if revoked:
        owner = school.staff.get(row.staff_id)
        label = f" «{row.label}»" if row.label else ""
        details = f"отозван токен API № {row.id}{label} сотрудника {owner.name if owner else row.staff_id}"
        await gateway.store.add_audit(school.id, actor, "token_revoke", details, now)
    after = next(r for r in await gateway.store.api_tokens(school.id) if r.id == row.id)
    return after, revoked


@dataclass(frozen=True, slots=True)
class Pace:
    """How one throttling key's attempts are paced: `free` at once, then a wait after each, doubling from `first`
    up to `cap`. A wait, never a lock: the right password works again once it has passed."""

    free: int
    first: timedelta = timedelta(seconds=1)
    cap: timedelta = timedelta(minutes=15)

    def hold(self, count: int) -> timedelta:
        """The wait after the `count`-th attempt not known to have succeeded."""
        if count < self.free:
            return timedelta(0)
        return min(self.first * (1 << min(count - self.free, 20)), self.cap)


# Per account from one address; per account from everywhere (ASVS 2.2.1: at most ~25 a day past the first
# ten); per account from a browser it was signed in on before (in place of the whole account's key, so an attacker
# cannot keep its owner out); per client address, whatever the login (spraying many accounts).
PAIR, ACCOUNT, DEVICE, ADDRESS = Pace(5), Pace(10), Pace(5), Pace(30)
FORGET = timedelta(days=1)  # a key with no attempt for this long starts again from zero


@dataclass(frozen=True, slots=True)
class Keys:
    """A login attempt's throttling keys: the account from this address, the address, and the account (or, from a
    browser it was signed in on before, that browser's own key in its place)."""

    pair: str
    address: str
    account: str
    device: bool = False

    def paces(self) -> dict[str, Pace]:
        return {self.pair: PAIR, self.address: ADDRESS, self.account: DEVICE if self.device else ACCOUNT}


@dataclass(frozen=True, slots=True)
class Login:
    """What a login attempt came to: a session (`principal`, `session_id`, a fresh `device` cookie), a refusal
    (`principal` None), or a wait (`retry_after` seconds: too many recent attempts, no password was checked)."""

    principal: Principal | None = None
    session_id: str = ""
    device: str = ""
    retry_after: float = 0.0


def _device_mac(stored_hash: str, school_id: str, staff_id: str, nonce: str) -> str:
    # keyed by the password hash (salted, secret): a new password ends every device's standing
    return hmac.new(stored_hash.encode(), f"{school_id}\0{staff_id}\0{nonce}".encode(), "sha256").hexdigest()[:32]


def _device_nonce(cookie: str, stored: str | None, school_id: str, staff_id: str) -> str:
    """The device cookie's nonce when it is one this account signed in with, under its current password."""
    nonce, _, mac = cookie.partition(".")
    if not stored or not nonce or len(cookie) > 100:
        return ""
    return nonce if same(mac, _device_mac(stored, school_id, staff_id, nonce)) else ""


async def throttle_keys(gateway: Gateway, school_id: str, staff_id: str, address: str, nonce: str = "") -> Keys:
    """The keys a login attempt counts against (keyed hashes: no login or address is stored)."""
    secret = await gateway.store.installation()
    name = staff_id.casefold()

    def key(*parts: str) -> str:
        return hmac.new(secret.encode(), "\0".join(parts).encode(), "sha256").hexdigest()

    if nonce:
        return Keys(
            key("pair", school_id, name, address), key("address", address), key("device", school_id, name, nonce), True
        )
    return Keys(key("pair", school_id, name, address), key("address", address), key("account", school_id, name))


async def admit(gateway: Gateway, keys: Keys) -> float:
    """Count one attempt against the keys (`Store.admit_login`, atomic across processes): 0 when a password may
    be checked now, else how many seconds to wait (and nothing was counted)."""
    paces = keys.paces()
    now = gateway.clock.now()
    held = await gateway.store.admit_login(list(paces), lambda k, n: paces[k].hold(n), now, now - FORGET)
    return 0.0 if held is None else max((held - now).total_seconds(), 1.0)


async def login(
    gateway: Gateway, school_id: str, staff_id: str, password: str, *, address: str, device: str = ""
) -> Login:
    """Check a password, under the throttle, and open a session.

    Before any password is checked, one attempt is counted against each key of this login (`admit`): while any
    key waits, the answer is a wait and nothing is checked, so a hundred parallel guesses cost a handful of
    checks. A right password takes back the attempt it counted. Unknown and known logins take the same path and
    the same time (an unknown one is checked against a dummy hash)."""
    school = gateway.config.schools.get(school_id)
    member = school.staff.get(staff_id) if school is not None else None
    stored = await gateway.store.password_hash(school_id, staff_id) if member is not None else None
    nonce = _device_nonce(device, stored, school_id, staff_id)
    keys = await throttle_keys(gateway, school_id, staff_id, address, nonce)
    wait = await admit(gateway, keys)
    if wait:
        return Login(retry_after=wait)
    if not await verify_password(stored, password) or school is None or member is None or stored is None:
        return Login()
    now = gateway.clock.now()
    if nonce:  # a known browser: its own key starts afresh, as the pair's does
        await gateway.store.login_succeeded([keys.pair, keys.account], [keys.address], now)
    else:  # the account's and the address's keys are shared with whoever else tries: only this attempt goes
        await gateway.store.login_succeeded([keys.pair], [keys.address, keys.account], now)
    session_id = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    await gateway.store.create_session(digest(session_id), school.id, member.id, csrf, now, now + SESSION_LIFETIME)
    fresh = nonce or secrets.token_urlsafe(12)
    return Login(
        Principal(school, member, "session", csrf, digest(session_id)),
        session_id,
        f"{fresh}.{_device_mac(stored, school.id, member.id, fresh)}",
    )


async def from_session(gateway: Gateway, session_id: str) -> Principal | None:
    if not session_id or len(session_id) > 200:
        return None
    hashed = digest(session_id)
    row = await gateway.store.session(hashed, gateway.clock.now())
    if row is None:
        return None
    school = gateway.config.schools.get(row.school_id)
    member = school.staff.get(row.staff_id) if school is not None else None
    if school is None or member is None:  # no longer in the school file: no longer let in
        return None
    return Principal(school, member, "session", row.csrf_token, hashed)


async def from_token(gateway: Gateway, token: str) -> Principal | None:
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    row = await gateway.store.api_token(digest(token))
    if row is None:
        return None
    school = gateway.config.schools.get(row.school_id)
    member = school.staff.get(row.staff_id) if school is not None else None
    if school is None or member is None:
        return None
    return Principal(school, member, "token")
