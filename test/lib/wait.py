"""Polling for a condition, shared by the e2e tests."""

from __future__ import annotations

import time


def wait_for(cond, timeout: float = 20, what="condition", logs=lambda: "",
             interval: float = 0.1):
    """cond()'s first truthy value, polled every `interval` s; AssertionError after `timeout`
    naming `what` (a string, or a callable giving it then) and showing logs()."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            what = what() if callable(what) else what
            raise AssertionError(f"timed out ({timeout:.0f}s) waiting for {what}\n{logs()}")
        time.sleep(interval)
