"""Errors of the device agent, classified by what the caller (in the end: the CLI) does next.

```
AgentError                      exit_code
├── ConfigError                 2  bad flags, unreadable/absent state, not paired, already running
├── PairingRefused              3  the bridge said no (wrong/used code, rate limited, bad key)
├── NetworkError                4  could not reach the bridge (DNS, refused, TLS, timeout, 5xx)
└── AuthRejected                5  close code 4401/4403: the bridge will not take this device
```

Errors inside a connection that reconnecting can fix (drops, 1011, 4409, timeouts) never
leave `device_agent.client`; they become a log line and a backoff.
"""

from __future__ import annotations

__all__ = ["AgentError", "AuthRejected", "ConfigError", "NetworkError", "PairingRefused"]


class AgentError(Exception):
    """Base of every agent error; `exit_code` is what the CLI exits with."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(AgentError):
    """The command line, the settings or the state directory cannot be used as they are."""

    exit_code = 2


class PairingRefused(AgentError):
    """The bridge answered the pairing request with a refusal (4xx)."""

    exit_code = 3

    def __init__(self, message: str, *, status: int, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class NetworkError(AgentError):
    """The bridge could not be reached or failed (connection, TLS, timeout, 5xx)."""

    exit_code = 4


class AuthRejected(AgentError):
    """The bridge closed the device connection with a final code (4401 or 4403)."""

    exit_code = 5

    def __init__(self, message: str, *, close_code: int) -> None:
        super().__init__(message)
        self.close_code = close_code
