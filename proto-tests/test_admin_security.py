"""The admin API with ``admin.token`` set: every quarantine route, the mutating ones first,
is refused without the token (no header, a wrong token, another auth scheme, the token in
the query string) and changes nothing; with the token the same calls work; the token never
appears in the proxy's log (debug level) nor in ``check-config`` output. A proxy whose admin
API listens beyond loopback without a token says so in its log. (Loopback is the default:
``config::tests::admin_listens_on_loopback_by_default``.)"""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request

import pytest

from harness import free_port, quarantine_bin
from poison_support import PoisonStack, admin_call, quarantined

TOKEN = "tok-7f3a9c1e-admin-secret"
ROUTES = [
    ("POST", "/quarantine", {"group": "g", "topic": "t", "partition": 0, "offset": 1}),
    ("DELETE", "/quarantine/g/t/0/1", None),
    ("POST", "/quarantine/guards/g/rearm", None),
    ("GET", "/quarantine", None),
    ("GET", "/quarantine/searches", None),
    ("GET", "/quarantine/guards", None),
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = PoisonStack(workdir=tmp_path_factory.mktemp("admin-security"), watch=None,
                    admin_token=TOKEN)
    s.proxy.log_level = "debug"
    s.start()
    yield s
    s.stop()


def raw_call(url: str, method: str, headers: dict[str, str]) -> int:
    req = urllib.request.Request(url, method=method, headers=headers,
                                 data=b"{}" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_every_route_refused_without_the_token(stack):
    proxy = stack.proxy
    for method, path, body in ROUTES:
        for token in (None, "wrong-token", TOKEN + "x", TOKEN[:-1], ""):
            status, _ = admin_call(proxy, method, path, body, token=token)
            assert status == 401, f"{method} {path} with token {token!r}: {status}"
        for headers in ({"Authorization": f"Basic {TOKEN}"},
                        {"Authorization": TOKEN},
                        {"X-Admin-Token": TOKEN}):
            status = raw_call(proxy.admin_url + path, method, headers)
            assert status == 401, f"{method} {path} with {headers}: {status}"
        status = raw_call(f"{proxy.admin_url}{path}?token={TOKEN}", method, {})
        assert status == 401, f"{method} {path} with the token in the query: {status}"
    # Nothing changed, and the token opens every route.
    assert quarantined(proxy, TOKEN) == []
    for method, path, _ in ROUTES:
        if method == "GET":
            status, _ = admin_call(proxy, method, path, token=TOKEN)
            assert status == 200, f"{method} {path} with the token: {status}"
    status, _ = admin_call(proxy, "POST", "/quarantine/guards/g/rearm", token=TOKEN)
    assert status != 401
    # Health and metrics stay open to probes and scrapers.
    for path in ("/live", "/metrics"):
        assert raw_call(proxy.admin_url + path, "GET", {}) == 200


def test_the_token_never_reaches_a_log(stack, tmp_path):
    proxy = stack.proxy
    admin_call(proxy, "GET", "/quarantine", token=TOKEN)
    admin_call(proxy, "GET", "/quarantine", token="wrong-token")
    log = proxy.log_text()
    assert "admin server listening" in log  # the log is there, at debug level
    assert TOKEN not in log
    # check-config, good and bad, with the token in the file and in the environment.
    good = tmp_path / "good.yaml"
    good.write_text(f"admin:\n  token: {TOKEN}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"admin:\n  token: {TOKEN}\n  listen: nonsense\n")
    for path in (good, bad):
        for env in ({}, {"QUARANTINE__ADMIN__TOKEN": TOKEN}):
            out = subprocess.run([str(quarantine_bin()), "check-config", str(path)],
                                 capture_output=True, text=True, env=env, timeout=60)
            assert TOKEN not in out.stdout + out.stderr, f"{path.name}: the token printed"
    assert out.returncode == 64


def test_admin_beyond_loopback_without_token_is_logged(tmp_path, stack):
    from harness import Quarantine
    q = Quarantine(upstream=stack.broker, workdir=tmp_path)
    write = q.write_config

    def wildcard_admin():
        path = write()
        text = path.read_text().replace(f'listen: "127.0.0.1:{q.admin_port}"',
                                        f'listen: "0.0.0.0:{q.admin_port}"')
        path.write_text(text)
        return path
    q.write_config = wildcard_admin
    q.start()
    try:
        assert "without admin.token" in q.log_text()
    finally:
        q.stop()
