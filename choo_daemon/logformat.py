"""The daemon log's format: one line per record, whatever its text holds.

Messages quote what clients send (a ``hello``'s client name, run IDs, repository
paths, error messages): a newline there would start a line that looks like
the daemon's own, and an escape sequence would act on the terminal of
whoever reads the log. So a message's control characters, newlines
included, are shown (``protocol.control.visible``); a traceback keeps its
lines, each indented, so that no line of it can pass for a record.
"""

from __future__ import annotations

import logging

from protocol.control import visible

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CONTINUATION = "  | "


class OneLineFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = visible(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: logging._SysExcInfoType) -> str:
        return _indented(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _indented(super().formatStack(stack_info))


def _indented(text: str) -> str:
    return "\n".join(CONTINUATION + visible(line) for line in text.splitlines())
