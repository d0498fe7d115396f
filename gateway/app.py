"""The composition root: configuration + store + channels + clock = a running gateway.

Everything the CLI (and later the HTTP API) does goes through `Gateway`: importing a roster, previewing and
posting an announcement, dispatching, reporting. Nothing here knows a wire format.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from adapters.base import Channel, Message
from adapters.ratelimit import Limiter, RateLimiters, Reservation, ReservingBucket
from gateway import forwarding
from gateway.chats import CheckResult, check_chats, effective_school
from gateway.clock import Clock, DatabaseClock, ShiftedClock, SystemClock
from gateway.config import Config, Settings, class_window
from gateway.dispatcher import Dispatcher
from gateway.domain import EMAIL, AnnouncementRequest, ChatBinding, ChatKind, Group, Kind, School, parse_class_name
from gateway.errors import Conflict, NotFound, PolicyViolation
from gateway.estimate import Backlog, Estimate, estimate
from gateway.lint import Finding, lint
from gateway.planner import Note, Plan, plan
from gateway.policy import check_request
from gateway.reports import Report, build_report
from gateway.roster import Roster, guardian_key
from gateway.store import open_store
from gateway.store.base import AnnouncementRecord, Claimed, ClassWindowRow, Purged, RosterChange, Store, TaskRow
from schedules.calendar import build_production_calendars
from schedules.windows import MessagingWindow, end_of_school_day, is_allowed, next_allowed

log = logging.getLogger("zvonok")

CONSOLE = "командная строка"
"""Who the audit log names for a change made with `zvonok` on the server without `--by`."""

CHAT_CHECK_SECONDS = 5.0
"""The longest the chat health checks before a post may take (`Gateway.preview`)."""


def freeze_startup_objects() -> None:
    """Leave what a long-running process built at start-up out of the cyclic garbage collector's full passes.

    The modules, the configuration, the production calendars and the gateway itself (about 127,000 tracked objects
    with a region's 187 schools) live as long as the process, yet every full collection walked them all again:
    posting a region's closure made 9-10 full passes, 0.57-0.73 s of its 3.4-4.3 s with the interpreter lock held
    (bench/plan_region.py; 0.01 s frozen). Garbage is collected first, so nothing already dead is kept; whatever is
    made later is collected as usual. For `zvonok serve` and `zvonok worker`, which run for days, once set up.
    """
    gc.collect()
    gc.freeze()


@dataclass(frozen=True, slots=True)
class Preview:
    """What posting would do: the plan, the content findings, the completion estimate, the override to audit."""

    plan: Plan
    findings: list[Finding]
    estimate: Estimate
    audit: str  # non-empty: this is a force majeure, and this is what the audit log will say

    @property
    def blocking(self) -> list[Finding]:
        return [f for f in self.findings if f.blocking]


@dataclass(frozen=True, slots=True)
class Posted:
    id: int
    created: bool
    preview: Preview

    @property
    def plan(self) -> Plan:
        return self.preview.plan


class Gateway:
    def __init__(self, config: Config, store: Store, channels: Mapping[str, Channel], clock: Clock) -> None:
        self.config = config
        self.store = store
        self.channels = dict(channels)
        self.clock = clock
        self.installation = ""
        self.dispatcher = Dispatcher(
            store,
            self.channels,
            self.render,
            clock,
            config.settings.dispatch,
            allowed=self.allowed,
            schools=list(config.schools),
            # each letter is recorded as soon as the relay has it: what a sender that stops can leave accepted but
            # not recorded (and so sent again) is then at most the letters on its pool's connections
            chunk_sizes={EMAIL: 1},
        )
        # run-time class windows as this process last read them: school id -> class name -> window
        self._class_windows: dict[str, Mapping[str, MessagingWindow]] = {}
        self._current: dict[str, tuple[School, Mapping[str, MessagingWindow], School]] = {}
        self._window_listeners: list[Callable[[], None]] = []
        self._backlog = Backlog(store)

    @classmethod
    async def open(
        cls,
        config: Config,
        *,
        clock: Clock | None = None,
        store: Store | None = None,
        channels: Mapping[str, Channel] | None = None,
    ) -> Gateway:
        """Open the store, build the channels the configuration needs, and record the configured chats."""
        store = store or await open_store(config.settings.database, base_dir=config.root)
        clock = clock or SystemClock()
        if store.shares_rate_limits and isinstance(clock, SystemClock | ShiftedClock):
            clock = DatabaseClock(clock)  # several processes: one clock, the database's (a manual one stays as it is)
        if channels is None:
            channels = build_channels(config, clock=clock, store=store)
        gateway = cls(config, store, channels, clock)
        await gateway.sync_clock()
        gateway.installation = await store.installation()
        this_year = gateway.clock.now().year
        build_production_calendars(this_year, this_year + 1)
        for school in config.schools.values():
            await store.sync_chats(school, gateway.clock.now())
        await gateway.refresh_class_windows()
        return gateway

    async def sync_clock(self) -> None:
        """Take the time from the database from now on (a `DatabaseClock`; other clocks are left alone): measure
        this process's clock against the server's, half the round trip allowed for. A difference of more than
        `CLOCK_SKEW_ALERT` raises an alert for each school (the machine's time service needs a look, although the
        gateway itself keeps time with the rest), closed once the difference is gone."""
        clock = self.clock
        if not isinstance(clock, DatabaseClock):
            return
        asked, started = clock.base.now(), time.monotonic()
        server = await self.store.database_time()
        if server is None:
            return
        clock.offset = server - (asked + timedelta(seconds=(time.monotonic() - started) / 2))
        skew = abs(clock.offset.total_seconds())
        subject = f"clock:{socket.gethostname()}"
        if skew <= CLOCK_SKEW_ALERT.total_seconds():
            await self.store.resolve_alerts("clock", subject, self.clock.now())
            return
        message = (
            f"часы сервера {socket.gethostname()} расходятся с часами базы данных на {_duration(skew)}: Звонок "
            "берёт время у базы данных, но проверьте синхронизацию времени (NTP) на этом сервере"
        )
        log.warning("this machine's clock is %.1f s off the database's; the database's time is used", skew)
        for school_id in self.config.schools:
            await self.store.raise_alert(school_id, "clock", subject, message, self.clock.now())

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.aclose()
        await self.store.close()

    # ------------------------------------------------------------------ roster

    async def import_roster(self, school_id: str, roster: Roster) -> RosterChange:
        """Replace the school's roster with a validated one, in one transaction."""
        school = self.config.school(school_id)
        guardians = roster.guardians(school.id)
        students: dict[tuple[str, str], list[str]] = {}
        for entry in roster.entries:
            students.setdefault((guardian_key(school.id, entry), entry.class_name), []).append(entry.student)
        joined = {key: "; ".join(sorted(set(names))) for key, names in students.items()}
        return await self.store.replace_roster(school.id, guardians, joined, self.clock.now())

    # ------------------------------------------------------------------ announcements

    async def school_view(self, school_id: str) -> School:
        """The school as configured, with the class windows set at run time (read from the store now) and the
        chats the admin mapped from the bot's webhook."""
        school = self.config.school(school_id)
        await self.class_windows(school.id)
        return effective_school(self.current_school(school.id), await self.store.chats(school.id))

    async def preview(self, request: AnnouncementRequest, *, check_chats: bool = False) -> Preview:
        """What posting the request would do, checked against the rules, without committing anything.

        With `check_chats`, the audience's chats whose last health check is stale are checked first, so that
        the author sees a chat the bot can no longer post to (its parents then appear as e-mailed). The checks
        take at most `CHAT_CHECK_SECONDS`: a provider that does not answer must not hold up a force majeure (a
        chat found gone at send time falls back to e-mail just the same).
        """
        school = await self.school_view(request.school_id)
        check_request(school, request, self.clock.now())
        findings = lint(request.title, request.text, self.config.lint_settings(school.id))
        if check_chats:
            audience = set(request.audience.class_names(school))
            bindings = [c for name in audience for c in school.classes[name].chats.values()]
            if request.audience.groups & {Group.TEACHERS} and school.teachers_chat:
                bindings.append(school.teachers_chat)
            try:
                await asyncio.wait_for(self.check_chats(school.id, only=bindings, stale_only=True), CHAT_CHECK_SECONDS)
            except TimeoutError:
                log.warning(
                    "chat health checks of school %s took over %s s; posting without them",
                    school.id,
                    CHAT_CHECK_SECONDS,
                )
        guardians = await self.store.guardians(school.id)
        dead = await self.store.dead_chats(school.id)
        now = self.clock.now()
        start = max(now, request.send_at) if request.send_at else now
        urgent = request.kind is Kind.FORCE_MAJEURE

        def earliest(chat: ChatBinding | None, class_name: str) -> datetime:
            if urgent or (chat is None and not school.email_in_window):
                return start
            window = school.window_for(class_name) if chat is not None else school.window
            return next_allowed(start, zone=school.zone, window=window, calendar=school.calendar)

        def deadline(class_name: str) -> datetime:
            return end_of_school_day(
                start, zone=school.zone, window=school.window_for(class_name), calendar=school.calendar
            )

        planned = plan(school, request, guardians, dead_chats=dead, earliest=earliest, start=start, deadline=deadline)
        until = max((d.not_before for d in planned.deliveries), default=now)
        accounts = sorted({(d.channel, d.account) for d in planned.deliveries})
        backlog = await self._backlog.read(now, until, accounts)
        shared = self.store.shares_rate_limits
        rates = {name: provider_rate(self.config.settings, name, shared=shared) for name in ("max", "vk")}
        expected = estimate(planned, school, request.kind, now=now, backlog=backlog, rates=rates)
        return Preview(planned, findings, expected, self._audit_text(school, request, start) if urgent else "")

    def _audit_text(self, school: School, request: AnnouncementRequest, start: datetime) -> str:
        """What the audit log says of a force majeure: why, and which rule it overrides."""
        local = start.astimezone(school.zone)
        reason = request.reason.strip() or request.title
        if not school.calendar.is_school_day(local.date()):
            rule = f"отправка в нерабочий день ({school.calendar.day_off_reason(local.date())})"
        elif not is_allowed(start, zone=school.zone, window=school.window, calendar=school.calendar):
            rule = f"отправка вне окна рассылки {school.window} (в {local:%H:%M})"
        else:
            rule = "отправка в окне рассылки"
        return f"форс-мажор: {reason}; {rule}; аудитория: {request.audience.describe()}"

    async def check_chats(
        self, school_id: str, *, only: list[ChatBinding] | None = None, stale_only: bool = False
    ) -> list[CheckResult]:
        """Health-check chats (all of the school's, or `only`), recording what each check says."""
        school = await self.school_view(school_id)
        max_age = None
        if stale_only:
            max_age = timedelta(hours=self.config.settings.max.health_max_age_hours)
        return await check_chats(school, self.store, self.channels, self.clock.now(), only=only, max_age=max_age)

    async def post(self, request: AnnouncementRequest, *, check_chats: bool = False) -> Posted:
        """Check, plan and commit an announcement with all its deliveries; then wake the dispatcher. With
        `check_chats` (what the staff's API, pages and CLI do), the audience's chats not health-checked for
        `max.health_max_age_hours` are checked first, as in `preview`."""
        preview = await self.preview(request, check_chats=check_chats)
        if request.idempotency_key:
            await self._check_key(request)
        if preview.blocking:
            raise PolicyViolation(
                "объявление нарушает правила школы: " + "; ".join(f.message for f in preview.blocking)
            )
        planned = preview.plan
        ticket = self._backlog.commit()
        announcement_id, created = await self.store.create_announcement(
            request, planned, self.clock.now(), audit=preview.audit
        )
        if not created:
            await self._check_key(request)  # another request with this key may have committed meanwhile
        if created:
            self._backlog.committed(ticket, planned.deliveries)
            log.info(
                "announcement %s committed: %d deliveries, %d unreachable, %d forwarding tasks",
                announcement_id,
                len(planned.deliveries),
                len(planned.unreachable()),
                len(planned.tasks),
            )
        self.dispatcher.wake()
        return Posted(announcement_id, created, preview)

    async def _check_key(self, request: AnnouncementRequest) -> None:
        """Conflict when the request's idempotency key was used for another request (Stripe's and Knock's rule):
        a retry must not be answered with an announcement other than the one it asks for."""
        found = await self.store.announcement_by_key(request.school_id, request.idempotency_key)
        if found is not None and found.request_digest not in (None, request.digest()):
            raise Conflict(
                f"ключ повтора (Idempotency-Key) уже использован для объявления № {found.id} «{found.title}» "
                "с другим содержанием: для нового объявления нужен новый ключ"
            )

    # ------------------------------------------------------------------ forwarding by class teachers

    async def forward(self, task_id: int, actor: str, note: str = "", *, automatic: bool = False) -> TaskRow:
        """The class teacher (or the administration) forwards a task to the class's chats (gateway.forwarding)."""
        return await forwarding.forward(self, task_id, actor, note, automatic=automatic)

    async def handle_overdue_tasks(self) -> int:
        """Forwarding tasks past their deadline: auto-forward or escalate, as each school says (gateway.forwarding)."""
        return await forwarding.handle_overdue(self)

    # ------------------------------------------------------------------ class windows set at run time

    def current_school(self, school_id: str | None) -> School:
        """The school as configured, with the class windows set at run time as this process last read them: at
        `school_view`, at a change made here, and every minute by the scheduler (schedules.jobs). What the
        send-time check and the window-opening wake-ups use, without a store round trip per delivery."""
        school = self.config.school(school_id)
        windows = self._class_windows.get(school.id)
        if not windows:
            return school
        cached = self._current.get(school.id)
        if cached is None or cached[0] is not school or cached[1] is not windows:
            cached = (school, windows, school.with_class_windows(windows))
            self._current[school.id] = cached
        return cached[2]

    async def refresh_class_windows(self) -> bool:
        """Read every school's run-time class windows from the store (another process may have changed them);
        True, and the listeners told, when they changed."""
        found: dict[str, dict[str, MessagingWindow]] = {}
        for row in await self.store.class_windows():
            found.setdefault(row.school_id, {})[row.class_name] = row.window
        changed = False
        for school_id in set(self._class_windows) | set(found):
            changed |= self._remember_windows(school_id, found.get(school_id, {}))
        if changed:
            self._windows_changed()
        return changed

    async def class_windows(self, school_id: str) -> dict[str, ClassWindowRow]:
        """The school's run-time class windows by class, read from the store now (and remembered)."""
        rows = await self.store.class_windows(school_id)
        if self._remember_windows(school_id, {r.class_name: r.window for r in rows}):
            self._windows_changed()
        return {r.class_name: r for r in rows}

    def on_class_windows_changed(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` whenever this process learns that run-time class windows changed (the scheduler moves
        its window-opening wake-ups); returns the function that stops it."""
        self._window_listeners.append(listener)

        def stop() -> None:
            if listener in self._window_listeners:
                self._window_listeners.remove(listener)

        return stop

    async def set_class_window(self, school_id: str, class_name: str, start: str, end: str, actor: str) -> School:
        """Narrow (or change) a class's chat window at run time: "09:00", "18:00", whole minutes, inside the
        school's window (InvalidInput in Russian otherwise); written to the audit log as `actor`. Who may do it
        is the caller's business (`School.may_set_class_window`). Returns the school as it now is."""
        school = self.config.school(school_id)
        name = self.find_class(school, class_name)
        window = class_window(start, end, school.window)
        before = (await self.school_view(school.id)).window_for(name)
        audit = f"окно рассылки чатов класса {name}: {window} (было {before})"
        await self.store.set_class_window(school.id, name, window, actor, self.clock.now(), audit=audit)
        return await self._window_changed_here(school.id, name)

    async def reset_class_window(self, school_id: str, class_name: str, actor: str) -> tuple[School, bool]:
        """Remove a class's run-time window (the school file's applies again); (the school as it now is, whether
        there was one to remove)."""
        school = self.config.school(school_id)
        name = self.find_class(school, class_name)
        before = (await self.school_view(school.id)).window_for(name)
        after = school.window_for(name)
        audit = f"окно рассылки чатов класса {name} сброшено: {after} по файлу школы (было {before})"
        removed = await self.store.reset_class_window(school.id, name, actor, self.clock.now(), audit=audit)
        return await self._window_changed_here(school.id, name), removed

    async def _window_changed_here(self, school_id: str, class_name: str) -> School:
        await self.class_windows(school_id)
        view = self.current_school(school_id)
        log.info("class %s of school %s: chat window now %s", class_name, school_id, view.window_for(class_name))
        self.dispatcher.wake()  # deliveries it defers or lets go are looked at again
        return view

    @staticmethod
    def find_class(school: School, raw: str) -> str:
        """The school's class a name means ("7б", "7-Б" → "7Б"); NotFound when it has none such."""
        parsed = parse_class_name(raw) if len(raw) <= 10 else None
        if parsed is None or parsed[0] not in school.classes:
            raise NotFound(f"класса «{raw[:10]}» нет в школе «{school.name}»")
        return parsed[0]

    def _remember_windows(self, school_id: str, windows: dict[str, MessagingWindow]) -> bool:
        if dict(self._class_windows.get(school_id, {})) == windows:
            return False
        self._class_windows[school_id] = windows  # a new mapping: `current_school` sees it by identity
        return True

    def _windows_changed(self) -> None:
        for listener in list(self._window_listeners):
            try:
                listener()
            except Exception:  # a listener's failure must not undo a change already committed
                log.exception("a class-window listener failed")

    # ------------------------------------------------------------------ windows at send time

    def allowed(self, claimed: Claimed, announcement: AnnouncementRecord, when: datetime) -> datetime:
        """The earliest moment at or after `when` the delivery may go out (force majeure: at once). Class windows
        set at run time count as this process last read them (`current_school`)."""
        if announcement.kind == Kind.FORCE_MAJEURE.value:
            return when
        school = self.current_school(announcement.school_id)
        if claimed.channel == EMAIL:
            if not school.email_in_window or claimed.note == Note.ESCALATION.value:
                return when
            window = school.window
        else:
            window = school.window_for(claimed.class_name)
        return next_allowed(when, zone=school.zone, window=window, calendar=school.calendar)

    async def announcement(self, announcement_id: int) -> AnnouncementRecord:
        record = await self.store.announcement(announcement_id)
        if record is None:
            raise NotFound(f"объявление № {announcement_id} не найдено")
        return record

    async def report(self, announcement_id: int) -> Report:
        record = await self.announcement(announcement_id)
        return await build_report(self.store, self.config.school(record.school_id), record)

    # ------------------------------------------------------------------ personal-data retention

    async def purge_personal_data(self, *, dry_run: bool = False) -> tuple[datetime, list[Purged]]:
        """Remove the personal data kept longer than `retention.days` (Store.purge_personal_data: announcements
        created before the cut-off whose work is done, guardians who left before it), writing the audit log of
        each school; with `dry_run`, only say what would go. (the cut-off, what went per school)."""
        now = self.clock.now()
        cutoff = now - timedelta(days=self.config.settings.retention.days)
        purged = await self.store.purge_personal_data(cutoff, now, dry_run=dry_run)
        if not dry_run:
            for p in purged:  # counts only: the log names no one
                log.info(
                    "retention: school %s: personal data of %d announcement(s) (%d letter(s), %d report line(s)) "
                    "and %d former guardian(s) removed",
                    p.school_id,
                    p.announcements,
                    p.letters,
                    p.people,
                    p.former_guardians,
                )
        return cutoff, purged

    # ------------------------------------------------------------------ dispatch

    def render(self, claimed: Sequence[Claimed], announcements: Mapping[int, AnnouncementRecord]) -> Message:
        """The message for one delivery, or one message for a bundle of one chat's deliveries."""
        first = claimed[0]
        parts = [announcements[c.announcement_id] for c in claimed]
        school = self.config.school(parts[0].school_id)  # the name is all it needs: no registry lookup
        if first.channel == EMAIL:
            audience = f"{first.class_name} класс" if first.class_name else parts[0].audience_label
        else:
            label = ChatKind(first.chat_kind).label if first.chat_kind else ""
            audience = f"{first.class_name}, {label}" if first.class_name else label
        if first.note == Note.ESCALATION.value:  # a letter to the author about classes that did not forward
            title, kind_code, kind_label = f"не переслано классам: {parts[0].title}", "general", "Zvonok"
            text = f"{first.addendum}\n\nТекст объявления:\n{parts[0].text}"
            key = f"zv-{self.installation}-{parts[0].id}-{first.id}"
            reference = f"объявление № {parts[0].id}"
        elif len(claimed) == 1:
            kind = Kind(parts[0].kind)
            title, text, kind_code, kind_label = parts[0].title, parts[0].text, kind.value, kind.label
            key = f"zv-{self.installation}-{parts[0].id}-{first.id}"
            reference = f"объявление № {parts[0].id}"
            if first.addendum:
                text = f"{text}\n\nКомментарий классного руководителя: {first.addendum}"
        else:  # one message rather than many: the items of a bundle, clearly separated
            title, kind_code, kind_label = f"объявления школы ({len(parts)})", Kind.GENERAL.value, "Сегодня"
            items = []
            for n, (c, a) in enumerate(zip(claimed, parts, strict=True), start=1):
                item = f"{n}. {Kind(a.kind).label}: {a.title}\n{a.text}"
                if c.addendum:
                    item += f"\nКомментарий классного руководителя: {c.addendum}"
                items.append(item)
            text = "\n\n— — —\n\n".join(items)
            key = f"zv-{self.installation}-b{first.bundle}"
            reference = "объявления № " + ", ".join(str(a.id) for a in parts)
        ack_url = unsubscribe_url = ""
        s = self.config.settings
        family = first.channel == EMAIL and first.class_name and first.note != Note.ESCALATION.value
        if family and s.public_url and s.secret:  # a letter to a family: «Ознакомлен» and unsubscribe (gateway.web)
            from gateway.web.links import letter_links

            ack_url, unsubscribe_url = letter_links(s.public_url, s.secret, first.id, parts[0].created_at)
        return Message(
            key=key,
            account=first.account,
            target=first.target,
            school=school.name,
            kind=kind_code,
            kind_label=kind_label,
            title=title,
            text=text,
            audience=audience,
            recipient_name=first.recipient_name,
            reference=reference,
            ack_url=ack_url,
            unsubscribe_url=unsubscribe_url,
            since=min(a.created_at for a in parts),  # no attempt can be older than its announcement
            school_id=school.id,
        )

    def school(self, school_id: str | None) -> School:
        return self.config.school(school_id)


CLOCK_SKEW_ALERT = timedelta(seconds=2)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} с"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} мин"
    return f"{seconds / 3600:.1f} ч"


def build_channels(
    config: Config, *, limiters: RateLimiters | None = None, clock: Clock | None = None, store: Store | None = None
) -> dict[str, Channel]:
    """The channels the configuration uses, each configured from `zvonok.yaml` and the schools' tokens.

    Per-token rate limits are `limiters` if given; else shared through `store` by every process using it, when
    the store keeps them (PostgreSQL); else this process's own (SQLite: one process sends).
    """
    from adapters.email import EmailChannel

    limiters = limiters or rate_limiters(store)
    shared = store is not None and store.shares_rate_limits
    s = config.settings
    channels: dict[str, Channel] = {EMAIL: EmailChannel(s.email, clock=clock.now if clock else None)}
    used = {chat.channel for school in config.schools.values() for chat in school.chats()}
    if "max" in used:
        from adapters.max import CA_BUNDLE, MaxChannel

        channels["max"] = MaxChannel(
            config.tokens["max"],
            base_url=s.max.base_url,
            ca_bundle=s.max.ca_bundle or CA_BUNDLE,  # default: the shipped Russian Trusted Root CA
            limiters=limiters,
            rate=provider_rate(s, "max", shared=shared),
            timeout=s.max.timeout,
        )
    if "vk" in used:
        from adapters.vk import VkChannel

        channels["vk"] = VkChannel(
            config.tokens["vk"],
            base_url=s.vk.base_url,
            limiters=limiters,
            rate=provider_rate(s, "vk", shared=shared),
            timeout=s.vk.timeout,
        )
    return channels


def provider_rate(settings: Settings, provider: str, *, shared: bool) -> float:
    """Requests per second per token of `provider` ("max", "vk"): its shared rate when several processes pace
    the token through the store, else its one-process rate."""
    p = settings.max if provider == "max" else settings.vk
    return p.shared_rate if shared else p.rate


def rate_limiters(store: Store | None) -> RateLimiters:
    """The providers' per-token limits: kept in the store when several processes share it (each process reserves
    permits from it a batch at a time: adapters.ratelimit.ReservingBucket), else in this process."""
    if store is None or not store.shares_rate_limits:
        return RateLimiters()
    shared = store

    def bucket(key: str, rate: float, burst: int) -> Limiter:
        async def reserve(count: int) -> Reservation:
            return Reservation(*await shared.reserve_permits(key, count, rate, burst))

        async def hold(seconds: float) -> None:
            await shared.hold_permits(key, seconds)

        return ReservingBucket(rate, reserve, hold)

    return RateLimiters(bucket)
