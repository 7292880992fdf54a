"""deploy/nginx.conf as shipped (only ports and certificate paths swapped): `nginx -t`
accepts it, and the app really works through it: HTTP redirects to HTTPS, TLS answers with
the security headers (each once, HSTS included), the gateway's paths reach the gateway, and
in Chromium an admin signs in over the proxied websocket and stays signed in on reload."""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from db.engine import REPO_ROOT, dispose_engines
from tests.support.browser import sign_in, wait_for_app, wait_for_cookie
from tests.support.databases import SERVERS, create_database, drop_database
from tests.support.live_app import free_port, run_app

pytestmark = [pytest.mark.e2e, pytest.mark.one_server]

SITE = REPO_ROOT / "deploy" / "nginx.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(path: str, what: str) -> None:
    if not os.path.exists(path):
        if IN_CI:
            pytest.fail(f"{what} is not installed ({path}); .ci/run installs it")
        pytest.skip(f"{what} is not installed")


def self_signed(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def site_config(*, app_port: int, gateway_port: int, http_port: int, https_port: int,
                cert: Path, key: Path) -> str:
    """The shipped file with this machine's ports and certificate; nothing else changed."""
    text = SITE.read_text()
    swaps = {
        "127.0.0.1:8501;": f"127.0.0.1:{app_port};",
        "127.0.0.1:8787;": f"127.0.0.1:{gateway_port};",
        "    listen [::]:80;\n": "",
        "    listen [::]:443 ssl http2;\n": "",
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{https_port} ssl http2;",
        "/etc/letsencrypt/live/gemini-keys.example.com/fullchain.pem": str(cert),
        "/etc/letsencrypt/live/gemini-keys.example.com/privkey.pem": str(key),
        "return 301 https://$host$request_uri;":
            f"return 301 https://$host:{https_port}$request_uri;",
    }
    for old, new in swaps.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


def main_config(prefix: Path, site: Path) -> str:
    """What /etc/nginx/nginx.conf provides around a site, in a private prefix."""
    run_as = "user root;\n" if os.geteuid() == 0 else ""
    return f"""{run_as}worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {site};
}}
"""


class FakeGateway(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = f'{{"gateway": "{self.path}"}}'.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def wait_for_port(port: int, process: subprocess.Popen, log: Path) -> None:
    for _ in range(300):
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited:\n{log.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("nginx did not listen")


@pytest.fixture(scope="module")
def proxied(tmp_path_factory):
    need(NGINX, "nginx")
    if not SERVERS:
        pytest.skip("no PostgreSQL server")
    prefix = tmp_path_factory.mktemp("nginx")
    for folder in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / folder).mkdir()
    gateway = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeGateway)
    threading.Thread(target=gateway.serve_forever, daemon=True).start()
    name = f"gk_e2e_nginx_{os.getpid()}"
    url = create_database(SERVERS[0], name)
    try:
        with run_app(url, tmp_path_factory.mktemp("nginx-app"),
                     extra_env={"GEMINI_KEYS_CLIENT_ADDRESS_HEADER": "X-Forwarded-For"}) as app:
            app_port = int(app.base_url.rsplit(":", 1)[1])
            cert, key = self_signed(prefix)
            http_port, https_port = free_port(), free_port()
            site = prefix / "gemini-keys.conf"
            site.write_text(site_config(app_port=app_port,
                                        gateway_port=gateway.server_address[1],
                                        http_port=http_port, https_port=https_port,
                                        cert=cert, key=key))
            main = prefix / "nginx.conf"
            main.write_text(main_config(prefix, site))
            checked = subprocess.run([NGINX, "-t", "-p", str(prefix), "-c", str(main)],
                                     capture_output=True, text=True, timeout=30)
            assert checked.returncode == 0, checked.stderr
            process = subprocess.Popen([NGINX, "-p", str(prefix), "-c", str(main),
                                        "-g", "daemon off;"], start_new_session=True,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_for_port(https_port, process, prefix / "error.log")
                yield {"app": app, "http": http_port, "https": https_port,
                       "checked": checked.stderr}
            finally:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=15)
    finally:
        gateway.shutdown()
        dispose_engines()
        drop_database(SERVERS[0], name)


def unverified() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_nginx_accepts_the_shipped_config(proxied):
    assert "syntax is ok" in proxied["checked"] and "test is successful" in proxied["checked"]


def test_http_redirects_to_https(proxied):
    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as answer:
        opener.open(f"http://127.0.0.1:{proxied['http']}/keys?x=1", timeout=10)
    assert answer.value.code == 301
    assert answer.value.headers["Location"] == f"https://127.0.0.1:{proxied['https']}/keys?x=1"


def test_https_answers_with_each_security_header_once(proxied):
    url = f"https://127.0.0.1:{proxied['https']}/_stcore/health"
    with urllib.request.urlopen(url, context=unverified(), timeout=10) as response:  # noqa: S310
        assert response.read().decode().strip() == "ok"
        headers = response.headers
    assert headers["Strict-Transport-Security"].startswith("max-age=")
    for name, value in {"X-Frame-Options": "SAMEORIGIN",
                        "Content-Security-Policy": "frame-ancestors 'self'",
                        "X-Content-Type-Options": "nosniff",
                        "Referrer-Policy": "same-origin"}.items():
        assert headers.get_all(name) == [value], (name, headers.get_all(name))
    assert "nginx/" not in (headers["Server"] or "")


def test_gateway_paths_reach_the_gateway(proxied):
    url = f"https://127.0.0.1:{proxied['https']}/v1beta/openai/models"
    with urllib.request.urlopen(url, context=unverified(), timeout=10) as response:  # noqa: S310
        assert response.read() == b'{"gateway": "/v1beta/openai/models"}'


def test_an_admin_signs_in_through_the_proxy_and_stays_in_on_reload(proxied, chromium):
    app = proxied["app"]
    context = chromium.new_context(ignore_https_errors=True)
    context.set_default_timeout(60_000)
    try:
        page = context.new_page()
        page.goto(f"https://127.0.0.1:{proxied['https']}/keys")
        wait_for_app(page)  # drawn over the websocket, through the proxy
        sign_in(page, app)
        page.get_by_role("heading", name="Keys", exact=True).first.wait_for()
        wait_for_cookie(page)
        cookie = next(c for c in context.cookies() if c["name"] == "gemini_keys_auth")
        assert cookie["httpOnly"]
        page.reload()
        page.get_by_role("heading", name="Keys", exact=True).first.wait_for()
        page.get_by_role("button", name="Sign out").wait_for()  # the cookie, proxied
    finally:
        context.close()
    # The throttle saw the client through the proxy's header, not the proxy itself.
    assert "X-Forwarded-For" in SITE.read_text()
