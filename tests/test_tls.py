"""wss:// served directly ([server] tls_cert / tls_key), with certificates the tests make,
checked by a real TLS client that trusts only them; SIGHUP serves a renewed certificate
(issue 14)."""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.asyncio.client import ClientConnection, connect

from tests.support import ask, collect_stream, expect, make_config, timeout
from tgws.daemon import Daemon
from tgws.errors import ConfigError

PATH = "/ws/telegram/"


def make_cert(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost; (cert.pem, key.pem)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def trusting(*certs: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    for cert in certs:
        context.load_verify_locations(cafile=str(cert))
    return context


def common_name(der: bytes) -> str:
    cert = x509.load_der_x509_certificate(der)
    value = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    return value if isinstance(value, str) else value.decode()


async def test_wss_end_to_end_login_and_a_stream(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path, "first")
    daemon = Daemon(make_config(tmp_path, **{"server.tls_cert": str(cert),
                                             "server.tls_key": str(key)}))
    await daemon.start()
    assert daemon.app is not None
    api_key = await daemon.app.store.create_api_key("tls")
    try:
        url = f"wss://127.0.0.1:{daemon.port}{PATH}"
        async with connect(url, ssl=trusting(cert), max_size=2**24) as ws:
            tls_object = ws.transport.get_extra_info("ssl_object")
            assert tls_object is not None and tls_object.version() in ("TLSv1.2", "TLSv1.3")
            expect(await ask(ws, "login", {"apiKey": api_key}), "login", "success",
                   "send phone number")
            expect(await ask(ws, "telegram login", {"phone": "+919876543210"}),
                   "telegram login", "success", "send code")
            expect(await ask(ws, "telegram login", {"code": "12345"}),
                   "telegram login", "success", "logged in successfully")
            await ws.send('{"event": "chats", "data": {"group": ["testgroup00002"]}}')
            messages, done = await collect_stream(ws, "chats")
            assert len(messages) == done["count"] == 120
        # A plain ws:// client cannot talk to it, and a client that does not trust the
        # certificate refuses it.
        with pytest.raises(Exception):  # noqa: B017 (websockets' handshake error types vary)
            async with connect(f"ws://127.0.0.1:{daemon.port}{PATH}", open_timeout=timeout(5)):
                pass
        with pytest.raises(ssl.SSLCertVerificationError):
            async with connect(url, ssl=ssl.create_default_context()):
                pass
    finally:
        await daemon.stop()


async def test_reload_serves_a_renewed_certificate_and_keeps_it_when_the_new_one_is_bad(
        tmp_path: Path) -> None:
    first_cert, first_key = make_cert(tmp_path, "first")
    second_cert, second_key = make_cert(tmp_path, "second")
    settings = {"server.tls_cert": str(first_cert), "server.tls_key": str(first_key)}
    daemon = Daemon(make_config(tmp_path, **settings),
                    reload_loader=lambda: make_config(tmp_path, **settings))
    await daemon.start()
    url = f"wss://127.0.0.1:{daemon.port}{PATH}"
    both = trusting(first_cert, second_cert)
    try:
        open_before = await connect(url, ssl=both)
        assert common_name(_peer_der(open_before)) == "first"
        # A renewal that does not load (the key of another certificate): the old one stays.
        settings["server.tls_key"] = str(second_key)
        await daemon.reload()
        async with connect(url, ssl=both) as ws:
            assert common_name(_peer_der(ws)) == "first"
        # The renewal written over the same paths, as certbot or a cron job does.
        first_cert.write_bytes(second_cert.read_bytes())
        first_key.write_bytes(second_key.read_bytes())
        settings["server.tls_key"] = str(first_key)
        await daemon.reload()
        async with connect(url, ssl=both) as ws:
            assert common_name(_peer_der(ws)) == "second"
        # The connection opened before the reload still works.
        reply = await ask(open_before, "login", {"apiKey": "tgws_wrong"})
        assert reply["data"]["status"] == "failed"
        await open_before.close()
    finally:
        await daemon.stop()


def _peer_der(ws: ClientConnection) -> bytes:
    der = ws.transport.get_extra_info("ssl_object").getpeercert(binary_form=True)
    assert isinstance(der, bytes)
    return der


async def test_a_certificate_that_does_not_load_stops_the_start_naming_the_keys(
        tmp_path: Path) -> None:
    cert, _ = make_cert(tmp_path, "first")
    _, other_key = make_cert(tmp_path, "other")
    for key in (other_key, tmp_path / "missing.key"):
        daemon = Daemon(make_config(tmp_path, **{"server.tls_cert": str(cert),
                                                 "server.tls_key": str(key)}))
        with pytest.raises(ConfigError, match=r"server\.tls_cert/tls_key") as raised:
            await daemon.start()
        assert "PRIVATE KEY" not in str(raised.value)


def test_tls_cert_without_tls_key_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"server\.tls_key: expected tls_cert and tls_key"):
        make_config(tmp_path, **{"server.tls_cert": "a.pem"})


def test_sighup_to_tgws_serve_serves_the_new_certificate(tmp_path: Path) -> None:
    """`tgws serve` as a process, its config naming the files relative to its folder."""
    cert, key = make_cert(tmp_path, "first")
    second_cert, second_key = make_cert(tmp_path, "second")
    config = tmp_path / "tgws.toml"
    config.write_text('[server]\nport = 0\ntls_cert = "first.crt"\ntls_key = "first.key"\n'
                      '[store]\npath = "tgws.db"\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TGWS_")}
    proc = subprocess.Popen([sys.executable, "-m", "tgws", "serve", "--sandbox", "--config",
                             str(config)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            text=True, env=env, cwd="/")
    log = _LogWatch(proc)
    try:
        port = int(log.wait_for(r"listening on wss://127\.0\.0\.1:(\d+)/").group(1))
        both = trusting(cert, second_cert)
        assert common_name(_handshake(port, both)) == "first"
        cert.write_bytes(second_cert.read_bytes())
        key.write_bytes(second_key.read_bytes())
        proc.send_signal(signal.SIGHUP)
        log.wait_for(r"reloaded config: applied .*server\.tls_cert")
        assert common_name(_handshake(port, both)) == "second"
    finally:
        proc.terminate()
        proc.wait(timeout(20))
        log.close()
    assert proc.returncode == 0, log.lines


def _handshake(port: int, context: ssl.SSLContext) -> bytes:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=timeout(10)) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls_socket:
        der = tls_socket.getpeercert(binary_form=True)
    assert der is not None
    return der


class _LogWatch:
    """The daemon's stderr, read in a thread; wait_for a line matching a pattern."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._proc = proc
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """After the process ended: the reader meets EOF, then the pipe is closed."""
        self._thread.join(timeout(10))
        assert self._proc.stderr is not None
        self._proc.stderr.close()

    def _read(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()

    def wait_for(self, pattern: str) -> re.Match[str]:
        found: list[re.Match[str]] = []

        def seen() -> bool:
            found[:] = [m for line in self.lines if (m := re.search(pattern, line))]
            return bool(found)

        with self._changed:
            assert self._changed.wait_for(seen, timeout(30)), (pattern, self.lines)
        return found[0]


def test_check_config_loads_the_certificate(tmp_path: Path) -> None:
    make_cert(tmp_path, "first")
    make_cert(tmp_path, "other")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TGWS_")}
    for key, code in (("first.key", 0), ("other.key", 2)):
        config = tmp_path / "tgws.toml"
        config.write_text(f'[server]\ntls_cert = "first.crt"\ntls_key = "{key}"\n'
                          '[telegram]\nbackend = "sandbox"\n', encoding="utf-8")
        result = subprocess.run([sys.executable, "-m", "tgws", "check-config", "--config",
                                 str(config)], capture_output=True, text=True, env=env,
                                cwd="/", timeout=timeout(60))
        assert result.returncode == code, result.stderr
        if code:
            assert result.stderr.startswith(f"tgws: config error: {config}: "
                                            "server.tls_cert/tls_key: "), result.stderr
            assert "KEY_VALUES_MISMATCH" in result.stderr
