"""The admin API: `esess-flowctl status`, `deploy`, `watch`, `stop` and `start` talk to a
running runtime through it.

- `access`: where it listens (a unix socket in the state directory, or a loopback TCP
  port) and the token every request carries; standard library only.
- `deploy`: what a deploy changes (a fingerprint of each flow's resolved plan) and doing
  it; no HTTP.
- `server`: the listening socket inside the runtime, the token, the watchers (imported
  only by `run`); `app`: the aiohttp application on it, imported when the first client
  connects.
- `client`: the command line's side, standard library only (`http.client`).
"""

from flowengine.admin.access import AdminAddress, AdminUnreachable

__all__ = ["AdminAddress", "AdminUnreachable"]
