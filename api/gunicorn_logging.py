"""gunicorn's own lines (its master's and its workers': booting, timeouts, signals) in the app's format, through
core/logs.py's one handler: `--logger-class api.gunicorn_logging.Logger`. The app logs each request itself
(api/request_log.py), with its request id, so gunicorn's access log stays off."""

from __future__ import annotations

from typing import Any

from gunicorn import glogging

from core import logs
from core.settings import Settings


class Logger(glogging.Logger):
    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            log.handlers = []
            log.propagate = True
        logs.configure(cfg.loglevel, Settings().log_format)
