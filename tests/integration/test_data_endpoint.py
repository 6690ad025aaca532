#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The data endpoint's own behaviour (secd/data.c, secd/tls.c, docs/protocol.md):
handshake parameters, frames, limits and timeouts, seen by a Python ssl
client on the Unix socket with certificates made from secd's own CA.
Every check that a session was admitted ends in a PING round trip."""
import os
import random
import signal
import socket
import ssl
import struct
import time
import unittest

from secdtest import NOBODY_UID, SecdTestCase, Deadline, run_as, wait_until
from mtlstest import (HAVE_CRYPTOGRAPHY, ERR_CERT_REVOKED, enroll_python, serial_hex, PYTHON_EXE, PING, PONG, ERROR, ERR_BAD_FRAME, ERR_UNKNOWN_TYPE,
                      ERR_TOO_LARGE, ERR_NOT_ADMITTED, ERR_IDLE_TIMEOUT, FrameConn, frame, key_pem, cert_pem,
                      local_uri, make_client_cert, make_key, tls_connect, tls_context)

if HAVE_CRYPTOGRAPHY:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

ERR_SHUTTING_DOWN = 9


def sha256_of(path):
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@unittest.skipUnless(HAVE_CRYPTOGRAPHY, "python3-cryptography is needed to make certificates")
class DataEndpointTest(SecdTestCase):

    def start(self, *extra):
        self.d = self.secd_dev(extra_args=["--handshake-timeout", "1s", *extra])
        with open(os.path.join(self.d.state_dir, "ca.crt"), "rb") as f:
            self.ca_pem = f.read()
        with open(os.path.join(self.d.state_dir, "ca.key"), "rb") as f:
            self.ca_key = serialization.load_pem_private_key(f.read(), None)
        self.ca_cert = x509.load_pem_x509_certificate(self.ca_pem)
        self.ca_path = self.path("ca.crt")
        with open(self.ca_path, "wb") as f:
            f.write(self.ca_pem)

    def tearDown(self):
        d = getattr(self, "d", None)
        if d is not None and d.alive():
            d.stop()
        super().tearDown()

    def client_ctx(self, uid=None, sha256=None, eku=("client",), name="client", not_after=None):
        key = make_key("ed25519")
        uri = local_uri(os.getuid() if uid is None else uid, sha256 or sha256_of(PYTHON_EXE))
        cert = make_client_cert(self.ca_cert, self.ca_key, key.public_key(), uri, eku=eku,
                                serial=(1 << 126) | random.getrandbits(120), not_after=not_after)
        kp, cp = self.path(f"{name}.key"), self.path(f"{name}.crt")
        with open(kp, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(key_pem(key))
        with open(cp, "wb") as f:
            f.write(cert_pem(cert))
        return tls_context(ca=self.ca_path, cert=cp, key=kp, min_version=ssl.TLSVersion.TLSv1_3)

    def connect(self, ctx=None):
        conn, failure = tls_connect(self.d.data, ctx or self.client_ctx())
        self.assertIsNone(failure, failure)
        self.addCleanup(conn.close)
        return conn

    def assert_error_then_closed(self, o, code):
        self.assertEqual((o.kind, o.type), ("frame", ERROR), o)
        self.assertEqual(struct.unpack(">H", o.payload[:2])[0], code, o)

    def assert_pong(self, conn, rid=5, payload=b"abc"):
        o = conn.ping(rid, payload)
        self.assertTrue(o.is_pong(rid, payload), o)

    def test_ping_pong_tls13_aes128(self):
        self.start()
        conn = self.connect()
        self.assertEqual(conn.sock.version(), "TLSv1.3")
        self.assertEqual(conn.sock.cipher()[0], "TLS_AES_128_GCM_SHA256")
        self.assert_pong(conn, 1, b"hello")
        self.assert_pong(conn, 0xFFFFFFFF, b"")
        # Pipelined: three requests in one write, three replies in order.
        conn.send(frame(PING, 10, b"a") + frame(PING, 11, b"bb") + frame(PING, 12, b"ccc"))
        for rid, p in ((10, b"a"), (11, b"bb"), (12, b"ccc")):
            self.assertTrue(conn.read_frame().is_pong(rid, p))
        st = self.secctl_json("status")
        self.assertEqual(st["connections"]["data"], 1, st)
        self.assertGreaterEqual(st["tls"]["handshakes"], 1, st)
        self.assertEqual(st["tls"]["refused"], 0, st)

    def test_tls12_is_refused(self):
        self.start()
        ctx = self.client_ctx()
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        conn, failure = tls_connect(self.d.data, ctx)
        self.assertIsNone(conn)
        self.assertIn(failure.kind, ("tls-error", "eof", "reset"), failure)

    def test_no_client_certificate_is_refused(self):
        self.start()
        ctx = tls_context(ca=self.ca_path, min_version=ssl.TLSVersion.TLSv1_3)
        conn, failure = tls_connect(self.d.data, ctx)
        if conn:
            self.addCleanup(conn.close)
            o = conn.ping()
            self.assertNotEqual(o.kind, "frame", o)

    def test_server_purpose_certificate_is_refused(self):
        self.start()
        conn, failure = tls_connect(self.d.data, self.client_ctx(eku=("server",)))
        if conn:
            self.addCleanup(conn.close)
            o = conn.ping()
            self.assertFalse(o.is_pong(1, b"secd-it"), o)
            if o.kind == "frame":
                self.assert_error_then_closed(o, ERR_NOT_ADMITTED)

    def test_certificate_of_another_uid_or_binary_is_refused(self):
        self.start()
        for name, ctx in (("uid", self.client_ctx(uid=4242, name="c-uid")),
                          ("sha256", self.client_ctx(sha256="00" * 32, name="c-sha"))):
            with self.subTest(name):
                conn = self.connect(ctx)
                o = conn.ping()
                self.assert_error_then_closed(o, ERR_NOT_ADMITTED)
                self.assertTrue(conn.closed_by_peer(5))
        self.assertEqual(self.secctl_json("status")["tls"]["refused"], 2)

    def test_unknown_type_keeps_the_session(self):
        self.start()
        conn = self.connect()
        o = conn.request(0x42, 9, b"?")
        self.assertEqual((o.type, o.request_id), (ERROR, 9), o)
        self.assertEqual(struct.unpack(">H", o.payload[:2])[0], ERR_UNKNOWN_TYPE)
        self.assert_pong(conn)

    def test_bad_magic_and_version_close(self):
        self.start()
        for name, raw in (("magic", frame(PING, 1, b"x", magic=b"XY")),
                          ("version", frame(PING, 1, b"x", version=2))):
            with self.subTest(name):
                conn = self.connect()
                self.assert_pong(conn)
                o = conn.request(PING, 1, raw=raw)
                self.assert_error_then_closed(o, ERR_BAD_FRAME)
                self.assertTrue(conn.closed_by_peer(5))

    def test_oversize_length_closes_before_allocation(self):
        self.start("--frame-payload-max", "4K")
        conn = self.connect()
        self.assert_pong(conn, 1, b"x" * 4096)
        # Announce 4 GiB - 1 and send nothing: refused from the header alone.
        o = conn.request(PING, 77, raw=frame(PING, 77, b"", length=0xFFFFFFFF)[:12])
        self.assert_error_then_closed(o, ERR_TOO_LARGE)
        self.assertEqual(o.request_id, 77)
        self.assertTrue(conn.closed_by_peer(5))
        conn = self.connect()
        o = conn.request(PING, 78, b"y" * 4097)
        self.assert_error_then_closed(o, ERR_TOO_LARGE)

    def test_truncated_frame_and_garbage_do_not_hurt_others(self):
        self.start()
        other = self.connect()
        conn = self.connect()
        conn.send(frame(PING, 3, b"0123456789")[:15])
        conn.close()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
            raw.settimeout(5)
            raw.connect(self.d.data)
            raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 4)
            d = Deadline(5)
            while not d.expired():
                try:
                    if not raw.recv(4096):
                        break
                except ConnectionResetError:
                    break
            self.assertFalse(d.expired(), "garbage instead of TLS was not hung up on")
        self.assert_pong(other)
        self.assertTrue(self.d.alive())

    def test_stalled_handshake_hits_the_timeout(self):
        self.start()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
            raw.settimeout(10)
            raw.connect(self.d.data)
            t0 = time.monotonic()
            self.assertEqual(raw.recv(1), b"")
            took = time.monotonic() - t0
        self.assertGreater(took, 0.5)
        self.assertLess(took, 5)
        self.assertEqual(self.secctl_json("status")["tls"]["handshake_timeouts"], 1)

    def test_sessions_per_uid(self):
        """One uid cannot hold all sessions: past data_sessions_per_uid secd closes its connections at once."""

        def closed_at_once(path, wait=0.4):
            """Connect raw: True if secd closes the connection before `wait` (it waits for a ClientHello otherwise)."""
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.settimeout(wait)
                s.connect(path)
                try:
                    return s.recv(1) == b""
                except socket.timeout:
                    return False
            finally:
                s.close()

        self.start("--data-sessions-per-uid", "3", "--handshake-timeout", "30s")
        held = []
        for _ in range(3):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.addCleanup(s.close)
            s.connect(self.d.data)
            held.append(s)
        # secd has accepted the three (they wait for a ClientHello) ...
        wait_until(lambda: self.secctl_json("status")["connections"]["data"] == 3,
                   what="secd accepting the 3 held connections")
        # ... and closes root's fourth at once, whatever it would say.
        self.assertTrue(closed_at_once(self.d.data))
        st = self.secctl_json("status")
        self.assertEqual(st["tls"]["uid_limit"], 1, st)
        self.assertEqual(st["connections"]["data"], 3, st)
        # Another uid is not affected (its connection waits for a handshake).
        self.assertFalse(run_as(NOBODY_UID, closed_at_once, self.d.data))
        # Closing one of root's frees a place: a TLS session gets its PONG.
        held.pop().close()
        wait_until(lambda: self.secctl_json("status")["connections"]["data"] == 2,
                   what="secd noticing the closed connection")
        self.assert_pong(self.connect())
        self.assertEqual(self.secctl_json("status")["tls"]["uid_limit"], 1)

    def test_handshake_failure_logs_are_rate_limited(self):
        # Anyone who can connect causes these lines: the journal gets a bounded number.
        self.start()
        n = 50
        for _ in range(n):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
                raw.settimeout(10)
                raw.connect(self.d.data)
                raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                try:
                    while raw.recv(4096):
                        pass
                except ConnectionResetError:
                    pass
        self.assertEqual(self.secctl_json("status")["tls"]["handshake_failures"], n)
        logged = self.d.stderr().count("TLS handshake failed")
        self.assertGreaterEqual(logged, 1, "handshake failures are not logged at all")
        # 20 per 10 s; a window may turn over during the loop on a slow machine.
        self.assertLessEqual(logged, 40, f"{logged} lines for {n} failures")
        self.assertTrue(self.d.alive())

    def test_idle_timeout(self):
        self.start("--data-idle-timeout", "1s")
        conn = self.connect()
        self.assert_pong(conn)
        o = conn.read_frame(10)
        self.assert_error_then_closed(o, ERR_IDLE_TIMEOUT)
        self.assertTrue(conn.closed_by_peer(5))

    def test_reload_keeps_sessions_and_resumption_is_checked(self):
        self.start()
        ctx = self.client_ctx()
        conn = self.connect(ctx)
        self.assert_pong(conn)
        session = conn.sock.session
        self.d.reload()
        self.assert_pong(conn, 6, b"after reload")
        # A resumed session is judged again and works.
        c2, failure = tls_connect(self.d.data, ctx, session=session)
        self.assertIsNone(failure, failure)
        self.addCleanup(c2.close)
        self.assert_pong(c2)
        self.assertTrue(c2.sock.session_reused, "the ticket did not resume")
        self.assertGreaterEqual(self.secctl_json("status")["tls"]["resumed"], 1)

    def test_enrolled_certificate_and_revocation_of_a_live_session(self):
        """Enroll over io.secd.Enroll, PING on data, revoke: the live session gets CERT_REVOKED."""
        self.start()
        key, reply = enroll_python(self.d.enroll)
        kp, cp = self.path("enrolled.key"), self.path("enrolled.crt")
        with open(kp, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(key_pem(key))
        with open(cp, "w") as f:
            f.write(reply["certificate"])
        ctx = tls_context(ca=self.ca_path, cert=cp, key=kp, min_version=ssl.TLSVersion.TLSv1_3)
        conn = self.connect(ctx)
        self.assert_pong(conn)
        session = conn.sock.session
        self.secctl("cert", "revoke", serial_hex(reply["certificate"]), expect=0)
        o = conn.read_frame(10)
        self.assert_error_then_closed(o, ERR_CERT_REVOKED)
        self.assertTrue(conn.closed_by_peer(5))
        # Neither a resumed nor a full handshake gets it back in.
        for sess in (session, None):
            c, failure = tls_connect(self.d.data, ctx, session=sess)
            if c:
                self.addCleanup(c.close)
                o = c.ping()
                self.assertFalse(o.is_pong(1, b"secd-it"), o)

    def assert_short_session_expires(self):
        """A session whose certificate expires 5 s from now gets ERROR CERT_EXPIRED, then the close."""
        import datetime
        # X.509 times have whole seconds: expire 5 s from now (rounded down).
        not_after = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=5)).replace(microsecond=0)
        conn = self.connect(self.client_ctx(not_after=not_after, name="short"))
        self.assert_pong(conn)
        o = conn.read_frame(15)
        self.assertEqual((o.kind, o.type), ("frame", ERROR), o)
        self.assertEqual(struct.unpack(">H", o.payload[:2])[0], 7, o)  # CERT_EXPIRED
        self.assertTrue(conn.closed_by_peer(5))

    def test_session_ends_when_the_certificate_expires(self):
        self.start()
        self.assert_short_session_expires()

    def test_expiry_of_one_session_among_longer_ones(self):
        """One expiry timer for all sessions: a later, shorter certificate still ends on time."""
        self.start()
        long_conn = self.connect()
        self.assert_pong(long_conn)
        self.assert_short_session_expires()
        # The other session goes on, and so do new ones.
        self.assert_pong(long_conn, 9, b"still here")
        self.assert_pong(self.connect())

    def test_sigterm_says_shutting_down(self):
        self.start()
        conn = self.connect()
        self.assert_pong(conn)
        self.d.proc.send_signal(signal.SIGTERM)
        o = conn.read_frame(10)
        self.assert_error_then_closed(o, ERR_SHUTTING_DOWN)
        self.d.wait_exit()


if __name__ == "__main__":
    unittest.main()
