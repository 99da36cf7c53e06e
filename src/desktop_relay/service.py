"""Wiring: build_relay(config, reactor) builds the whole tree of services from the settings.

This is the one place that knows every part; the parts only know the interfaces they are given.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

from treq.client import HTTPClient
from twisted.application.internet import StreamServerEndpointService, TimerService
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks
from twisted.internet.endpoints import serverFromString
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.web.client import Agent
from twisted.web.resource import IResource
from twisted.web.server import Site

from .auth import IPasswordAuthenticator
from .auth.classes import ClassScope
from .auth.header import TrustedHeaders
from .auth.local import LocalAccounts, PasswordFileError
from .auth.oidc import OpenIDProvider, OpenIDSignIn, PendingSignIns, SignInFailed
from .auth.roles import Roles
from .auth.throttle import LoginThrottle
from .auth.websessions import WebSessions
from .backend import quiet_pool
from .capacity import CapacityLimits
from .classwork.service import Classwork
from .classwork.volumes import DockerClassworkVolumes
from .config import ConfigError, RelayConfig, ScheduleSettings
from .engine import ContainerEngineUnavailable, DockerProvisioner, docker_threadpool
from .engine.docker_volumes import DockerHomeVolumes
from .fdlimit import desktops_for, raise_soft_limit
from .files import DockerFiles
from .homes.usage import HomeUsage
from .lifecycle import DesktopSessions, LifecycleService
from .lifecycle.assignments import ClassAssignments
from .lifecycle.pool import WarmPool
from .lifecycle.prestart import LessonPrestarts
from .lifecycle.timetable import Timetable, TimetableError, read_if_changed, timetable_for
from .metrics import RelayMetrics, metrics_root
from .readiness import ReadinessProbe
from .relay.assets import AssetRelay
from .relay.bridge import CLOSE_GOING_AWAY, CLOSE_SESSION_STOPPED, DesktopBridgeFactory
from .relay.client_cache import ClientFileCache
from .relay.client_warmup import ClientWarmup
from .reload import ConfigReloader, SighupReload
from .store import SQLiteStore
from .web.access import BridgeAudit, DesktopAccess
from .web.admin import AdminAPI, AdminAuth
from .web.admin.audit import AuditAdmin
from .web.admin.desktops import DesktopsAdmin
from .web.admin.engine import EngineAdmin
from .web.admin.pool import PoolAdmin, PrestartsAdmin
from .web.admin.reload import ReloadAdmin
from .web.admin.sessions import SessionsAdmin
from .web.admin.users import UsersAdmin
from .web.api import UserAPI
from .web.app import RelayWeb
from .web.bodies import bounded_request
from .web.classes import ClassesAPI
from .web.classwork import ClassworkAPI, HandoutFiles
from .web.files import FilesAPI
from .web.guard import RequestGuard
from .web.looks import Looks, LooksAPI
from .web.pages import Pages


class _ScrapeSite(Site):
    """The metrics listener's site: a scrape every few seconds is not worth a log line."""

    def log(self, request: Any) -> None:
        pass


class _RelaySite(Site):
    """The public site: no access line for what succeeds under /desktop/ and /look/ (the session or
    look page, the web client's dozens of files, the upgrade, which the bridge logs itself with its fields).
    Apache's access log has those requests; a failure here is still a line."""

    def log(self, request: Any) -> None:
        if request.path.startswith((b"/desktop/", b"/look/")) and request.code < 400:
            return
        super().log(request)


class RelayService(MultiService):
    """The relay: opens the store, reconciles with Docker, then listens; undoes it in reverse."""

    _log = Logger()
    # Declared here: the bridges' callbacks refer to them before __init__ has made them.
    sessions: DesktopSessions
    access: DesktopAccess

    def __init__(self, config: RelayConfig, reactor: Any) -> None:
        super().__init__()
        self.config = config
        self._reactor = reactor
        self.started = reactor.seconds()
        # One sign-in method at a time: with OpenID Connect or trusted headers, local accounts
        # are not offered, so no second, weaker way in is left open by accident.
        authenticator: IPasswordAuthenticator | None = None
        self.oidc: OpenIDSignIn | None = None
        headers: TrustedHeaders | None = None
        if config.oidc is not None:
            # treq's default pool logs two lines for every connection to the provider.
            provider_http = HTTPClient(Agent(reactor, pool=quiet_pool(reactor, persistent=True)))
            self.oidc = OpenIDSignIn(
                OpenIDProvider(config.oidc, reactor, http=provider_http),
                PendingSignIns(reactor, config.oidc.sign_in_timeout),
                config.redirect_uri,
            )
        elif config.header is not None:
            headers = TrustedHeaders(config.header, config.trusted_proxies)
        else:
            try:
                authenticator = LocalAccounts(config.password_file)
            except PasswordFileError as e:
                raise ConfigError(f"{config.source}: [auth] password_file: {e}") from None

        self.store = SQLiteStore(config.database, reactor)
        self.metrics = RelayMetrics(desktops=config.desktops)
        # Docker SDK calls block; they get their own bounded pool, never the reactor's shared one.
        # One thread more than configured: the engine's event stream holds one for good.
        self._docker_pool = docker_threadpool(config.docker_threads + 1)
        provisioner = DockerProvisioner(
            reactor=reactor, threadpool=self._docker_pool, url=config.docker_url, port_range=config.port_range,
            timeout=max(1, round(config.engine_timeout)), metrics=self.metrics,
        )
        home_volumes = DockerHomeVolumes(provisioner)
        self.web_sessions = WebSessions(
            self.store, reactor, secure=config.secure_cookies,
            idle=config.web_session_idle, lifetime=config.web_session_lifetime,
        )
        guard = RequestGuard(self.web_sessions, config.public_url, config.trusted_proxies)
        self.bridges = DesktopBridgeFactory(
            lambda request: self.access.resolve_upgrade(request),
            reactor=reactor,
            url=config.public_url.replace("http", "ws", 1),
            max_message_size=config.ws_max_message_size,
            ping_interval=config.ws_ping_interval,
            open_timeout=config.ws_open_timeout,
            on_input=lambda session_id: self.sessions.input_seen(session_id),
            listener=BridgeAudit(self.store, reactor),
            metrics=self.metrics,
        )
        probe = ReadinessProbe(reactor).probe
        # Who teaches which class (auth/classes.py): the scope of every teacher feature.
        self.classes = ClassScope(config.classes)
        # Hand-outs and hand-ins (classwork/): their files containers and root helper run the
        # image of the first desktop (by name) with a home, as its user.
        helper = next((d for _, d in sorted(config.desktops.items()) if d.home != "none"), None)
        image, uid = (helper.image, helper.home_uid) if helper is not None else ("", 1000)
        self.classwork = Classwork(self.classes, DockerClassworkVolumes(provisioner, config.instance, image),
                                   self.store, reactor, config.instance, image, uid)
        self.sessions = DesktopSessions(
            store=self.store,
            provisioner=provisioner,
            probe=probe,
            clock=reactor,
            desktops=config.desktops,
            instance=config.instance,
            max_per_user=config.max_sessions_per_user,
            start_timeout=config.start_timeout,
            stop_timeout=config.stop_timeout,
            limits=CapacityLimits(
                max_total=config.max_total_sessions,
                max_starting=config.max_starting,
                memory_budget=config.memory_budget,
                per_desktop={name: d.max_sessions for name, d in config.desktops.items()},
                max_queued=config.max_queued,
            ),
            connected=lambda session_id: self._owner_bridges(session_id),
            on_session_ended=lambda session_id, reason: self.bridges.close_session(
                session_id, CLOSE_SESSION_STOPPED, reason
            ),
            metrics=self.metrics,
            homes=home_volumes,
            shares=config.shares,
            classwork=self.classwork,
        )
        self.home_usage = HomeUsage(
            home_volumes, self.store, reactor, config.instance,
            # A home past its quota is warned about on its desktop's page from this measurement on.
            on_measured=lambda: self.sessions.watch.changed(self.sessions.watch.session_ids()),
        )
        self.pool = WarmPool(self.sessions, self.store, reactor, probe, start_timeout=config.start_timeout,
                             metrics=self.metrics)
        # The web clients' files, kept per user (relay/client_cache.py); filled ahead for pre-starts.
        self.client_files = ClientFileCache()
        self.prestarts = LessonPrestarts(
            self.sessions, self.store, reactor, _timetables(config),
            connected=lambda session_id: self._owner_bridges(session_id),
            fetch_client=ClientWarmup(reactor, self.client_files),
        )
        self.lifecycle = LifecycleService(
            self.sessions, self.store, reactor,
            check_interval=config.lifecycle_check_interval,
            reconcile_interval=config.reconcile_interval,
            activity_write_interval=config.activity_write_interval,
            memory_budget_auto=config.memory_budget_auto,
            audit_keep=config.audit_keep,
            metrics=self.metrics,
            measurements=[(self.home_usage.measure, config.homes.usage_interval)],
            pool=self.pool,
            prestarts=self.prestarts,
        )
        # Desktops teachers offer their classes for a time (lifecycle/assignments.py).
        self.assignments = ClassAssignments(self.store, self.sessions, reactor)
        self.access = DesktopAccess(self.store, self.sessions, guard, self.classes,
                                    config.classes.teacher_control)
        self.access.remember_grants(self.bridges, reactor)
        # Teachers' looks at pupils' desktops (web/looks.py): told of every bridge before the audit.
        self.looks = Looks(self.bridges, self.sessions.watch, self.store, reactor, self.bridges.listener)
        self.bridges.listener = self.looks
        looks_api = LooksAPI(self.looks, self.access, guard, self.store, config.classes.teacher_control,
                             reactor.seconds)
        # relay.ini again on SIGHUP or POST /api/admin/reload: desktops and session limits.
        self.reloader = ConfigReloader(config, self.sessions, self.store, reactor)
        self._sighup = SighupReload(self.reloader, reactor)
        self._sighup.setServiceParent(self)
        # The files panel's containers, one per home in use (files/, docs/files.md).
        self.files = DockerFiles(provisioner, home_volumes, reactor, config.instance,
                                 config.homes.files_idle)
        files_api = FilesAPI(self.files, guard, config.instance, self.sessions.desktops_for, config.shares,
                             config.homes.files_max_upload, self.classwork)
        classwork_api = ClassworkAPI(self.classwork, guard, self.store, HandoutFiles(
            self.files, guard, self.classwork, self.store, config.homes.files_max_upload))
        admin_auth = AdminAuth(self.store, guard, reactor)
        admin = AdminAPI(admin_auth, {
            "sessions": SessionsAdmin(admin_auth, self.store, self.sessions, self.bridges).app.resource(),
            "users": UsersAdmin(admin_auth, self.store, self.sessions, self.bridges).app.resource(),
            **self.admin_groups(admin_auth),
        })
        web = RelayWeb(
            guard=guard,
            roles=Roles(config.admin_groups, config.teacher_groups),
            authenticator=authenticator,
            oidc=self.oidc,
            headers=headers,
            sign_in_timeout=config.oidc.sign_in_timeout if config.oidc else 600,
            throttle=LoginThrottle(reactor, config.login_attempts, config.login_window),
            api=UserAPI(self.store, self.sessions, guard, admin_auth.caller,
                        {"files": files_api.app.resource(),
                         "classes": ClassesAPI(self.store, self.sessions, guard, self.classes,
                                               self.assignments).app.resource(),
                         "classwork": classwork_api.app.resource(),
                         "looks": looks_api.app.resource()},
                        looks_of=self.looks.of_session),
            access=self.access,
            assets=AssetRelay(reactor, cache=self.client_files),
            bridges=self.bridges,
            sessions=self.sessions,
            store=self.store,
            metrics=self.metrics,
            admin=admin,
            pages=Pages(config.site, config.secure_cookies),
        )
        site = _RelaySite(web.resource())
        site.displayTracebacks = False
        # No request body beyond the largest upload reaches the disk (web/bodies.py).
        site.requestFactory = bounded_request(config.homes.files_max_upload)
        self._listener = StreamServerEndpointService(serverFromString(reactor, config.listen), site)
        # A port that cannot be bound is fatal: twistd should exit, not run without listening.
        self._listener._raiseSynchronously = True
        self._listeners = [(self._listener, config.listen)]
        if config.metrics_listen is not None:
            # Its own Site, never the public one: Apache does not reach it.
            metrics_site = _ScrapeSite(metrics_root(self.metrics.registry, config.metrics_token))
            metrics_site.displayTracebacks = False
            metrics_listener = StreamServerEndpointService(
                serverFromString(reactor, config.metrics_listen), metrics_site
            )
            metrics_listener._raiseSynchronously = True
            self._listeners.append((metrics_listener, config.metrics_listen))
        self._purger = TimerService(300, self.web_sessions.purge)
        # Long bridges' bytes reach the metrics at least this often, not only when they close.
        self._byte_counter = TimerService(10, self.bridges.count_bytes)
        self._ready: Deferred[None] | None = None

    def startService(self) -> None:
        before, limit = raise_soft_limit()
        # The admin's one number for "how many pupils at once" on this host (docs/deployment.md).
        self._log.info(
            "file descriptor limit {limit} (soft limit was {before}): room for {desktops} desktops",
            limit=limit, before=before, desktops=desktops_for(limit),
        )
        self._docker_pool.start()
        super().startService()
        self._ready = self._start()

    @inlineCallbacks
    def _start(self) -> Generator[Deferred[Any], Any, None]:
        try:
            yield self.store.open()
        except Exception:  # noqa: BLE001 - any failure to open the database is fatal, and logged
            self._log.failure("cannot open the database {path}", path=str(self.config.database))
            self._reactor.stop()
            return
        # The store matches Docker before the first request is answered where the engine is
        # reachable, and once it is back where it is not.
        yield self.lifecycle.prepare()
        if self.oidc is not None:
            # Fetched now to find configuration mistakes early; a provider that is down does not
            # stop the relay: the next sign-in tries again.
            try:
                yield self.oidc.provider.metadata()
            except SignInFailed as e:
                self._log.warn("OpenID provider not reachable yet, will retry at sign-in: {problem}",
                               problem=e.detail)
        yield self._sweep_files()
        # An assignment that ended while no relay ran stops what it offered now; a week covers
        # any pause a relay is likely to have.
        yield self.assignments.start(self._reactor.seconds() - 7 * 86400)
        try:
            yield self.classwork.start()
        except ContainerEngineUnavailable as e:
            self._log.warn("hand-in due times not enforced yet: {reason}", reason=str(e))
        self.lifecycle.setServiceParent(self)
        self._purger.setServiceParent(self)
        self._sighup.accepting = True
        self._byte_counter.setServiceParent(self)
        for listener, listen in self._listeners:
            try:
                listener.setServiceParent(self)
            except Exception:  # noqa: BLE001 - a relay that cannot listen must not pretend to run
                self._log.failure("cannot listen on {listen}", listen=listen)
                self._reactor.stop()
                return
        if self.config.metrics_listen is not None:
            self._log.info("metrics at /metrics on {listen}", listen=self.config.metrics_listen)
        self._log.info("desktop-relay ready at {url} (instance {instance})",
                       url=self.config.public_url, instance=self.config.instance)

    @inlineCallbacks
    def _sweep_files(self) -> Generator[Deferred[Any], Any, None]:
        """Remove the files containers an earlier process left; an engine that is down now
        leaves them to the next start (each is replaced on its home's next use anyway)."""
        try:
            removed = yield self.files.sweep()
        except ContainerEngineUnavailable as e:
            self._log.warn("files containers of an earlier run not removed: {reason}", reason=str(e))
            return
        if removed:
            self._log.info("removed {count} files container(s) of an earlier run", count=removed)

    def _owner_bridges(self, session_id: str) -> int:
        """How many of the session's own browsers show it: a teacher's look keeps no desktop alive."""
        return sum(1 for b in self.bridges.bridges_for_session(session_id)
                   if b.target is None or b.target.looking_at is None)

    def admin_groups(self, auth: AdminAuth) -> dict[str, IResource]:
        """The admin API groups of the catalog, the engine, the reload, the pool and the pre-starts,
        for AdminAPI to mount."""
        return {
            "desktops": DesktopsAdmin(auth, self.sessions, self.store, self._reactor).app.resource(),
            "engine": EngineAdmin(
                auth, self.sessions.provisioner, instance=self.config.instance, clock=self._reactor,
                started=self.started, bridge_count=lambda: self.bridges.bridge_count,
            ).app.resource(),
            "reload": ReloadAdmin(auth, self.reloader).app.resource(),
            "pool": PoolAdmin(auth, self.store, self.sessions).app.resource(),
            "prestarts": PrestartsAdmin(auth, self.store, self.prestarts, self._reactor).app.resource(),
            # /api/admin/audit and /api/admin/audit.csv
            **AuditAdmin(self.store, auth, self._reactor).resources(),
        }

    @inlineCallbacks
    def stopService(self) -> Generator[Deferred[Any], Any, None]:
        if self._ready is not None:
            yield self._ready
        # Browsers get a clean 1001 and reconnect to the next relay process.
        yield self.bridges.close_all(CLOSE_GOING_AWAY, "relay shutting down")
        yield super().stopService()
        self.assignments.stop()
        for working in self.sessions.working():
            working.cancel()
        yield DeferredList(self.sessions.working(), consumeErrors=True)
        self.classwork.stop()
        yield self.store.close()
        try:
            yield self.files.stop()
        except ContainerEngineUnavailable as e:
            self._log.warn("files containers not removed: {reason}", reason=str(e))
        self._docker_pool.stop()


def _timetables(config: RelayConfig) -> dict[str, tuple[ScheduleSettings, Timetable]]:
    """Each schedule's timetable, read now; lines or a calendar that cannot be read stop the start
    with the usual one-line error. A calendar is read again, in a thread, when it changes."""

    def read(path: Path, mtime: float | None) -> Deferred[tuple[float, bytes | None]]:
        return deferToThread(read_if_changed, path, mtime)

    timetables: dict[str, tuple[ScheduleSettings, Timetable]] = {}
    for name, schedule in config.schedules.items():
        try:
            timetables[name] = (schedule, timetable_for(schedule, read))
        except (TimetableError, OSError) as e:
            key = "times" if schedule.calendar is None else "calendar"
            raise ConfigError(f"{config.source}: [schedule:{name}] {key}: {e}") from None
    return timetables


def build_relay(config: RelayConfig, reactor: Any) -> RelayService:
    """The relay's service tree for this configuration."""
    return RelayService(config, reactor)
