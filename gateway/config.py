"""Loading and validating the configuration directory.

    <config dir>/
      zvonok.yaml          the deployment: database, SMTP relay, MAX/VK endpoints, dispatch tuning
      schools/*.yaml       one file per school: time zone, window, staff, classes and their official chats
      rosters/<school>.csv optional: the roster the demo (and `zvonok check`) reads for that school

Every problem is reported at once, each with its file, line and field, in Russian; a file with any problem is
not used at all. Secrets are never written in these files in production: a token or password is named by the
environment variable that holds it (`token_env`, `password_env`). A literal `token` is accepted for the demo's
emulators only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import time
from ipaddress import ip_network
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from adapters.email import EmailSettings
from gateway.domain import (
    ChatBinding,
    ChatKind,
    Role,
    School,
    SchoolClass,
    Staff,
    parse_class_name,
)
from gateway.errors import InvalidInput, Problem
from gateway.lint import LintSettings
from gateway.policy import BANNED_RULE, banned_links, banned_messenger
from schedules.calendar import RECOMMENDED_VACATIONS_2025_26, SchoolCalendar, calendar_from_config
from schedules.windows import DEFAULT_WINDOW, MessagingWindow

Path_ = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """A messenger provider's connection. `rate` is requests per second per token when one process sends;
    `shared_rate` when several processes share the token through PostgreSQL: their requests reach the provider
    with delays independent of each other, which bunch them more, so the default leaves more headroom (see
    adapters/ratelimit.py, ReservingBucket). `rate:` in zvonok.yaml sets both."""

    base_url: str
    rate: float
    shared_rate: float
    timeout: float = 15.0
    ca_bundle: str = ""
    health_max_age_hours: float = 24.0  # a preview re-checks a chat whose last health check is older


@dataclass(frozen=True, slots=True)
class DispatchSettings:
    batch_size: int = 200
    lease_seconds: float = 120.0
    max_attempts: int = 10
    retry_base_seconds: float = 30.0
    retry_cap_seconds: float = 1800.0
    unknown_recheck_seconds: float = 10.0
    poll_seconds: float = 5.0
    # per messenger channel: bot tokens (schools) one process sends for at once; each sends at most its token's
    # rate, so this bounds a process's messenger throughput (16 x 28 requests/s for MAX)
    accounts_in_parallel: int = 16


MIN_RETENTION_DAYS = 30


@dataclass(frozen=True, slots=True)
class RetentionSettings:
    """How long personal data is kept (152-ФЗ art. 5: no longer than the purpose needs). `days` after an
    announcement was created its recipients' names and addresses are removed (once its work is done), and `days`
    after a guardian left the school (a roster import no longer lists them) the guardian is deleted.

    The default, a year, covers a school year plus the time to answer an appeal about it ("was this family
    told?"); the school's lawyer decides, and writes it in the school's data-processing rules. Fewer than
    `MIN_RETENTION_DAYS` is refused as a likely mistake: the staff need the report of an announcement for weeks."""

    days: int = 365


MAX_PRODUCTION_URL = "https://platform-api2.max.ru"


@dataclass(frozen=True, slots=True)
class Settings:
    database: str = "sqlite:///zvonok.db"
    public_url: str = ""
    secret: str = ""  # signs the parents' links in letters (`secret_env` in zvonok.yaml; a literal for the demo)
    listen: str = "127.0.0.1:8080"  # where `zvonok serve` answers HTTP (webhooks; behind an HTTPS proxy)
    # the reverse proxies whose X-Forwarded-For/-Proto/-Host are believed (addresses or networks); none: ignored
    trusted_proxies: tuple[str, ...] = ()
    login_lists_schools: bool = False  # the login page names the installation's schools to anyone who opens it
    email: EmailSettings = field(
        default_factory=lambda: EmailSettings(host="127.0.0.1", port=25, from_address="noreply@school.example")
    )
    max: ProviderSettings = field(default_factory=lambda: ProviderSettings(MAX_PRODUCTION_URL, 28, 26))
    vk: ProviderSettings = field(default_factory=lambda: ProviderSettings("https://api.vk.ru", 18, 18))
    dispatch: DispatchSettings = field(default_factory=DispatchSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)


@dataclass(frozen=True, slots=True)
class Config:
    root: Path
    settings: Settings
    schools: dict[str, School]
    # channel -> account (school id) -> token
    tokens: dict[str, dict[str, str]]
    # school id -> the secret MAX sends with its webhook calls (X-Max-Bot-Api-Secret)
    webhook_secrets: dict[str, str]
    # school id -> its content policy settings
    lint: dict[str, LintSettings]
    rosters: dict[str, Path]

    def lint_settings(self, school_id: str) -> LintSettings:
        return self.lint.get(school_id) or LintSettings()

    def school(self, school_id: str | None) -> School:
        from gateway.errors import NotFound

        if school_id is None:
            if len(self.schools) == 1:
                return next(iter(self.schools.values()))
            raise NotFound(f"в конфигурации несколько школ ({', '.join(self.schools)}): укажите --school")
        try:
            return self.schools[school_id]
        except KeyError:
            raise NotFound(f"школа «{school_id}» не описана в {self.root / 'schools'}") from None


# --------------------------------------------------------------------------------------------- YAML


_SCALARS = yaml.constructor.SafeConstructor()


class _Doc:
    """A parsed YAML file with the line of every value, and the problems found in it."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        self.lines: dict[Path_, int] = {}

    def load(self, text: str) -> Any:
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark is not None else None
            reason = getattr(exc, "problem", None) or "ошибка синтаксиса"
            self.problems.append(Problem(self.source, f"это не YAML: {reason}", line))
            return None
        if node is None:
            return {}
        return self._convert(node, ())

    def _convert(self, node: yaml.Node, path: Path_) -> Any:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = str(key_node.value)
                if key in out:
                    self.add(path + (key,), "ключ повторяется", line=key_node.start_mark.line + 1)
                out[key] = self._convert(value_node, path + (key,))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self._convert(item, path + (i,)) for i, item in enumerate(node.value)]
        if node.tag == "tag:yaml.org,2002:str":
            return node.value
        try:
            return _SCALARS.construct_object(node)
        except yaml.YAMLError:  # "=" (the obscure !!value), a custom !tag: not something a school file means
            if node.tag.startswith("tag:yaml.org,2002:"):
                return node.value
            self.add(path, f"неизвестный тег YAML {node.tag}: уберите его", line=node.start_mark.line + 1)
            return None

    def add(self, path: Path_, message: str, *, line: int | None = None) -> None:
        if line is None:
            probe = path
            while probe and probe not in self.lines:
                probe = probe[:-1]
            line = self.lines.get(probe)
        self.problems.append(Problem(self.source, message, line, _dotted(path)))


def _dotted(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part + 1}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


# --------------------------------------------------------------------------------------------- fields


class _Fields:
    """Typed access to one mapping of a document; every wrong value becomes a Problem, never an exception."""

    def __init__(self, doc: _Doc, data: Any, path: Path_, known: set[str]) -> None:
        self.doc = doc
        self.path = path
        self.data: dict[str, Any] = {}
        if not isinstance(data, dict):
            doc.add(path, "ожидается набор полей «ключ: значение»")
            return
        self.data = data
        for key in data:
            if key not in known:
                doc.add(path + (key,), f"неизвестное поле; допустимы: {', '.join(sorted(known))}")

    def get(self, key: str, kind: type, default: Any = None, *, required: bool = False) -> Any:
        if key not in self.data or self.data[key] is None:
            if required:
                self.doc.add(self.path + (key,), "обязательное поле не заполнено")
            return default
        value = self.data[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kind is str and isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.doc.add(self.path + (key,), f"ожидается {_TYPE_NAMES[kind]}")
            return default
        if isinstance(value, str):
            value = value.strip()
            if required and not value:
                self.doc.add(self.path + (key,), "обязательное поле не заполнено")
        return value

    def positive(self, key: str, kind: type, default: Any) -> Any:
        value = self.get(key, kind, default)
        if value is not None and value <= 0:
            self.doc.add(self.path + (key,), "ожидается положительное число")
            return default
        return value

    def secret(self, key: str, *, required: bool = False) -> str:
        """A secret given as `<key>_env: VAR` (read from the environment) or, for the demo, `<key>: value`."""
        env_name = self.get(f"{key}_env", str, "")
        literal = self.get(key, str, "")
        if env_name:
            value = os.environ.get(env_name, "")
            if not value:
                self.doc.add(self.path + (f"{key}_env",), f"переменная окружения {env_name} не задана или пуста")
            return value
        if required and not literal:
            self.doc.add(self.path + (f"{key}_env",), "обязательное поле не заполнено")
        return str(literal)


_TYPE_NAMES = {str: "строка", int: "целое число", float: "число", bool: "да/нет (true/false)", list: "список"}
_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*[-–—]\s*(\d{1,2}):(\d{2})\s*$")
_LISTEN = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$")
_WEBHOOK_SECRET = re.compile(r"^[A-Za-z0-9_-]{5,256}$")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_EMAIL = re.compile(r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;]+$")


def valid_email(value: str) -> bool:
    return bool(_EMAIL.match(value)) and len(value) <= 254


def _window(doc: _Doc, value: Any, path: Path_) -> MessagingWindow | None:
    if value is None:
        return None
    m = _WINDOW.match(str(value))
    if not m:
        doc.add(path, f"окно рассылки «{value}» не в формате ЧЧ:ММ-ЧЧ:ММ (например 08:00-19:00)")
        return None
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        doc.add(path, f"окно рассылки «{value}»: такого времени не бывает")
        return None
    if (h1, m1) >= (h2, m2):
        doc.add(path, f"окно рассылки «{value}»: начало должно быть раньше конца")
        return None
    window = MessagingWindow(time(h1, m1), time(h2, m2))
    if window.start < DEFAULT_WINDOW.start or window.end > DEFAULT_WINDOW.end:
        doc.add(path, f"окно рассылки «{value}» выходит за пределы {DEFAULT_WINDOW}, установленные регламентом")
        return None
    return window


_HHMM = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*$")


def class_window(start: str, end: str, school_window: MessagingWindow, *, source: str = "запрос") -> MessagingWindow:
    """A class's chat window from two wall-clock times ("09:00", "18:00"), checked as the school file's class
    windows are: whole minutes (ЧЧ:ММ), the start before the end, inside the school's window. InvalidInput with a
    Russian problem per field (`start`, `end`) otherwise."""
    problems: list[Problem] = []
    parsed: list[time] = []
    for name, value in (("start", start), ("end", end)):
        m = _HHMM.match(value) if isinstance(value, str) else None
        if m is None or int(m.group(1)) > 23 or int(m.group(2)) > 59:
            shown = str(value)[:20]
            problems.append(Problem(source, f"«{shown}» — не время в формате ЧЧ:ММ (например 09:00)", None, name))
            continue
        parsed.append(time(int(m.group(1)), int(m.group(2))))
    if problems:
        raise InvalidInput(problems)
    opens, closes = parsed
    if opens >= closes:
        message = f"начало окна {opens:%H:%M} должно быть раньше конца {closes:%H:%M}"
        raise InvalidInput([Problem(source, message, None, "start")])
    window = MessagingWindow(opens, closes)
    if not school_window.contains(window):
        message = f"окно класса {window} должно лежать внутри окна рассылки школы {school_window}"
        raise InvalidInput([Problem(source, message, None, "start" if opens < school_window.start else "end")])
    return window


# --------------------------------------------------------------------------------------------- loading


def load_config(root: Path | str) -> Config:
    """Load and validate a configuration directory; InvalidInput lists every problem found."""
    root = Path(root)
    problems: list[Problem] = []
    settings_path = root / "zvonok.yaml"
    settings = Settings()
    if settings_path.exists():
        doc = _Doc(str(settings_path), problems)
        data = doc.load(_read(settings_path, problems))
        if data is not None:
            settings = _settings(doc, data)
    schools: dict[str, School] = {}
    tokens: dict[str, dict[str, str]] = {"max": {}, "vk": {}, "max_webhook": {}}
    lint: dict[str, LintSettings] = {}
    school_files = sorted((root / "schools").glob("*.yaml")) + sorted((root / "schools").glob("*.yml"))
    if not school_files:
        problems.append(Problem(str(root / "schools"), "нет ни одного файла школы (*.yaml)"))
    for path in school_files:
        doc = _Doc(str(path), problems)
        before = len(problems)
        data = doc.load(_read(path, problems))
        parsed = None if data is None else _school(doc, data, tokens)
        if parsed is not None and isinstance(data, dict):
            try:
                lint[parsed.id] = LintSettings.from_config(data.get("lint") or {})
            except ValueError as exc:
                doc.add(("lint",), str(exc))
        if parsed is None or len(problems) > before:
            continue
        if parsed.id in schools:
            doc.add(("id",), f"школа с id «{parsed.id}» уже описана в другом файле")
            continue
        schools[parsed.id] = parsed
    rosters = {p.stem: p for p in sorted((root / "rosters").glob("*.csv"))}
    if problems:
        raise InvalidInput(problems)
    secrets = tokens.pop("max_webhook")
    return Config(
        root=root,
        settings=settings,
        schools=schools,
        tokens=tokens,
        webhook_secrets=secrets,
        lint=lint,
        rosters=rosters,
    )


def _read(path: Path, problems: list[Problem]) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        problems.append(Problem(str(path), "файл не в кодировке UTF-8"))
    except OSError as exc:
        problems.append(Problem(str(path), f"файл не читается: {exc.strerror}"))
    return ""


def _settings(doc: _Doc, data: Any) -> Settings:
    top = _Fields(
        doc,
        data,
        (),
        {
            "database",
            "public_url",
            "secret",
            "secret_env",
            "listen",
            "trusted_proxies",
            "login_lists_schools",
            "email",
            "max",
            "vk",
            "dispatch",
            "retention",
        },
    )
    defaults = Settings()
    email_f = _Fields(doc, top.data.get("email") or {}, ("email",), _EMAIL_KEYS)
    e = defaults.email
    from_address = email_f.get("from", str, e.from_address)
    if from_address and not valid_email(from_address):
        doc.add(("email", "from"), f"«{from_address}» — не адрес электронной почты")
        from_address = e.from_address
    reply_to = email_f.get("reply_to", str, "")
    if reply_to and not valid_email(reply_to):
        doc.add(("email", "reply_to"), f"«{reply_to}» — не адрес электронной почты")
        reply_to = ""
    use_tls, starttls = email_f.get("tls", bool, False), email_f.get("starttls", bool, False)
    if use_tls and starttls:
        doc.add(("email", "starttls"), "tls (порт 465) и starttls (порт 587) — выберите одно")
        starttls = False
    username, password = email_f.get("username", str, ""), email_f.secret("password")
    if password and not username:
        doc.add(("email", "username"), "пароль задан, а имя пользователя — нет")
        password = ""
    email = EmailSettings(
        host=email_f.get("host", str, e.host),
        port=email_f.positive("port", int, e.port),
        use_tls=use_tls,
        starttls=starttls,
        username=username,
        password=password,
        from_address=from_address,
        from_name=email_f.get("from_name", str, ""),
        reply_to=reply_to,
        pool_size=email_f.positive("pool_size", int, e.pool_size),
        timeout=email_f.positive("timeout", float, e.timeout),
        ca_file=email_f.get("ca_file", str, "") or None,
    )
    d = defaults.dispatch
    disp_f = _Fields(doc, top.data.get("dispatch") or {}, ("dispatch",), _DISPATCH_KEYS)
    dispatch = DispatchSettings(
        batch_size=disp_f.positive("batch_size", int, d.batch_size),
        lease_seconds=disp_f.positive("lease_seconds", float, d.lease_seconds),
        max_attempts=disp_f.positive("max_attempts", int, d.max_attempts),
        retry_base_seconds=disp_f.positive("retry_base_seconds", float, d.retry_base_seconds),
        retry_cap_seconds=disp_f.positive("retry_cap_seconds", float, d.retry_cap_seconds),
        unknown_recheck_seconds=disp_f.positive("unknown_recheck_seconds", float, d.unknown_recheck_seconds),
        poll_seconds=disp_f.positive("poll_seconds", float, d.poll_seconds),
        accounts_in_parallel=disp_f.positive("accounts_in_parallel", int, d.accounts_in_parallel),
    )
    listen = top.get("listen", str, defaults.listen)
    if not _LISTEN.match(listen):
        doc.add(("listen",), f"«{listen}»: ожидается адрес:порт, например 127.0.0.1:8080")
        listen = defaults.listen
    return Settings(
        database=top.get("database", str, defaults.database),
        public_url=top.get("public_url", str, "").rstrip("/"),
        secret=_link_secret(doc, top),
        listen=listen,
        trusted_proxies=_networks(doc, top.get("trusted_proxies", list, [])),
        login_lists_schools=top.get("login_lists_schools", bool, False),
        email=email,
        max=_provider(doc, top.data.get("max"), "max", defaults.max),
        vk=_provider(doc, top.data.get("vk"), "vk", defaults.vk),
        dispatch=dispatch,
        retention=_retention(doc, top.data.get("retention"), defaults.retention),
    )


def _networks(doc: _Doc, items: list[Any]) -> tuple[str, ...]:
    """Addresses or networks (`127.0.0.1`, `10.0.0.0/8`, `::1`), each checked."""
    out = []
    for i, item in enumerate(items):
        try:
            out.append(str(ip_network(str(item), strict=False)))
        except ValueError:
            doc.add(("trusted_proxies", i), f"«{item}» — не IP-адрес и не сеть (например, 127.0.0.1 или 10.0.0.0/8)")
    return tuple(out)


def _retention(doc: _Doc, data: Any, default: RetentionSettings) -> RetentionSettings:
    f = _Fields(doc, {} if data is None else data, ("retention",), {"days"})
    days = f.get("days", int, default.days)
    if days < MIN_RETENTION_DAYS:
        doc.add(
            ("retention", "days"),
            f"срок хранения персональных данных {days} дн. слишком мал: не меньше {MIN_RETENTION_DAYS} дней "
            f"(по умолчанию {default.days})",
        )
        return default
    return RetentionSettings(days=days)


def _link_secret(doc: _Doc, top: _Fields) -> str:
    secret = top.secret("secret")
    if secret and len(secret) < 16:
        doc.add(("secret",), "секрет для подписи ссылок должен быть не короче 16 символов")
        return ""
    return secret


_EMAIL_KEYS = {"host", "port", "tls", "starttls", "username", "password", "password_env", "from", "from_name"}
_EMAIL_KEYS |= {"reply_to", "pool_size", "timeout", "ca_file"}
_DISPATCH_KEYS = {
    "batch_size",
    "lease_seconds",
    "max_attempts",
    "retry_base_seconds",
    "retry_cap_seconds",
    "unknown_recheck_seconds",
    "poll_seconds",
    "accounts_in_parallel",
}


def _provider(doc: _Doc, data: Any, name: str, default: ProviderSettings) -> ProviderSettings:
    f = _Fields(doc, data or {}, (name,), {"base_url", "rate", "timeout", "ca_bundle", "health_max_age_hours"})
    rate = f.positive("rate", float, None)
    return ProviderSettings(
        base_url=f.get("base_url", str, default.base_url).rstrip("/"),
        rate=rate or default.rate,
        shared_rate=rate or default.shared_rate,
        timeout=f.positive("timeout", float, default.timeout),
        ca_bundle=f.get("ca_bundle", str, ""),
        health_max_age_hours=f.positive("health_max_age_hours", float, default.health_max_age_hours),
    )


_SCHOOL_KEYS = {"id", "name", "timezone", "window", "calendar", "staff", "classes", "teachers_chat"}
_SCHOOL_KEYS |= {"max", "vk", "email_in_window", "forwarding_deadline", "lint"}
_DEADLINE_ACTIONS = {"escalate": "передать завучу", "auto": "переслать автоматически"}


def _school(doc: _Doc, data: Any, tokens: dict[str, dict[str, str]]) -> School | None:
    f = _Fields(doc, data, (), _SCHOOL_KEYS)
    if not f.data:
        return None
    school_id = f.get("id", str, "", required=True)
    if school_id and not _SLUG.match(school_id):
        doc.add(("id",), f"id «{school_id}»: только латинские строчные буквы, цифры, «-» и «_»")
    zone_name = f.get("timezone", str, "", required=True)
    zone = ZoneInfo("Europe/Moscow")
    if zone_name:
        try:
            zone = ZoneInfo(zone_name)
        except (ZoneInfoNotFoundError, ValueError):
            doc.add(
                ("timezone",),
                f"часовой пояс «{zone_name}» не найден; пример: Europe/Moscow, Asia/Yekaterinburg",
            )
    for channel in ("max", "vk"):
        if channel in f.data:
            keys = {"token", "token_env"} | ({"webhook_secret", "webhook_secret_env"} if channel == "max" else set())
            acc = _Fields(doc, f.data[channel], (channel,), keys)
            token = acc.secret("token", required=True)
            if token and school_id:
                tokens[channel][school_id] = token
            secret = acc.secret("webhook_secret") if channel == "max" else ""
            if secret and not _WEBHOOK_SECRET.match(secret):
                doc.add((channel, "webhook_secret"), "секрет вебхука: 5–256 символов A–Z, a–z, 0–9, «_» и «-»")
            elif secret and school_id:
                tokens["max_webhook"][school_id] = secret
    staff = _staff(doc, f.get("staff", list, []))
    classes: dict[str, SchoolClass] = {}
    for i, raw in enumerate(f.get("classes", list, [])):
        cls = _class(doc, raw, ("classes", i), staff, school_id, tokens)
        if cls is None:
            continue
        if cls.name in classes:
            doc.add(("classes", i, "name"), f"класс «{cls.name}» описан дважды")
        classes[cls.name] = cls
    teachers_chat = None
    if f.data.get("teachers_chat") is not None:
        teachers_chat = _chat(doc, f.data["teachers_chat"], ("teachers_chat",), ChatKind.TEACHERS, school_id, tokens)
    chat_bindings = [c for cls in classes.values() for c in cls.chats.values()]
    for channel in sorted({c.channel for c in chat_bindings + ([teachers_chat] if teachers_chat else [])}):
        if school_id and channel not in f.data:
            doc.add((channel,), f"есть чаты {channel.upper()}, но не задан токен бота ({channel}.token_env)")
    window = _window(doc, f.data.get("window"), ("window",)) or DEFAULT_WINDOW
    for i, cls in enumerate(classes.values()):
        if cls.window is not None and not window.contains(cls.window):
            doc.add(("classes", i, "window"), f"окно класса {cls.window} должно лежать внутри окна школы {window}")
    deadline = f.get("forwarding_deadline", str, "escalate")
    if deadline not in _DEADLINE_ACTIONS:
        doc.add(("forwarding_deadline",), f"«{deadline}»: ожидается escalate (передать завучу) или auto (переслать)")
    return School(
        id=school_id,
        name=f.get("name", str, "", required=True),
        zone=zone,
        window=window,
        calendar=_calendar(doc, f.data.get("calendar")),
        classes=classes,
        staff=staff,
        teachers_chat=teachers_chat,
        email_in_window=f.get("email_in_window", bool, False),
        forwarding_deadline=deadline if deadline in _DEADLINE_ACTIONS else "escalate",
    )


def _calendar(doc: _Doc, data: Any) -> SchoolCalendar:
    """The school's calendar; without `vacations`, the ministry's recommended 2025/26 dates."""
    data = {} if data is None else data
    try:
        calendar = calendar_from_config(data)
    except ValueError as exc:
        doc.add(("calendar",), str(exc))
        return SchoolCalendar(vacations=RECOMMENDED_VACATIONS_2025_26)
    if isinstance(data, dict) and "vacations" not in data:
        calendar = SchoolCalendar(calendar.six_day_week, RECOMMENDED_VACATIONS_2025_26, calendar.overrides)
    return calendar


def _staff(doc: _Doc, items: list[Any]) -> dict[str, Staff]:
    staff: dict[str, Staff] = {}
    roles = {r.value for r in Role}
    for i, raw in enumerate(items):
        path: Path_ = ("staff", i)
        f = _Fields(doc, raw, path, {"id", "name", "role", "email", "phone"})
        sid = f.get("id", str, "", required=True)
        role = f.get("role", str, "", required=True)
        if role and role not in roles:
            doc.add(path + ("role",), f"роль «{role}» неизвестна; допустимы: {', '.join(sorted(roles))}")
            role = ""
        email = f.get("email", str, "")
        if email and not valid_email(email):
            doc.add(path + ("email",), f"«{email}» — не адрес электронной почты")
        if sid in staff:
            doc.add(path + ("id",), f"сотрудник с id «{sid}» уже есть")
        if sid and role:
            staff[sid] = Staff(sid, f.get("name", str, "", required=True), Role(role), email, f.get("phone", str, ""))
    return staff


def _class(
    doc: _Doc,
    raw: Any,
    path: Path_,
    staff: Mapping[str, Staff],
    school_id: str,
    tokens: dict[str, dict[str, str]],
) -> SchoolClass | None:
    f = _Fields(doc, raw, path, {"name", "teacher", "window", "chats"})
    name = f.get("name", str, "", required=True)
    parsed = parse_class_name(name) if name else None
    if name and parsed is None:
        doc.add(path + ("name",), f"«{name}» не похоже на класс (ожидается, например, 7Б или 11А)")
    teacher = f.get("teacher", str, "")
    if teacher and teacher not in staff:
        doc.add(path + ("teacher",), f"сотрудник «{teacher}» не описан в разделе staff")
    chats: dict[ChatKind, ChatBinding] = {}
    chats_f = _Fields(doc, f.data.get("chats") or {}, path + ("chats",), {"parents", "students"})
    for kind_name, value in chats_f.data.items():
        if kind_name in ("parents", "students") and value is not None:
            kind = ChatKind(kind_name)
            binding = _chat(doc, value, path + ("chats", kind_name), kind, school_id, tokens)
            if binding:
                chats[kind] = binding
    if parsed is None:
        return None
    return SchoolClass(parsed[0], parsed[1], teacher, _window(doc, f.data.get("window"), path + ("window",)), chats)


def _chat(
    doc: _Doc, raw: Any, path: Path_, kind: ChatKind, school_id: str, tokens: dict[str, dict[str, str]]
) -> ChatBinding | None:
    f = _Fields(doc, raw, path, {"channel", "chat_id", "peer_id", "title", "link"})
    channel = f.get("channel", str, "", required=True).lower()
    banned = banned_messenger(channel) if channel else None
    if banned:
        doc.add(path + ("channel",), f"канал «{banned}» запрещён: {BANNED_RULE}")
        return None
    for key in ("link", "title"):
        for name in banned_links(str(f.data.get(key, ""))):
            doc.add(path + (key,), f"ссылка на {name} запрещена: {BANNED_RULE}")
    checks: dict[str, tuple[str, Callable[[int], bool], str]] = {
        "max": ("chat_id", lambda v: v != 0, "ненулевое целое число (id чата MAX, обычно отрицательное)"),
        "vk": ("peer_id", lambda v: v > 2_000_000_000, "целое число больше 2000000000 (peer_id беседы VK)"),
    }
    if channel not in checks:
        if channel:
            doc.add(path + ("channel",), f"канал «{channel}» неизвестен; допустимы: max, vk")
        return None
    key, ok, expected = checks[channel]
    address = f.get(key, int, None, required=True)
    if address is not None and not ok(address):
        doc.add(path + (key,), f"ожидается {expected}")
        return None
    if address is None:
        return None
    return ChatBinding(kind, channel, str(address), school_id)
