"""POST /api/admin/reload/: read relay.ini again (see desktop_relay.reload); a bad file changes
nothing and answers 422 with its one-line error."""

from __future__ import annotations

from klein import Klein
from twisted.internet.defer import inlineCallbacks
from twisted.web.iweb import IRequest

from ...config import ConfigError
from ...i18n import N_
from ...reload import ConfigReloader
from ..responses import Problem, json_response
from . import add_problem_handlers
from .auth import AdminAuth


class ReloadAdmin:
    """The reload, for admins with the right to change things."""

    app = Klein()
    add_problem_handlers(app)

    def __init__(self, auth: AdminAuth, reloader: ConfigReloader) -> None:
        self._auth = auth
        self._reloader = reloader


    @app.route("/", methods=["POST"])
    @inlineCallbacks
    def reload(self, request: IRequest):  # type: ignore[no-untyped-def]
        caller = yield self._auth.writer(request)
        try:
            result = yield self._reloader.reload(caller.name, "admin-reload")
        except ConfigError as e:
            # The configuration's own one-line error (file, section, key), as in the log: not translated.
            raise Problem(422, "invalid-configuration", N_("Configuration not reloaded"), str(e)) from None
        return json_response(request, result.as_json())
