#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Interoperability of secd's mTLS endpoints with other TLS stacks (issue 4).

gnutls-cli and openssl s_client, with a certificate from `secctl cert
issue`, complete mTLS on the TCP endpoint (loopback only); Python's ssl
module (OpenSSL) does it on the Unix socket with a certificate it enrolled
itself over io.secd.Enroll. Each one proves it by a PING round trip.
"""

import datetime
import glob
import os
import shutil
import signal
import socket
import subprocess
import time
import unittest

from cryptography import x509

from secdtest import SECD, EXIT_SUCCESS, Deadline, TIMEOUT, base_env, die_with_parent, sha256_file
import mtlstest as mt
from test_mtls import MtlsTestCase

GNUTLS_CLI = shutil.which("gnutls-cli")
OPENSSL = shutil.which("openssl")


class UnixInteropTest(MtlsTestCase):

    def test_python_ssl_enrolls_and_pings_on_the_unix_socket(self):
        self.require_tls()
        key, reply = self.require_enroll()
        self.assertEqual(mt.cert_uris(reply["certificate"]),
                         [mt.local_uri(os.getuid(), sha256_file(mt.PYTHON_EXE))])
        cert = x509.load_pem_x509_certificate(reply["certificate"].encode())
        self.assertEqual(len("%032x" % cert.serial_number), 32)
        lifetime = cert.not_valid_after - cert.not_valid_before
        self.assertLessEqual(lifetime.total_seconds(), 3600 + 600, "default lifetime is 1 h")
        ctx = self.python_ctx()
        conn, failure = mt.tls_connect(self.d.data, ctx)
        self.assertIsNone(failure, failure)
        self.assertEqual(conn.sock.version(), "TLSv1.3")
        # OpenSSL offers AES-256-GCM, ChaCha20, AES-128-GCM in this order;
        # secd's priority (AES-128-GCM first) decides.
        self.assertEqual(conn.sock.cipher()[0], "TLS_AES_128_GCM_SHA256")
        self.assert_pong(conn.ping(7, b"secd-it"))
        self.assert_pong(conn.ping(8, b"again"), 8, b"again")
        conn.close()

    def test_tls12_client_is_refused(self):
        self.require_tls()
        ctx = self.python_ctx()
        ctx.maximum_version = mt.ssl.TLSVersion.TLSv1_2
        o, _, _ = mt.tls_ping(self.d.data, ctx)
        self.assertEqual(o.kind, "tls-error", f"a TLS 1.2 client got {o!r}")

    def test_configured_client_cert_lifetime(self):
        if not mt.secd_help_has(SECD, "client-cert-lifetime"):
            self.skipTest("secd has no client_cert_lifetime option yet")
        self.require_enroll()
        d2 = self.secd_dev(name="secd-short", extra_args=("--client-cert-lifetime", "90s"))
        _, reply = mt.enroll_python(d2.enroll)
        cert = x509.load_pem_x509_certificate(reply["certificate"].encode())
        left = (cert.not_valid_after - datetime.datetime.utcnow()).total_seconds()
        self.assertTrue(0 < left <= 91, f"{left:.0f} s left on a 90 s certificate")
        self.assertTrue(reply["expires"].endswith("Z"), reply["expires"])
        d2.stop()


class TcpInteropTest(MtlsTestCase):
    """The TCP endpoint on 127.0.0.1 with a remote certificate from secctl cert issue."""

    def setUp(self):
        self.port = mt.free_tcp_port()
        self.secd_extra_args = ("--tcp-listen", f"127.0.0.1:{self.port}")
        super().setUp()
        self.addr = ("127.0.0.1", self.port)
        if not self.tcp_speaks_tls():
            if mt.source_has("secd/data.c", "secd/tls.c"):
                self.fail("secd/data.c and secd/tls.c are in the tree, but the tcp endpoint on "
                          f"127.0.0.1:{self.port} does not answer a TLS ClientHello")
            self.skipTest("secd's tcp endpoint does not speak TLS yet (secd/tls.c, secd/data.c)")
        self.require_secctl_cert()

    def tcp_speaks_tls(self):
        ctx = mt.tls_context()
        try:
            raw = socket.create_connection(self.addr, timeout=TIMEOUT)
        except OSError:
            return False
        try:
            ctx.wrap_socket(raw).close()
            return True
        except mt.ssl.SSLError as e:
            return "EOF" not in str(e)
        except OSError:
            return False
        finally:
            raw.close()

    def issue(self, name, *extra):
        """secctl cert issue NAME --out DIR: returns {ca, cert, key} paths (files 0600)."""
        out = os.path.join(self.secret_dir(), "out")
        os.mkdir(out, 0o700)
        self.secctl("cert", "issue", name, "--out", out, *extra, expect=EXIT_SUCCESS)
        found = {}
        for path in glob.glob(os.path.join(out, "*")):
            with open(path, "rb") as f:
                data = f.read()
            if b"PRIVATE KEY-----" in data:
                self.assertEqual(os.stat(path).st_mode & 0o777, 0o600, f"{path} is not 0600")
                found["key"] = path
                continue
            c = x509.load_pem_x509_certificate(data)
            try:
                is_ca = c.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
            except x509.ExtensionNotFound:
                is_ca = False
            found["ca" if is_ca else "cert"] = path
        self.assertEqual(set(found), {"ca", "cert", "key"}, f"files of cert issue: {os.listdir(out)}")
        with open(found["cert"]) as f:
            self.assertEqual(mt.cert_uris(f.read()), [f"secd://remote/{name}"])
        return found

    # Issue 4: "cert issue NAME --out DIR [--valid DURATION] (files 0600)".
    def test_cert_issue_writes_every_file_0600(self):
        out = os.path.join(self.secret_dir(), "out")
        os.mkdir(out, 0o700)
        self.secctl("cert", "issue", "it-modes", "--out", out, expect=EXIT_SUCCESS)
        modes = {n: os.stat(os.path.join(out, n)).st_mode & 0o777 for n in os.listdir(out)}
        self.assertEqual(len(modes), 3, modes)
        self.assertEqual(modes, {n: 0o600 for n in modes})

    def allow_cert(self, name):
        cp = self.secctl("--json", "policy", "allow", "--cert", name)
        if cp.returncode != EXIT_SUCCESS:
            self.skipTest(f"secctl policy allow --cert does not work yet: {cp.stderr.strip()[:200]}")

    def server_name(self):
        """A name the server certificate carries, for the clients' hostname check."""
        ctx = mt.tls_context()
        raw = socket.create_connection(self.addr, timeout=TIMEOUT)
        try:
            s = ctx.wrap_socket(raw)
            der = s.getpeercert(binary_form=True)
            s.close()
        finally:
            raw.close()
        c = x509.load_der_x509_certificate(der)
        try:
            san = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            names = san.get_values_for_type(x509.DNSName)
            ips = [str(i) for i in san.get_values_for_type(x509.IPAddress)]
        except x509.ExtensionNotFound:
            names, ips = [], []
        if "127.0.0.1" in ips:
            return "127.0.0.1"
        return names[0] if names else None

    def run_tool(self, argv, ping_rid=0x01020304, payload=b"\0interop\n\xff"):
        """Run a TLS command-line client; send one PING; return the reply bytes and its stderr."""
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=base_env(), cwd=self.root,
                             preexec_fn=die_with_parent)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        want = mt.FRAME_HEADER + len(payload)
        try:
            p.stdin.write(mt.frame(mt.PING, ping_rid, payload))
            p.stdin.flush()
            reply = mt.read_exact_from(p.stdout.fileno(), want, Deadline())
        finally:
            try:
                p.stdin.close()
            except BrokenPipeError:
                pass
            try:
                p.wait(2)   # gnutls-cli leaves at EOF; s_client -quiet does not
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGTERM)
                p.wait(TIMEOUT)
            err = p.stderr.read().decode(errors="replace")
            p.stdout.close()
            p.stderr.close()
        return reply, mt.frame(mt.PONG, ping_rid, payload), err

    @unittest.skipUnless(GNUTLS_CLI, "gnutls-cli is not installed")
    def test_gnutls_cli_with_an_issued_certificate(self):
        files = self.issue("it-gnutls")
        self.allow_cert("it-gnutls")
        name = self.server_name()
        log = os.path.join(self.root, "gnutls-cli.log")
        argv = [GNUTLS_CLI, f"--logfile={log}", "-p", str(self.port), "127.0.0.1",
                "--x509cafile", files["ca"], "--x509certfile", files["cert"],
                "--x509keyfile", files["key"]]
        argv += [f"--verify-hostname={name}"] if name else ["--no-ca-verification"]
        reply, pong, err = self.run_tool(argv)
        with open(log, errors="replace") as f:
            info = f.read()
        self.assertEqual(reply, pong, f"gnutls-cli got no PONG\n{err}\n{info}")
        self.assertIn("TLS1.3", info)

    @unittest.skipUnless(GNUTLS_CLI, "gnutls-cli is not installed")
    def test_server_prefers_aes128gcm_over_chacha20(self):
        files = self.issue("it-cipher")
        self.allow_cert("it-cipher")
        log = os.path.join(self.root, "gnutls-cli-cipher.log")
        argv = [GNUTLS_CLI, f"--logfile={log}", "-p", str(self.port), "127.0.0.1",
                "--priority", "NORMAL:-CIPHER-ALL:+CHACHA20-POLY1305:+AES-128-GCM",
                "--x509cafile", files["ca"], "--x509certfile", files["cert"],
                "--x509keyfile", files["key"], "--verify-hostname=127.0.0.1"]
        reply, pong, err = self.run_tool(argv)
        with open(log, errors="replace") as f:
            info = f.read()
        self.assertEqual(reply, pong, f"gnutls-cli got no PONG\n{err}\n{info}")
        self.assertIn("AES-128-GCM", info, "a client preferring ChaCha20 should get AES-128-GCM")
        self.assertNotIn("CHACHA20", info.split("Description:")[-1].split("\n")[0])

    @unittest.skipUnless(OPENSSL, "openssl is not installed")
    def test_openssl_s_client_with_an_issued_certificate(self):
        files = self.issue("it-openssl")
        self.allow_cert("it-openssl")
        argv = [OPENSSL, "s_client", "-quiet", "-connect", f"127.0.0.1:{self.port}",
                "-CAfile", files["ca"], "-cert", files["cert"], "-key", files["key"],
                "-verify_return_error"]
        reply, pong, err = self.run_tool(argv)
        self.assertEqual(reply, pong, f"openssl s_client got no PONG\n{err}")

    @unittest.skipUnless(GNUTLS_CLI, "gnutls-cli is not installed")
    def test_gnutls_cli_resumes(self):
        files = self.issue("it-resume")
        self.allow_cert("it-resume")
        log = os.path.join(self.root, "gnutls-cli-resume.log")
        argv = [GNUTLS_CLI, "--resume", f"--logfile={log}", "-p", str(self.port), "127.0.0.1",
                "--x509cafile", files["ca"], "--x509certfile", files["cert"],
                "--x509keyfile", files["key"], "--no-ca-verification"]
        reply, pong, err = self.run_tool(argv)
        with open(log, errors="replace") as f:
            info = f.read()
        self.assertEqual(reply, pong, f"no PONG on the resumed connection\n{err}\n{info}")
        self.assertIn("resumed", info.lower(), info)

    def test_issued_certificate_not_allowed_by_policy_is_refused(self):
        files = self.issue("it-nobody-allowed")
        o, _, _ = mt.tls_ping(self.addr, mt.tls_context(files["ca"], files["cert"], files["key"]),
                              family=socket.AF_INET)
        self.assert_refused(o, msg="a remote certificate no rule allows")
        self.allow_cert("it-nobody-allowed")
        o, _, _ = mt.tls_ping(self.addr, mt.tls_context(files["ca"], files["cert"], files["key"]),
                              family=socket.AF_INET)
        self.assert_pong(o)

    def test_garbage_on_tcp(self):
        files = self.issue("it-garbage")
        self.allow_cert("it-garbage")
        # No random first byte: >= 0x80 would read as an SSLv2 header and stall.
        for garbage in (b"GET / HTTP/1.1\r\nHost: secd\r\n\r\n", b"\0" + os.urandom(2047),
                        mt.frame(mt.PING, 1, b"plain")):
            s = socket.create_connection(self.addr, timeout=TIMEOUT)
            s.sendall(garbage)
            self.assertTrue(mt.FrameConn(s).closed_by_peer(), f"tcp kept {garbage[:16]!r}")
            s.close()
        o, _, _ = mt.tls_ping(self.addr, mt.tls_context(files["ca"], files["cert"], files["key"]),
                              family=socket.AF_INET)
        self.assert_pong(o)

    def test_issued_certificate_is_refused_on_the_unix_socket(self):
        # A remote certificate names no uid: the Unix endpoint cannot match it to its peer.
        files = self.issue("it-unix")
        self.allow_cert("it-unix")
        o, _, _ = mt.tls_ping(self.d.data, mt.tls_context(files["ca"], files["cert"], files["key"]))
        self.assert_not_admitted(o, "a remote certificate on the Unix endpoint")

    def test_enrolled_certificate_is_refused_on_tcp(self):
        # A local certificate names a uid and a program on this host, not a remote peer.
        ca, cert, key = self.python_creds()
        o, _, _ = mt.tls_ping(self.addr, mt.tls_context(ca, cert, key), family=socket.AF_INET)
        self.assert_not_admitted(o, "an enrolled (local) certificate on the tcp endpoint")

    def test_revoked_remote_certificate_is_refused_on_tcp(self):
        files = self.issue("it-revoked")
        self.allow_cert("it-revoked")
        ctx = mt.tls_context(files["ca"], files["cert"], files["key"])
        o, conn, _ = mt.tls_ping(self.addr, ctx, family=socket.AF_INET, keep=True)
        self.assert_pong(o)
        session = conn.sock.session
        conn.close()
        o, conn, reused = mt.tls_ping(self.addr, ctx, session=session, family=socket.AF_INET, keep=True)
        self.assert_pong(o)
        self.assertTrue(reused, "secd did not resume the TLS session on tcp")
        session = conn.sock.session or session
        conn.close()
        self.secctl("cert", "revoke", "it-revoked", expect=EXIT_SUCCESS)
        o, _, reused = mt.tls_ping(self.addr, ctx, session=session, family=socket.AF_INET)
        self.assert_refused(o, codes=(mt.ERR_CERT_REVOKED, mt.ERR_NOT_ADMITTED),
                            msg=f"resumed handshake after revocation (reused={reused})")
        o, _, _ = mt.tls_ping(self.addr, ctx, family=socket.AF_INET)
        self.assert_refused(o, codes=(mt.ERR_CERT_REVOKED, mt.ERR_NOT_ADMITTED),
                            msg="full handshake after revocation")

    @unittest.skipUnless(mt.revocation_closes_sessions(), mt.REVOCATION_CLOSE_MISSING)
    def test_revocation_closes_the_live_tcp_session(self):
        files = self.issue("it-revoked-live")
        self.allow_cert("it-revoked-live")
        ctx = mt.tls_context(files["ca"], files["cert"], files["key"])
        live, failure = mt.tls_connect(self.addr, ctx, family=socket.AF_INET)
        self.assertIsNone(failure, failure)
        self.assert_pong(live.ping(7, b"secd-it"))
        self.secctl("cert", "revoke", "it-revoked-live", expect=EXIT_SUCCESS)
        self.assertTrue(live.closed_by_peer(), "the live TCP session of a revoked certificate stays open")
        self.assertEqual([(o.type, o.error_code) for o in live.seen], [(mt.ERROR, mt.ERR_CERT_REVOKED)])
        live.close()

    def test_expired_issued_certificate_is_refused_and_its_session_closed(self):
        files = self.issue("it-short", "--valid", "6s")
        self.allow_cert("it-short")
        with open(files["cert"], "rb") as f:
            c = x509.load_pem_x509_certificate(f.read())
        ctx = mt.tls_context(files["ca"], files["cert"], files["key"])
        live, failure = mt.tls_connect(self.addr, ctx, family=socket.AF_INET)
        self.assertIsNone(failure, failure)
        self.assert_pong(live.ping(7, b"secd-it"))
        # secd closes the session when the certificate expires (bounded).
        self.assertTrue(live.closed_by_peer(timeout=TIMEOUT + 6),
                        "the session outlived its certificate")
        self.assertEqual([(o.type, o.error_code) for o in live.seen], [(mt.ERROR, mt.ERR_CERT_EXPIRED)])
        live.close()
        # Wall clock past notAfter (second granularity), bounded.
        end = c.not_valid_after.replace(tzinfo=None) + datetime.timedelta(seconds=1)
        d = Deadline()
        while datetime.datetime.utcnow() <= end and not d.expired():
            time.sleep(0.1)
        o, _, _ = mt.tls_ping(self.addr, ctx, family=socket.AF_INET)
        self.assert_refused(o, msg="an expired remote certificate")


if __name__ == "__main__":
    unittest.main()
