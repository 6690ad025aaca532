#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Admission over mTLS with real processes (issue 4).

An allowed uid + binary enrolls and pings; another uid, a modified copy of
the binary, a stolen certificate (other uid, other binary), revoked,
expired, foreign-CA, server-purpose and missing client certificates are
refused; permissive mode admits and logs; garbage, a stalled handshake, an
oversize length and a truncated frame are handled while secd keeps serving.

Every acceptance and every refusal is decided by a PING round trip: a
TLS 1.3 client reports success before the server has judged its
certificate. Tests whose daemon or library feature is not in the tree yet
are skipped with the reason.
"""

import datetime
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import unittest

from cryptography import x509

from secdtest import (SECD, EXIT_SUCCESS, NOBODY_GID, NOBODY_UID, Deadline, SecdTestCase,
                      TIMEOUT, VarlinkError, base_env, die_with_parent, read_line, run_as,
                      sanitizer_report, sha256_file, wait_until)
import mtlstest as mt


class MtlsTestCase(SecdTestCase):
    """secd --dev; other uids reach the 0666 data and enroll sockets."""

    secd_extra_args = ()

    def setUp(self):
        super().setUp()
        self.d = self.secd_dev(extra_args=self.secd_extra_args)
        for p in (os.path.dirname(self.d.runtime_dir), self.d.runtime_dir):
            os.chmod(p, 0o755)
        self._tls = None
        self._enroll = None

    def tearDown(self):
        if self.d.alive():
            self.d.stop()
        super().tearDown()

    # ---- feature detection (skip, never pass, when a part is missing) ------

    # A part whose source is in the tree must work: only a missing part is
    # skipped (the tree stays green while colleagues' work lands, and a
    # regression in a committed part fails instead of skipping).

    def require_tls(self):
        if self._tls is None:
            self._tls = mt.data_speaks_tls(self.d.data)
        if not self._tls:
            if mt.source_has("secd/data.c", "secd/tls.c"):
                self.fail("secd/data.c and secd/tls.c are in the tree, but the data endpoint does "
                          "not answer a TLS ClientHello")
            self.skipTest("secd's data endpoint does not speak TLS yet (secd/tls.c, secd/data.c)")

    def require_enroll(self):
        """io.secd.Enroll.Issue on the enroll socket; returns (key, reply) of this process."""
        if self._enroll is None:
            try:
                self._enroll = mt.enroll_python(self.d.enroll)
            except VarlinkError as e:
                if (e.error in ("org.varlink.service.MethodNotFound",
                                "org.varlink.service.InterfaceNotFound")
                        and not mt.source_has("secd/enroll.c")):
                    self.skipTest(f"io.secd.Enroll.Issue is not served yet ({e.error})")
                raise
            except (ConnectionError, OSError) as e:
                if mt.source_has("secd/enroll.c"):
                    raise
                self.skipTest(f"the enroll socket does not speak Varlink yet (secd/enroll.c): {e}")
        return self._enroll

    def require_client(self):
        if not mt.client_available():
            self.skipTest("secd-test-client is not built: libsecclient does not implement the "
                          "mTLS API of secclient.h yet (see tests/integration/CMakeLists.txt)")
        self.require_tls()
        self.require_enroll()

    def require_secctl_cert(self):
        cp = self.secctl("--json", "cert", "list")
        if cp.returncode != EXIT_SUCCESS:
            if mt.source_has("secctl/verb-cert.c", "secd/control-certs.c"):
                self.fail(f"secctl cert list fails although the Certs parts are in the tree\n"
                          f"{self.describe_cp(cp)}")
            self.skipTest(f"secctl cert list does not work yet (exit {cp.returncode}): "
                          f"{cp.stderr.strip()[:200]}")

    # ---- helpers ----------------------------------------------------------

    def secret_dir(self):
        """A 0700 directory for key material, removed with the test's root."""
        path = self.path(f"secret{len([n for n in os.listdir(self.root) if n.startswith('secret')])}")
        os.mkdir(path, 0o700)
        self.addCleanup(shutil.rmtree, path, True)
        return path

    def python_creds(self):
        """This interpreter's enrolled credentials as 0600 files: (ca, cert, key)."""
        key, reply = self.require_enroll()
        d = self.secret_dir()
        return (mt.write_secret(d, "ca.pem", reply["ca"]),
                mt.write_secret(d, "cert.pem", reply["certificate"]),
                mt.write_secret(d, "key.pem", mt.key_pem(key)))

    def python_ctx(self, creds=None):
        ca, cert, key = creds or self.python_creds()
        return mt.tls_context(ca, cert, key)

    def assert_pong(self, outcome, request_id=7, payload=b"secd-it", msg=""):
        self.assertTrue(outcome.is_pong(request_id, payload),
                        f"expected PONG id={request_id} payload={payload!r}, got {outcome!r} {msg}")

    def assert_not_admitted(self, outcome, msg=""):
        """docs/protocol.md 3: ERROR NOT_ADMITTED with request id 0 (then the close)."""
        self.assertEqual((outcome.kind, outcome.type, outcome.request_id, outcome.error_code),
                         ("frame", mt.ERROR, 0, mt.ERR_NOT_ADMITTED), f"{outcome!r} {msg}")

    def assert_refused(self, outcome, codes=None, msg=""):
        self.assertTrue(outcome.refused(), f"expected a refusal, got {outcome!r} {msg}")
        if codes is not None and outcome.kind == "frame":
            self.assertIn(outcome.error_code, codes, f"{outcome!r} {msg}")

    def assert_serving(self, daemon=None, rules=None):
        """Control answers and a fresh mTLS client (this interpreter) gets its PONG."""
        super().assert_serving(daemon, rules)
        if self._tls and self.ca_material(required=False):
            o, _, _ = mt.tls_ping(self.d.data, self.python_ctx(self._creds_cache()))
            self.assert_pong(o, msg="secd stopped serving mTLS clients")

    def _creds_cache(self):
        if not hasattr(self, "_creds"):
            self._creds = self.crafted_creds()
        return self._creds

    def ca_material(self, required=True):
        """secd's CA certificate (state_dir/ca.crt) and key, read as root; skips if absent."""
        if not hasattr(self, "_ca"):
            self._ca = None
            path = os.path.join(self.d.state_dir, "ca.crt")
            if os.path.exists(path):
                with open(path, "rb") as f:
                    ca_cert = x509.load_pem_x509_certificate(f.read())
                ca_key = mt.find_private_key_for(self.d.state_dir, ca_cert.public_key())
                if ca_key is None:
                    self.fail(f"no private key for {path} under {self.d.state_dir}")
                self._ca = (ca_cert, ca_key)
        if self._ca is None and required:
            self.skipTest(f"secd made no CA ({self.d.state_dir}/ca.crt) yet")
        return self._ca

    def crafted(self, **kw):
        """A client certificate like an enrolled one for this interpreter, made with the CA key."""
        ca_cert, ca_key = self.ca_material()
        key = mt.make_key(kw.pop("kind", mt.key_kind(ca_key.public_key())))
        issuer_cert = kw.pop("issuer_cert", ca_cert)
        issuer_key = kw.pop("issuer_key", ca_key)
        uri = kw.pop("uri", mt.local_uri(os.getuid(), sha256_file(mt.PYTHON_EXE)))
        return mt.make_client_cert(issuer_cert, issuer_key, key.public_key(), uri, **kw), key

    def ca_file(self):
        ca_cert, _ = self.ca_material()
        return mt.write_secret(self.secret_dir(), "ca.pem", mt.cert_pem(ca_cert))

    def crafted_creds(self, **kw):
        cert, key = self.crafted(**kw)
        d = self.secret_dir()
        return (self.ca_file(), mt.write_secret(d, "cert.pem", mt.cert_pem(cert)),
                mt.write_secret(d, "key.pem", mt.key_pem(key)))

    def root_rules(self):
        return [r for r in self.rules() if r.get("uid") == 0 and r["action"] == "allow"]

    def allow_only(self, sha256, uid=0, **kw):
        """Replace the dev rule (root, any binary) by root + this executable only."""
        for r in self.root_rules():
            self.secctl("policy", "remove", str(r["id"]), expect=EXIT_SUCCESS)
        return self.add_rule("allow", "--uid", str(uid), "--sha256", sha256)

    def audit_entries(self):
        doc = self.secctl_json("audit", "--limit", "1000")
        return doc["entries"] if isinstance(doc, dict) else doc

    def last_audit_id(self):
        return max((e["id"] for e in self.audit_entries()), default=0)

    def decisions_since(self, after_id, endpoint=None):
        return [e["fields"] for e in self.audit_entries()
                if e["id"] > after_id and e["kind"] == "decision"
                and (endpoint is None or e["fields"].get("endpoint") == endpoint)]

    def wait_decision(self, after_id, endpoint, **facts):
        """Wait (bounded) for a decision with these facts: audit rows land a moment after the decision."""
        def find():
            return [f for f in self.decisions_since(after_id, endpoint)
                    if all(f.get(k) == v for k, v in facts.items())]
        return wait_until(find, what=f"a recorded {endpoint} decision with {facts}: "
                                     f"{self.decisions_since(after_id)}")

    def assert_data_refusal_recorded(self, after_id, serial, **facts):
        """The data endpoint recorded a denial of this certificate with these facts."""
        def find():
            return [f for f in self.decisions_since(after_id, "data")
                    if f.get("cert_serial") == serial and f.get("admit") is False
                    and all(f.get(k) == v for k, v in facts.items())]
        wait_until(find, what=f"a recorded data denial of certificate {serial} with {facts}: "
                              f"{self.decisions_since(after_id)}")


class ClientTestCase(MtlsTestCase):
    """Tests that run secd-test-client (libsecclient) as various uids and binaries."""

    def setUp(self):
        super().setUp()
        self.require_client()
        bindir = self.path("bin")
        os.mkdir(bindir, 0o755)
        # A copy nobody can execute; same bytes, same hash.
        self.client = os.path.join(bindir, "secd-test-client")
        shutil.copy(mt.TEST_CLIENT, self.client)
        os.chmod(self.client, 0o755)
        self.client_sha = sha256_file(self.client)

    def assert_serving(self, daemon=None, rules=None):
        """Control answers and the allowed client enrolls and gets its PONG."""
        SecdTestCase.assert_serving(self, daemon, rules)
        code, steps, info = self.run_client("ping")
        self.assertEqual(code, 0, f"secd stopped serving the allowed client\n{info}")

    def client_args(self, *args):
        return ["--enroll-socket", self.d.enroll, "--endpoint", self.d.data, "--timeout",
                str(int(TIMEOUT * 1000 / 2)), *args]

    def run_client(self, *args, exe=None, uid=None, pass_fds=(), stdin=None, extra_groups=()):
        code, steps, out, err = mt.run_client(exe or self.client, self.client_args(*args), uid=uid,
                                              pass_fds=pass_fds, stdin=stdin, extra_groups=extra_groups)
        report = sanitizer_report(err)
        if report:
            self.fail(f"secd-test-client: sanitizer report:\n{report}")
        return code, steps, f"exit {code}\n--- stdout:\n{out}--- stderr:\n{err}"

    def dump_creds(self, exe=None, uid=None):
        """Enroll with the client and capture its credential bundle (key material: memory only)."""
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            code, steps, info = self.run_client("--out-fd", str(b.fileno()), "dump-creds", exe=exe,
                                                uid=uid, pass_fds=(b.fileno(),))
            b.close()
            self.assertEqual(code, 0, info)
            a.settimeout(TIMEOUT)
            data = b""
            d = Deadline()
            while not d.expired():
                chunk = a.recv(65536)
                if not chunk:
                    break
                data += chunk
        finally:
            a.close()
            b.close()
        self.assertIn(b"client_key", data, "no credential bundle came out of dump-creds")
        return data

    def run_with_creds(self, bundle, *args, exe=None, uid=None):
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            a.sendall(bundle)
            a.shutdown(socket.SHUT_WR)
            return self.run_client("--creds-fd", str(b.fileno()), *args, exe=exe, uid=uid,
                                   pass_fds=(b.fileno(),))
        finally:
            a.close()
            b.close()

    def bundle_pems(self, bundle):
        text = bundle.decode()
        doc = json.loads(text[text.index("{"):text.rindex("}") + 1])
        return doc["ca_cert"], doc["client_cert"], doc["client_key"]

    def assert_client_refused(self, steps, info, at=("connect", "ping")):
        failed = [s for s in steps.values() if s.get("ok") is False]
        self.assertTrue(failed, f"the client was not refused\n{info}")
        self.assertIn(failed[0]["step"], at, f"refused at the wrong step\n{info}")
        self.assertNotEqual(steps.get("ping", {}).get("ok"), True, info)


class ClientAdmissionTest(ClientTestCase):

    def test_allowed_uid_and_binary_enrolls_and_pings(self):
        self.allow_only(self.client_sha)
        code, steps, info = self.run_client("ping")
        self.assertEqual(code, 0, info)
        for step in ("enroll", "connect", "ping"):
            self.assertIs(steps[step]["ok"], True, info)
        # The certificate names the uid and the executable's hash.
        bundle = self.dump_creds()
        _, cert, _ = self.bundle_pems(bundle)
        self.assertEqual(mt.cert_uris(cert), [mt.local_uri(0, self.client_sha)])
        self.assertTrue(self.d.alive())

    def test_same_binary_under_another_uid_is_refused_at_enrollment(self):
        self.allow_only(self.client_sha)
        after = self.last_audit_id()
        code, steps, info = self.run_client("ping", uid=NOBODY_UID)
        self.assertNotEqual(code, 0, info)
        self.assertIs(steps["enroll"]["ok"], False, info)
        self.assertEqual(steps["enroll"]["error"], "EACCES", info)
        self.assertNotIn("connect", steps, info)
        self.wait_decision(after, "enroll", uid=NOBODY_UID, sha256=self.client_sha, verdict="deny", admit=False)
        # Root with the very same file is let in: the uid made the difference.
        code, steps, info = self.run_client("ping")
        self.assertEqual(code, 0, info)

    def test_supplementary_group_rules_decide_on_the_data_endpoint(self):
        # secd reads the peer's supplementary groups only while a rule selects by gid:
        # with one, a group the client has only as a supplementary one must count.
        self.allow_only(self.client_sha)
        member, banned = 4242, 4243
        self.add_rule("allow", "--gid", str(member), "--sha256", self.client_sha)
        code, steps, info = self.run_client("ping", uid=NOBODY_UID, extra_groups=[member])
        self.assertEqual(code, 0, info)
        self.assertIs(steps["ping"]["ok"], True, info)
        # Without the group, nobody is refused (at enrollment, by the same policy).
        code, steps, info = self.run_client("ping", uid=NOBODY_UID)
        self.assertIs(steps["enroll"]["ok"], False, info)
        # A deny rule for a supplementary group on the data endpoint only: enrollment
        # still succeeds, the data endpoint refuses.
        self.add_rule("deny", "--gid", str(banned), "--endpoint", "data")
        after = self.last_audit_id()
        code, steps, info = self.run_client("ping", uid=NOBODY_UID, extra_groups=[member, banned])
        self.assertNotEqual(code, 0, info)
        self.assertIs(steps["enroll"]["ok"], True, info)
        self.assert_client_refused(steps, info)
        self.wait_decision(after, "data", uid=NOBODY_UID, verdict="deny", admit=False)
        # The member without the banned group is still served.
        code, steps, info = self.run_client("ping", uid=NOBODY_UID, extra_groups=[member])
        self.assertEqual(code, 0, info)

    def test_modified_copy_of_the_binary_is_refused(self):
        self.allow_only(self.client_sha)
        clone = mt.copy_with_flipped_marker(self.client, self.path("bin", "modified-client"))
        self.assertNotEqual(sha256_file(clone), self.client_sha)
        # The copy still runs (and shows the changed byte).
        cp = subprocess.run([clone, "marker"], capture_output=True, timeout=TIMEOUT, env=base_env())
        self.assertEqual(cp.returncode, 0, cp)
        self.assertEqual(cp.stdout.strip(), mt.TEST_CLIENT_MARKER.replace(b"0", b"1", 1))
        after = self.last_audit_id()
        code, steps, info = self.run_client("ping", exe=clone)
        self.assertNotEqual(code, 0, info)
        self.assertIs(steps["enroll"]["ok"], False, info)
        self.assertEqual(steps["enroll"]["error"], "EACCES", info)
        self.wait_decision(after, "enroll", uid=0, exe=clone, sha256=sha256_file(clone), verdict="deny",
                           admit=False)

    def test_stolen_certificate_used_by_another_uid_is_refused(self):
        # nobody with this binary is allowed too: only the certificate's uid
        # (root's) can make the difference at the data endpoint.
        self.allow_only(self.client_sha)
        self.add_rule("allow", "--uid", str(NOBODY_UID), "--sha256", self.client_sha)
        bundle = self.dump_creds()
        serial = mt.serial_hex(self.bundle_pems(bundle)[1])
        after = self.last_audit_id()
        code, steps, info = self.run_with_creds(bundle, "ping", uid=NOBODY_UID)
        self.assert_client_refused(steps, info)
        self.assertTrue(steps["creds-recv"]["ok"], info)
        self.assert_data_refusal_recorded(after, serial, uid=NOBODY_UID,
                                          exe=self.client)
        # Control: nobody's own enrollment works, and root's stolen bundle
        # still works for root.
        code, steps, info = self.run_client("ping", uid=NOBODY_UID)
        self.assertEqual(code, 0, info)
        code, steps, info = self.run_with_creds(bundle, "ping")
        self.assertEqual(code, 0, info)
        self.assert_serving()

    def test_stolen_certificate_used_by_python_ssl_as_another_uid_is_refused(self):
        self.allow_only(self.client_sha)
        self.add_rule("allow", "--uid", str(NOBODY_UID))
        ca, cert, key = self.bundle_pems(self.dump_creds())
        d = self.secret_dir()
        os.chown(d, NOBODY_UID, NOBODY_GID)
        paths = [mt.write_secret(d, n, v) for n, v in (("ca", ca), ("cert", cert), ("key", key))]
        for p in paths:
            os.chown(p, NOBODY_UID, NOBODY_GID)

        def attempt(data, ca, cert, key):
            o, _, _ = mt.tls_ping(data, mt.tls_context(ca, cert, key))
            return repr(o), o.refused(), o.is_pong(7, b"secd-it")

        text, refused, pong = run_as(NOBODY_UID, attempt, self.d.data, *paths)
        self.assertFalse(pong, text)
        self.assertTrue(refused, text)

    def test_stolen_certificate_used_by_another_binary_is_refused(self):
        self.allow_only(self.client_sha)
        bundle = self.dump_creds()
        serial = mt.serial_hex(self.bundle_pems(bundle)[1])
        clone = mt.copy_with_flipped_marker(self.client, self.path("bin", "modified-client"))
        after = self.last_audit_id()
        code, steps, info = self.run_with_creds(bundle, "ping", exe=clone)
        self.assert_client_refused(steps, info)
        self.assert_data_refusal_recorded(after, serial, uid=0, sha256=sha256_file(clone))
        # Even when the policy admits the other binary too, the certificate
        # names the executable it was issued to.
        self.add_rule("allow", "--uid", "0", "--sha256", sha256_file(clone))
        code, steps, info = self.run_with_creds(bundle, "ping", exe=clone)
        self.assert_client_refused(steps, info)
        code, steps, info = self.run_client("ping", exe=clone)
        self.assertEqual(code, 0, f"the clone, now allowed, enrolls for itself\n{info}")
        # Python (another binary, root, allowed too) presenting the stolen certificate.
        self.add_rule("allow", "--uid", "0", "--sha256", sha256_file(mt.PYTHON_EXE))
        ca, cert, key = self.bundle_pems(bundle)
        d = self.secret_dir()
        o, _, _ = mt.tls_ping(self.d.data, mt.tls_context(mt.write_secret(d, "ca", ca),
                                                          mt.write_secret(d, "cert", cert),
                                                          mt.write_secret(d, "key", key)))
        self.assert_refused(o, msg="python3 with the client's certificate")
        # The rightful binary still works with it.
        code, steps, info = self.run_with_creds(bundle, "ping")
        self.assertEqual(code, 0, info)

    def test_permissive_mode_admits_and_logs(self):
        self.allow_only(self.client_sha)
        clone = mt.copy_with_flipped_marker(self.client, self.path("bin", "modified-client"))
        code, steps, info = self.run_client("ping", exe=clone)
        self.assertNotEqual(code, 0, info)
        before = self.secctl_json("status")["decisions"]["permissive"]
        after_id = max((e["id"] for e in self.audit_entries()), default=0)
        self.secctl("policy", "mode", "permissive", expect=EXIT_SUCCESS)
        code, steps, info = self.run_client("ping", exe=clone)
        self.assertEqual(code, 0, info)
        self.assertGreaterEqual(self.secctl_json("status")["decisions"]["permissive"], before + 2,
                                "enroll and data admissions are counted as permissive")
        clone_sha = sha256_file(clone)
        self.wait_decision(after_id, "enroll", sha256=clone_sha, verdict="deny", admit=True)
        self.wait_decision(after_id, "data", sha256=clone_sha, verdict="deny", admit=True)
        # Back to enforce: refused again.
        self.secctl("policy", "mode", "enforce", expect=EXIT_SUCCESS)
        code, steps, info = self.run_client("ping", exe=clone)
        self.assertNotEqual(code, 0, info)

    @unittest.skipUnless(mt.revocation_closes_sessions(), mt.REVOCATION_CLOSE_MISSING)
    def test_revoked_certificate_closes_the_live_session_and_is_refused(self):
        self.require_secctl_cert()
        self.allow_only(self.client_sha)
        bundle = self.dump_creds()
        _, cert, _ = self.bundle_pems(bundle)
        serial = mt.serial_hex(cert)
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        a.sendall(bundle)
        a.shutdown(socket.SHUT_WR)
        p = subprocess.Popen([self.client, *self.client_args("--creds-fd", str(b.fileno()), "hold")],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             pass_fds=(b.fileno(),), env=base_env(), cwd="/",
                             preexec_fn=die_with_parent)
        a.close()
        b.close()
        self.addCleanup(lambda: p.poll() is None and p.kill())
        buf = bytearray()
        d = Deadline()
        while True:
            line = read_line(p.stdout, d, buf)
            self.assertTrue(line, f"hold never became ready: {p.stderr.read1(4000) if line == b'' else ''}")
            if b'"ready"' in line:
                break
        self.secctl("cert", "revoke", serial, expect=EXIT_SUCCESS)
        # The live session is closed: the next PING fails, within bounds.
        p.stdin.write(b"ping\n")
        p.stdin.flush()
        line = read_line(p.stdout, Deadline(), buf)
        self.assertIsNotNone(line, "no answer to the PING after revocation")
        self.assertIn(b'"ok":false', line, f"the revoked session still answers: {line!r}")
        p.stdin.close()
        p.wait(TIMEOUT)
        p.stdout.close()
        p.stderr.close()
        # A new full handshake with the revoked certificate is refused.
        code, steps, info = self.run_with_creds(bundle, "ping")
        self.assert_client_refused(steps, info)
        self.assert_serving()


class ColdHashTest(ClientTestCase):
    """Hashing a large cold executable runs off the event loop (the hash pool)."""

    # The enroll request waits for its hash: give it time on slow machines.
    secd_extra_args = ("--hash-max-size", "4G", "--request-timeout", "100s")
    BIG = 2 << 30   # sparse: reading is cheap, SHA-256 of 2 GiB is not (seconds)

    def test_large_cold_binary_does_not_stall_other_clients(self):
        big = self.path("bin", "big-client")
        shutil.copy(self.client, big)
        with open(big, "r+b") as f:
            f.truncate(self.BIG)
        os.chmod(big, 0o755)
        self.add_rule("allow", "--uid", "0", "--path", big)
        self.add_rule("allow", "--uid", "0", "--sha256", sha256_file(mt.PYTHON_EXE))
        ctx = self.python_ctx(self._creds_cache())
        o, _, _ = mt.tls_ping(self.d.data, ctx)   # python3's hash is warm from here on
        self.assert_pong(o)

        p = subprocess.Popen([big, *self.client_args("--timeout", "100000", "enroll")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=base_env(), cwd="/",
                             preexec_fn=die_with_parent)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        started = time.monotonic()
        latencies = []
        d = Deadline(TIMEOUT * 3)
        while p.poll() is None and not d.expired():
            t = time.monotonic()
            o, _, _ = mt.tls_ping(self.d.data, ctx)
            latencies.append(time.monotonic() - t)
            self.assert_pong(o, msg="while a large executable is being hashed")
            time.sleep(0.02)
        out, err = p.communicate(timeout=TIMEOUT)
        hashing = time.monotonic() - started
        steps = mt.parse_client_output(out.decode())
        self.assertIs(steps.get("enroll", {}).get("ok"), True, f"{out!r} {err!r}")
        shown = [round(x, 3) for x in latencies]
        self.assertGreaterEqual(len(latencies), 3,
                                f"the 2 GiB hash finished before 3 pings: inconclusive ({shown})")
        # Hashed on the loop, one ping would wait about as long as the whole
        # enrollment; off the loop, none waits more than a fraction of it.
        self.assertLess(max(latencies), max(hashing / 4, 0.2),
                        f"handshake+PING latencies {shown} while enrolling took {hashing:.2f} s")


class HashBudgetTest(ClientTestCase):
    """Each uid may make secd hash only so many bytes of cold executables (hash_uid_rate/burst)."""

    # 1 byte/s refills nothing during the test; 8M at once.
    BURST = 8 << 20
    secd_extra_args = ("--hash-uid-rate", "1", "--hash-uid-burst", str(BURST))

    def padded_copy(self, name, size):
        p = self.path("bin", name)
        shutil.copy(self.client, p)
        self.assertLessEqual(os.path.getsize(p), size)
        with open(p, "r+b") as f:
            f.truncate(size)    # sparse zeros after the ELF: it still runs
        os.chmod(p, 0o755)
        return p

    def test_budget_used_up_refuses_cold_binaries_only(self):
        # nobody: a uid that has had nothing hashed yet, so its budget is full.
        self.add_rule("allow", "--uid", str(NOBODY_UID))
        size = self.BURST - (64 << 10)
        a, b = self.padded_copy("client-a", size), self.padded_copy("client-b", size)
        code, steps, info = self.run_client("ping", exe=a, uid=NOBODY_UID)     # fits: 64K left
        self.assertEqual(code, 0, info)
        after = self.last_audit_id()
        code, steps, info = self.run_client("ping", exe=b, uid=NOBODY_UID)     # does not fit: refused
        self.assertNotEqual(code, 0, info)
        self.assertIs(steps["enroll"]["ok"], False, info)
        self.assertEqual(steps["enroll"]["error"], "EACCES", info)
        found = self.wait_decision(after, "enroll", uid=NOBODY_UID, exe=b, verdict="deny", admit=False)
        self.assertIn("hashing budget", found[0].get("reason", ""), found)
        pool = self.secctl_json("status", daemon=self.d)["hash_pool"]
        self.assertEqual(pool["rejected_budget"], 1, pool)
        self.assertIn("per-uid budget 1", self.secctl("status", daemon=self.d).stdout)
        # Warm executables cost nothing: a again (its enrollment and its data
        # connection) is served from the cache.
        code, steps, info = self.run_client("ping", exe=a, uid=NOBODY_UID)
        self.assertEqual(code, 0, info)
        pool = self.secctl_json("status", daemon=self.d)["hash_pool"]
        self.assertEqual(pool["rejected_budget"], 1, pool)
        # (Each uid has a bucket of its own: tests/unit/test-hash-pool.c.)


class CraftedCertificateTest(MtlsTestCase):
    """Certificates made here: one valid control, then one property changed at a time."""

    def setUp(self):
        super().setUp()
        self.require_tls()
        self.ca_cert, self.ca_key = self.ca_material()
        self.kind = mt.key_kind(self.ca_key.public_key())
        self.ca_path = self.ca_file()

    def attempt(self, cert, key):
        d = self.secret_dir()
        ctx = mt.tls_context(self.ca_path, mt.write_secret(d, "cert.pem", mt.cert_pem(cert)),
                             mt.write_secret(d, "key.pem", mt.key_pem(key)))
        o, _, _ = mt.tls_ping(self.d.data, ctx)
        return o

    def test_control_certificate_is_admitted(self):
        o = self.attempt(*self.crafted())
        self.assert_pong(o, msg="a certificate like an enrolled one, made with the CA key")

    def test_only_an_admitted_client_gets_a_session_ticket(self):
        """docs/protocol.md: one ticket, sent after admission; a refused client gets none."""
        d = self.secret_dir()
        cert, key = self.crafted()
        ctx = mt.tls_context(self.ca_path, mt.write_secret(d, "ok.pem", mt.cert_pem(cert)),
                             mt.write_secret(d, "ok.key", mt.key_pem(key)))
        o, conn, _ = mt.tls_ping(self.d.data, ctx, keep=True)
        self.assert_pong(o)
        self.assertTrue(conn.sock.session.has_ticket, "an admitted client got no session ticket")
        conn.close()

        cert, key = self.crafted(uri=mt.local_uri(NOBODY_UID, sha256_file(mt.PYTHON_EXE)))
        ctx = mt.tls_context(self.ca_path, mt.write_secret(d, "no.pem", mt.cert_pem(cert)),
                             mt.write_secret(d, "no.key", mt.key_pem(key)))
        o, conn, _ = mt.tls_ping(self.d.data, ctx, keep=True)
        self.assert_not_admitted(o, "certificate naming uid 65534 presented by root")
        # Any ticket would have come before the ERROR frame that was just read.
        session = conn.sock.session
        conn.close()
        self.assertFalse(session is not None and session.has_ticket, "a refused client got a session ticket")

    def test_expired_certificate_is_refused(self):
        now = datetime.datetime.now(datetime.timezone.utc)
        o = self.attempt(*self.crafted(not_before=now - datetime.timedelta(hours=2),
                                       not_after=now - datetime.timedelta(hours=1)))
        self.assert_refused(o, msg="expired certificate")
        self.assert_serving()

    def test_not_yet_valid_certificate_is_refused(self):
        now = datetime.datetime.now(datetime.timezone.utc)
        o = self.attempt(*self.crafted(not_before=now + datetime.timedelta(hours=1),
                                       not_after=now + datetime.timedelta(hours=2)))
        self.assert_refused(o, msg="not yet valid certificate")

    def test_foreign_ca_certificate_is_refused(self):
        # Same subject as secd's CA, another key.
        fake_ca, fake_key = mt.make_ca(self.ca_cert.subject, self.kind)
        o = self.attempt(*self.crafted(issuer_cert=fake_ca, issuer_key=fake_key))
        self.assert_refused(o, msg="certificate from a foreign CA")
        self.assert_serving()

    def test_server_purpose_certificate_is_refused(self):
        o = self.attempt(*self.crafted(eku=("server",)))
        self.assert_refused(o, msg="certificate with the TLS server purpose only")

    def test_certificate_for_another_uid_is_refused(self):
        o = self.attempt(*self.crafted(uri=mt.local_uri(NOBODY_UID, sha256_file(mt.PYTHON_EXE))))
        self.assert_not_admitted(o, "certificate naming uid 65534 presented by root")

    def test_certificate_without_secd_identity_is_refused(self):
        o = self.attempt(*self.crafted(uri="https://example.invalid/"))
        self.assert_not_admitted(o, "certificate without a secd URI SAN")

    def test_missing_client_certificate_is_refused(self):
        o, _, _ = mt.tls_ping(self.d.data, mt.tls_context(self.ca_path))
        self.assert_refused(o, msg="no client certificate")
        self.assert_serving()


class RevocationTest(MtlsTestCase):

    def setUp(self):
        super().setUp()
        self.require_tls()
        self.require_secctl_cert()
        self.creds = self.python_creds()
        with open(self.creds[1]) as f:
            self.serial = mt.serial_hex(f.read())
        self.ctx = self.python_ctx(self.creds)

    def test_revoked_certificate_is_refused_on_full_and_resumed_handshakes(self):
        o, conn, _ = mt.tls_ping(self.d.data, self.ctx, keep=True)
        self.assert_pong(o)
        session = conn.sock.session
        conn.close()
        self.assertIsNotNone(session)
        # Control: the session resumes before the revocation.
        o, conn, reused = mt.tls_ping(self.d.data, self.ctx, session=session, keep=True)
        self.assert_pong(o)
        self.assertTrue(reused, "secd did not resume the TLS session (session tickets)")
        session = conn.sock.session or session
        conn.close()

        self.secctl("cert", "revoke", self.serial, expect=EXIT_SUCCESS)
        o, _, reused = mt.tls_ping(self.d.data, self.ctx, session=session)
        self.assert_refused(o, codes=(mt.ERR_CERT_REVOKED, mt.ERR_NOT_ADMITTED),
                            msg=f"resumed handshake (reused={reused})")
        o, _, _ = mt.tls_ping(self.d.data, self.ctx)
        self.assert_refused(o, codes=(mt.ERR_CERT_REVOKED, mt.ERR_NOT_ADMITTED), msg="full handshake")
        # Others are still served.
        self.assert_serving()

    @unittest.skipUnless(mt.revocation_closes_sessions(), mt.REVOCATION_CLOSE_MISSING)
    def test_revocation_closes_the_live_session(self):
        live, failure = mt.tls_connect(self.d.data, self.ctx)
        self.assertIsNone(failure)
        self.assert_pong(live.ping(7, b"secd-it"))
        self.secctl("cert", "revoke", self.serial, expect=EXIT_SUCCESS)
        # Closed by secd, without anything sent by us, within bounds.
        self.assertTrue(live.closed_by_peer(), "the live session of a revoked certificate stays open")
        self.assertEqual([(o.type, o.error_code) for o in live.seen], [(mt.ERROR, mt.ERR_CERT_REVOKED)])
        live.close()
        self.assert_serving()


class RobustnessTest(MtlsTestCase):
    """Garbage, stalls, oversize lengths and truncated frames: handled, secd keeps serving."""

    HANDSHAKE_TIMEOUT = 2
    IDLE_TIMEOUT = 5

    def setUp(self):
        self.has_handshake_timeout = mt.secd_help_has(SECD, "handshake-timeout")
        self.has_idle_timeout = mt.secd_help_has(SECD, "data-idle-timeout")
        self.has_payload_max = mt.secd_help_has(SECD, "frame-payload-max")
        args = []
        if self.has_handshake_timeout:
            args += ["--handshake-timeout", f"{self.HANDSHAKE_TIMEOUT}s"]
        if self.has_idle_timeout:
            args += ["--data-idle-timeout", f"{self.IDLE_TIMEOUT}s"]
        self.secd_extra_args = tuple(args)
        super().setUp()
        self.require_tls()
        self.ctx = self.python_ctx(self._creds_cache())

    def session(self):
        conn, failure = mt.tls_connect(self.d.data, self.ctx)
        self.assertIsNone(failure, failure)
        self.addCleanup(conn.close)
        self.assert_pong(conn.ping(7, b"secd-it"))
        return conn

    def raw(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(TIMEOUT)
        s.connect(self.d.data)
        self.addCleanup(s.close)
        return s

    def test_garbage_instead_of_tls(self):
        # Random bytes after a 0x00: a first byte >= 0x80 reads as an SSLv2
        # record header announcing more bytes, a stall (handshake_timeout's test).
        for garbage in (b"GET / HTTP/1.1\r\nHost: secd\r\n\r\n", b"\0" + os.urandom(4095),
                        mt.frame(mt.PING, 1, b"plain"), b"\x16\x03\x01\xff\xff" + b"\0" * 64):
            s = self.raw()
            s.sendall(garbage)
            conn = mt.FrameConn(s)
            self.assertTrue(conn.closed_by_peer(), f"secd kept a connection that sent {garbage[:16]!r}")
            s.close()
            self.assert_serving()

    def test_many_garbage_connections_at_once(self):
        socks = []
        for i in range(64):
            s = self.raw()
            socks.append(s)
        for s in socks:
            s.sendall(os.urandom(512))
        for i, s in enumerate(socks):
            self.assertTrue(mt.FrameConn(s).closed_by_peer(), f"garbage connection {i} stays open")
            s.close()
        self.assert_serving()

    def test_stalled_handshake_times_out_and_others_are_served(self):
        if not self.has_handshake_timeout:
            self.skipTest("secd has no handshake_timeout option yet")
        start = time.monotonic()
        stalled = self.raw()
        half = self.raw()
        # Half a ClientHello record header.
        half.sendall(b"\x16\x03\x01\x01")
        # Meanwhile others are served.
        self.assert_serving()
        for s in (stalled, half):
            conn = mt.FrameConn(s)
            self.assertTrue(conn.closed_by_peer(timeout=self.HANDSHAKE_TIMEOUT + TIMEOUT),
                            "secd never timed out a stalled handshake")
        self.assertGreaterEqual(time.monotonic() - start, self.HANDSHAKE_TIMEOUT - 0.5,
                                "closed before handshake_timeout")
        self.assert_serving()

    def test_idle_session_times_out_and_ping_keeps_it_alive(self):
        if not self.has_idle_timeout:
            self.skipTest("secd has no data_idle_timeout option yet")
        idle = self.session()
        busy = self.session()
        start = time.monotonic()
        # PINGs more often than the idle timeout keep one session alive.
        rid = 100
        while time.monotonic() - start < self.IDLE_TIMEOUT * 1.6:
            rid += 1
            self.assert_pong(busy.ping(rid, b"keepalive"), rid, b"keepalive")
            time.sleep(self.IDLE_TIMEOUT / 4)
        self.assertTrue(idle.closed_by_peer(timeout=TIMEOUT), "the idle session was not closed")
        self.assertEqual([o.error_code for o in idle.seen], [mt.ERR_IDLE_TIMEOUT], idle.seen)
        self.assert_pong(busy.ping(7, b"secd-it"))

    def test_configured_payload_max(self):
        if not self.has_payload_max:
            self.skipTest("secd has no frame_payload_max option yet")
        d2 = self.secd_dev(name="secd-small", extra_args=("--frame-payload-max", "1024"))
        for p in (os.path.dirname(d2.runtime_dir), d2.runtime_dir):
            os.chmod(p, 0o755)
        with open(os.path.join(d2.state_dir, "ca.crt"), "rb") as f:
            ca2 = x509.load_pem_x509_certificate(f.read())
        ca2_key = mt.find_private_key_for(d2.state_dir, ca2.public_key())
        key = mt.make_key(mt.key_kind(ca2_key.public_key()))
        cert = mt.make_client_cert(ca2, ca2_key, key.public_key(),
                                   mt.local_uri(os.getuid(), sha256_file(mt.PYTHON_EXE)))
        sd = self.secret_dir()
        ctx = mt.tls_context(mt.write_secret(sd, "ca", mt.cert_pem(ca2)),
                             mt.write_secret(sd, "cert", mt.cert_pem(cert)),
                             mt.write_secret(sd, "key", mt.key_pem(key)))
        conn, failure = mt.tls_connect(d2.data, ctx)
        self.assertIsNone(failure, failure)
        self.assert_pong(conn.ping(1, b"m" * 1024), 1, b"m" * 1024)
        conn.send(mt.frame(mt.PING, 2, length=1025))
        self.assertTrue(conn.closed_by_peer(), "still open after 1025 bytes announced")
        self.assertTrue(conn.seen and conn.seen[0].error_code == mt.ERR_TOO_LARGE, conn.seen)
        conn.close()
        self.assertTrue(d2.alive())
        d2.stop()

    def test_sigterm_sends_shutting_down(self):
        conn = self.session()
        self.d.stop()
        self.assertTrue(conn.closed_by_peer(), "a session outlived secd")
        self.assertEqual([o.error_code for o in conn.seen], [mt.ERR_SHUTTING_DOWN], conn.seen)

    def test_reload_keeps_sessions(self):
        conn = self.session()
        self.d.reload()
        self.assert_pong(conn.ping(31, b"after reload"), 31, b"after reload")
        self.assert_serving()
        self.assert_pong(conn.ping(32, b"still"), 32, b"still")

    def test_unknown_type_gets_error_and_the_connection_lives(self):
        conn = self.session()
        o = conn.request(0x7E, 9, b"x")
        self.assertEqual((o.kind, o.type, o.request_id, o.error_code),
                         ("frame", mt.ERROR, 9, mt.ERR_UNKNOWN_TYPE), o)
        self.assert_pong(conn.ping(10, b"after"), 10, b"after")

    def test_ping_payloads(self):
        conn = self.session()
        for rid, payload in ((0, b""), (0xFFFFFFFF, b"\0\xff" * 8), (3, os.urandom(65536))):
            self.assert_pong(conn.ping(rid, payload), rid, payload)
        # Pipelined: two requests in one write, two replies with their ids.
        conn.send(mt.frame(mt.PING, 21, b"a") + mt.frame(mt.PING, 22, b"b"))
        got = {(o.request_id, o.payload) for o in (conn.read_frame(), conn.read_frame())}
        self.assertEqual(got, {(21, b"a"), (22, b"b")})

    def test_bad_magic_and_version_get_error_and_close(self):
        for bad in (mt.frame(mt.PING, 5, b"x", magic=b"XD"), mt.frame(mt.PING, 5, b"x", version=2)):
            conn = self.session()
            conn.send(bad)
            self.assertTrue(conn.closed_by_peer(), f"still open after {bad!r}")
            self.assertTrue(conn.seen and conn.seen[0].error_code == mt.ERR_BAD_FRAME
                            and conn.seen[0].request_id == 0,
                            f"no ERROR BAD_FRAME (request id 0) before the close: {conn.seen}")
        self.assert_serving()

    def test_oversize_length_gets_error_and_close(self):
        for length in (mt.PAYLOAD_MAX_DEFAULT + 1, mt.PAYLOAD_MAX_HARD + 1, 0xFFFFFFFF):
            conn = self.session()
            conn.send(mt.frame(mt.PING, 11, length=length))
            self.assertTrue(conn.closed_by_peer(), f"still open after a length of {length}")
            self.assertTrue(conn.seen and conn.seen[0].error_code == mt.ERR_TOO_LARGE
                            and conn.seen[0].request_id == 11,
                            f"no ERROR TOO_LARGE (request id 11) for length {length}: {conn.seen}")
        # Exactly the maximum is fine.
        conn = self.session()
        payload = os.urandom(mt.PAYLOAD_MAX_DEFAULT)
        self.assert_pong(conn.ping(12, payload), 12, payload)
        self.assert_serving()

    def test_truncated_frame(self):
        for cut in (5, mt.FRAME_HEADER, mt.FRAME_HEADER + 10):
            conn = self.session()
            conn.send(mt.frame(mt.PING, 13, b"y" * 100)[:cut])
            # Orderly TLS close, then the socket: secd must not answer a
            # partial frame and must drop the connection.
            try:
                s = conn.sock.unwrap()
                s.shutdown(socket.SHUT_WR)
                conn = mt.FrameConn(s)
            except (ssl.SSLError, OSError):
                pass
            self.assertTrue(conn.closed_by_peer(), f"truncated after {cut} bytes: still open")
            for o in conn.seen:
                self.assertNotEqual(o.type, mt.PONG, f"a PONG for a truncated frame: {o}")
            conn.close()
        # A truncated frame followed by silence: secd keeps serving others
        # and drops the half-sent frame's session at the idle timeout.
        conn = self.session()
        conn.send(mt.frame(mt.PING, 14, b"z" * 100)[:20])
        self.assert_serving()
        if self.has_idle_timeout:
            self.assertTrue(conn.closed_by_peer(timeout=self.IDLE_TIMEOUT + TIMEOUT),
                            "a session stuck in a truncated frame is never closed")
            self.assertEqual([o.error_code for o in conn.seen], [mt.ERR_IDLE_TIMEOUT], conn.seen)
        self.assertTrue(self.d.alive())


if __name__ == "__main__":
    unittest.main()
