#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Admission on accept (the enroll endpoint), as the audit trail records it.

The data endpoint admits only after an mTLS handshake (test_data_endpoint.py,
test_mtls.py); the facts and the decision recorded are the same.

Until mTLS exists secd judges every connecting process, records the
decision and closes the connection. The tests connect as real processes
(this interpreter as root, a forked child as nobody, a modified copy of the
interpreter) and compare the recorded facts with what the kernel and
sha256sum say about them.
"""

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import unittest

from secdtest import (EXIT_SUCCESS, NOBODY_UID, SecdTestCase, TIMEOUT, base_env, run_as,
                      sha256sum, wait_until)

PYTHON_EXE = os.path.realpath("/usr/bin/python3")
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
PTRACE_ATTACH = 16
PTRACE_DETACH = 17


# The enroll endpoint judges the peer per Enroll.Issue call: a call with a
# CSR that is not one gets NotAdmitted (denied) or InvalidRequest (admitted).
ENROLL_PROBE = b'{"method":"io.secd.Enroll.Issue","parameters":{"csr":"not a csr"}}\0'
ENROLL_ANSWERS = (b'"io.secd.Enroll.NotAdmitted"', b'"io.secd.Enroll.InvalidRequest"')


def enroll_probe(s):
    s.sendall(ENROLL_PROBE)
    buf = b""
    while not buf.endswith(b"\0"):
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    if not any(a in buf for a in ENROLL_ANSWERS):
        raise AssertionError(f"unexpected enroll answer {buf!r}")


def connect_and_wait(path):
    """Connect, wait until secd hangs up (enroll: until it answers a call); return our pid (runs in any process)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(path)
    if path.endswith("enroll.sock"):
        enroll_probe(s)
        s.close()
        return os.getpid()
    try:
        data = s.recv(1)
    except ConnectionResetError:
        data = b""
    s.close()
    if data:
        raise AssertionError(f"secd sent {data!r} on an admission-only endpoint")
    return os.getpid()


CONNECT_CODE = """
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(30)
s.connect(sys.argv[1])
if sys.argv[1].endswith("enroll.sock"):
    s.sendall(b'{"method":"io.secd.Enroll.Issue","parameters":{"csr":"not a csr"}}\\0')
    buf = b""
    while not buf.endswith(b"\\0"):
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    assert b"NotAdmitted" in buf or b"InvalidRequest" in buf, buf
    print(os.getpid())
    sys.exit(0)
try:
    data = s.recv(1)
except ConnectionResetError:
    data = b""
assert data == b"", data
print(os.getpid())
"""


def sha256sum_of(path):
    return sha256sum(path).split()[0].decode()


class AdmissionTest(SecdTestCase):

    def setUp(self):
        super().setUp()
        self.d = self.secd_dev()
        # Other uids reach the data and enroll sockets (0666) through 0755 directories.
        for p in (os.path.dirname(self.d.runtime_dir), self.d.runtime_dir):
            os.chmod(p, 0o755)
        self.python_sha = sha256sum_of(PYTHON_EXE)

    def tearDown(self):
        if self.d.alive():
            self.d.stop()
        super().tearDown()

    def audit_entries(self):
        doc = self.secctl_json("audit", "--limit", "1000")
        return doc["entries"] if isinstance(doc, dict) else doc

    def last_audit_id(self):
        return max((e["id"] for e in self.audit_entries()), default=0)

    def decision_for(self, pid, after):
        """The audit entry of the admission decision about pid, the only connection since entry id after."""
        def find():
            return [e for e in self.audit_entries() if e["id"] > after and e["kind"] == "decision"]
        hits = wait_until(find, what=f"an audit decision about pid {pid}")
        self.assertEqual(len(hits), 1, f"one connection, one decision: {hits}")
        self.assertEqual((hits[0].get("fields") or {}).get("pid"), pid,
                         f"the decision does not carry the peer's attested pid: {hits[0]}")
        return hits[0]

    def connect_as_root(self, endpoint="enroll"):
        path = self.d.enroll if endpoint == "data" else self.d.enroll
        after = self.last_audit_id()
        return self.decision_for(connect_and_wait(path), after)

    def connect_as_nobody(self, endpoint="enroll"):
        path = self.d.enroll if endpoint == "data" else self.d.enroll
        after = self.last_audit_id()
        return self.decision_for(run_as(NOBODY_UID, connect_and_wait, path), after)

    def generation(self):
        return self.secctl_json("policy", "list")["generation"]

    def dev_rule(self):
        rules = [r for r in self.rules() if r.get("uid") == os.getuid() and r["action"] == "allow"]
        self.assertEqual(len(rules), 1, self.rules())
        return rules[0]["id"]

    def test_allowed_connection_is_recorded_with_its_facts(self):
        e = self.connect_as_root()
        f = e["fields"]
        self.assertEqual(f["verdict"], "allow", e)
        self.assertIs(f["admit"], True)
        self.assertEqual(f["uid"], os.getuid())
        self.assertEqual(f["gid"], os.getgid())
        self.assertEqual(f["exe"], PYTHON_EXE)
        self.assertEqual(f["sha256"], self.python_sha, "the hash secd computed is not sha256sum's")
        self.assertEqual(f["endpoint"], "enroll")
        self.assertEqual(f["rule"], self.dev_rule())
        self.assertEqual(f["generation"], self.generation())
        self.assertIn("allow", e["message"])
        # secctl's human audit output shows it too.
        cp = self.secctl("audit", "--limit", "5", expect=EXIT_SUCCESS)
        self.assertIn(f"pid={f['pid']}", cp.stdout)
        st = self.secctl_json("status")
        self.assertGreaterEqual(st["decisions"]["allowed"], 1)
        self.assertGreaterEqual(st["hash_cache"]["misses"] + st["hash_cache"]["hits"], 1)

        # The same process on the enroll endpoint.
        e = self.connect_as_root("enroll")
        self.assertEqual((e["fields"]["endpoint"], e["fields"]["verdict"]), ("enroll", "allow"))

    def test_other_uid_is_denied_until_a_rule_allows_it(self):
        denied_before = self.secctl_json("status")["decisions"]["denied"]
        e = self.connect_as_nobody()
        f = e["fields"]
        self.assertEqual((f["verdict"], f["admit"], f["uid"]), ("deny", False, NOBODY_UID), e)
        self.assertEqual(f["reason"], "no-match")
        self.assertEqual(f["sha256"], self.python_sha)
        self.assertNotIn("rule", f)
        self.assertEqual(self.secctl_json("status")["decisions"]["denied"], denied_before + 1)

        # The very next admission is decided by the new policy.
        rid = self.add_rule("allow", "--uid", str(NOBODY_UID))
        e = self.connect_as_nobody()
        self.assertEqual((e["fields"]["verdict"], e["fields"]["rule"], e["fields"]["generation"]),
                         ("allow", rid, self.generation()))

        # Deny wins: a deny rule for this executable beats the allow.
        deny = self.add_rule("deny", "--binary", "/usr/bin/python3", "--uid", str(NOBODY_UID))
        e = self.connect_as_nobody()
        self.assertEqual((e["fields"]["verdict"], e["fields"]["reason"], e["fields"]["rule"]),
                         ("deny", "deny-rule", deny))
        # root, the same binary, is not hit by that deny rule.
        self.assertEqual(self.connect_as_root()["fields"]["verdict"], "allow")

        # Removing the rules restores the default.
        self.secctl("policy", "remove", str(deny), expect=EXIT_SUCCESS)
        self.secctl("policy", "remove", str(rid), expect=EXIT_SUCCESS)
        self.assertEqual(self.connect_as_nobody()["fields"]["reason"], "no-match")

    def run_clone(self, exe, path):
        """Run exe (a Python interpreter) as nobody to connect to path; returns its pid."""
        cp = subprocess.run([exe, "-I", "-c", CONNECT_CODE, path], capture_output=True, text=True,
                            env=base_env(), timeout=TIMEOUT, cwd="/",
                            user=NOBODY_UID, group=65534, extra_groups=[])
        self.assertEqual(cp.returncode, 0, cp.stderr)
        return int(cp.stdout)

    def test_endpoint_and_executable_selectors(self):
        self.add_rule("allow", "--uid", str(NOBODY_UID), "--endpoint", "enroll",
                      "--sha256", self.python_sha)
        self.assertEqual(self.connect_as_nobody("enroll")["fields"]["verdict"], "allow")
        doc = self.secctl_json("policy", "test", "--uid", str(NOBODY_UID), "--gid", "65534",
                               "--binary", "/usr/bin/python3", "--endpoint", "data", expect=None)
        self.assertFalse(doc["allow"], doc)

        # Another executable (a copy of the interpreter with other bytes) is
        # judged by its own path and hash.
        clone = self.path("pyclone")
        shutil.copy(PYTHON_EXE, clone)
        with open(clone, "ab") as f:
            f.write(b"\0secd integration test\0")
        os.chmod(clone, 0o755)
        after = self.last_audit_id()
        e = self.decision_for(self.run_clone(clone, self.d.enroll), after)
        f = e["fields"]
        self.assertEqual((f["exe"], f["sha256"], f["verdict"]), (clone, sha256sum_of(clone), "deny"), e)

        # Allowed by path alone.
        rid = self.add_rule("allow", "--path", clone)
        after = self.last_audit_id()
        e = self.decision_for(self.run_clone(clone, self.d.enroll), after)
        self.assertEqual((e["fields"]["verdict"], e["fields"]["rule"]), ("allow", rid), e)

    def run_connect(self, argv, path):
        """Run argv + [python, -c, CONNECT_CODE, path] as root; returns the connecting pid."""
        cp = subprocess.run([*argv, PYTHON_EXE, "-I", "-c", CONNECT_CODE, path], capture_output=True,
                            text=True, env=base_env(), timeout=TIMEOUT, cwd="/")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        return int(cp.stdout.strip().splitlines()[-1])

    def traced_connect(self, after):
        """Connect from a child that the test holds in ptrace stop while secd judges it.

        secd is frozen (SIGSTOP) while the child connects and is attached, so
        secd reads the child's /proc entries while it is in tracing stop.
        """
        r, w = os.pipe()
        os.kill(self.d.pid, signal.SIGSTOP)
        try:
            pid = os.fork()
            if pid == 0:
                try:
                    os.close(r)
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    s.connect(self.d.enroll)
                    # Judged per call: the call waits in the socket until secd runs again.
                    s.sendall(ENROLL_PROBE)
                    os.write(w, b"c")
                    s.settimeout(60)
                    s.recv(1)
                finally:
                    os._exit(0)
            os.close(w)
            self.traced_pid = pid
            self.assertEqual(os.read(r, 1), b"c")
            os.close(r)
            self.assertEqual(libc.ptrace(PTRACE_ATTACH, pid, None, None), 0, "ptrace attach")
            _, status = os.waitpid(pid, os.WUNTRACED)
            self.assertTrue(os.WIFSTOPPED(status))
        finally:
            os.kill(self.d.pid, signal.SIGCONT)
        try:
            wait_until(lambda: any(e["kind"] == "decision" and e["id"] > after
                                   for e in self.audit_entries()),
                       what="secd's decision about the traced peer")
        finally:
            libc.ptrace(PTRACE_DETACH, pid, None, None)
            os.waitpid(pid, 0)
        return "traced"

    def test_traced_peer_is_denied_with_its_facts(self):
        """uid 0 is allowed by the --dev rule, but not while traced (TracerPid != 0)."""
        # A peer that is in ptrace stop ("t (tracing stop)") when secd looks at it.
        after = self.last_audit_id()
        self.assertEqual(self.traced_connect(after), "traced")
        e = [x for x in self.audit_entries() if x["id"] > after and x["kind"] == "decision"]
        self.assertEqual(len(e), 1, e)
        e = e[0]
        self.assertEqual((e["fields"]["verdict"], e["fields"]["admit"]), ("deny", False), e)
        self.assertIn("traced", e["fields"]["reason"], e)
        self.assertEqual((e["fields"].get("uid"), e["fields"].get("pid")), (0, self.traced_pid),
                         f"the decision about a traced peer lacks its attested facts: {e}")

    def test_namespaced_peer_is_denied(self):
        """uid 0 is allowed by the --dev rule, but not from another user namespace."""
        if shutil.which("unshare"):
            after = self.last_audit_id()
            # Inside the namespace the pid is the same (no pid namespace), the uid is unmapped.
            e = self.decision_for(self.run_connect(["unshare", "--user"], self.d.enroll), after)
            self.assertEqual((e["fields"]["verdict"], e["fields"]["admit"]), ("deny", False), e)
            self.assertIn("namespace", e["fields"]["reason"])
        else:
            self.skipTest("unshare(1) is not installed")
        # The same binary and uid from the initial namespace is still allowed.
        self.assertEqual(self.connect_as_root()["fields"]["verdict"], "allow")

    def test_hash_cache_is_used(self):
        before = self.secctl_json("status")["hash_cache"]
        for _ in range(3):
            self.assertEqual(self.connect_as_root()["fields"]["sha256"], self.python_sha)
        after = self.secctl_json("status")["hash_cache"]
        self.assertGreaterEqual(after["hits"], before["hits"] + 2, (before, after))
        self.assertLessEqual(after["entries"], after["capacity"])

    def test_permissive_mode_logs_deny_but_admits(self):
        self.secctl("policy", "mode", "permissive", expect=EXIT_SUCCESS)
        before = self.secctl_json("status")["decisions"]
        e = self.connect_as_nobody()
        f = e["fields"]
        self.assertEqual((f["verdict"], f["admit"], f["reason"]), ("deny", True, "no-match"), e)
        self.assertIn("permissive", e["message"])
        after = self.secctl_json("status")["decisions"]
        self.assertEqual(after["permissive"], before["permissive"] + 1)
        self.assertEqual(after["denied"], before["denied"])
        # Back to enforce: the same client is refused again.
        self.secctl("policy", "mode", "enforce", expect=EXIT_SUCCESS)
        f = self.connect_as_nobody()["fields"]
        self.assertEqual((f["verdict"], f["admit"]), ("deny", False))

    def test_policy_test_agrees_with_admission(self):
        """What 'policy test' predicts is what admission decides."""
        self.add_rule("allow", "--uid", str(NOBODY_UID), "--endpoint", "data")
        for endpoint in ("enroll",):
            with self.subTest(endpoint=endpoint):
                doc = self.secctl_json("policy", "test", "--uid", str(NOBODY_UID), "--gid", "65534",
                                       "--binary", "/usr/bin/python3", "--endpoint", endpoint,
                                       expect=None)
                f = self.connect_as_nobody(endpoint)["fields"]
                self.assertEqual(doc["allow"], f["verdict"] == "allow", (doc, f))
                self.assertEqual(doc["admit"], f["admit"])
                self.assertEqual((doc.get("rule") or {}).get("id"), f.get("rule"))


if __name__ == "__main__":
    unittest.main()
