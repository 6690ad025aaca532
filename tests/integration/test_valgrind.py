#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""secd's normal run under valgrind: no memory errors, no leaks.

The daemon is started through a wrapper that runs it under memcheck with
--error-exitcode, driven through a representative session (every control
verb, admissions on the data and enroll sockets, enrollments, mTLS sessions
carrying relay and key-server traffic through secmsg, a reload, a
follower), and
stopped with SIGTERM: any invalid access or definite/indirect leak makes the
exit status non-zero and fails the test. Registered only for builds without
sanitizers (valgrind cannot run ASan binaries).
"""
import os
import shutil
import socket
import stat
import subprocess
import sys
import unittest

import secdtest
from secdtest import SecdTestCase, RawVarlink, wait_until

VALGRIND = shutil.which("valgrind")
VALGRIND_ERROR = 99
SECMSG = os.environ.get("SECMSG", "")


def touch_endpoint(path):
    """Connect to a data/enroll socket and wait until secd has judged and closed it."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(secdtest.TIMEOUT)
    try:
        s.connect(path)
        # Until mTLS is served secd closes after the decision; with mTLS it waits
        # for a ClientHello: either way an EOF or a reset ends this read.
        s.shutdown(socket.SHUT_WR)
        try:
            while s.recv(4096):
                pass
        except (ConnectionResetError, socket.timeout):
            pass
    finally:
        s.close()


@unittest.skipUnless(VALGRIND, "valgrind is not installed")
class ValgrindTest(SecdTestCase):
    def setUp(self):
        super().setUp()
        wrapper = self.path("secd-under-valgrind")
        with open(wrapper, "w") as f:
            f.write("#!/bin/sh\n"
                    f"exec {VALGRIND} --quiet --error-exitcode={VALGRIND_ERROR} "
                    "--leak-check=full --show-leak-kinds=definite,indirect "
                    "--errors-for-leak-kinds=definite,indirect --track-fds=no "
                    f"--log-file={self.path('valgrind.log')} "
                    f"{secdtest.SECD} \"$@\"\n")
        os.chmod(wrapper, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
        self.saved_secd = secdtest.SECD
        secdtest.SECD = wrapper
        self.addCleanup(setattr, secdtest, "SECD", self.saved_secd)

    def valgrind_log(self):
        try:
            with open(self.path("valgrind.log")) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def test_normal_run_is_clean(self):
        d = self.secd_dev()
        # The binary the test runs as (python) gets judged on data and enroll.
        self.secctl("status", expect=0)
        rid = self.secctl("policy", "allow", "--uid", "4242", "--gid", "4242",
                          "--comment", "valgrind", expect=0).stdout.strip()
        self.secctl("policy", "deny", "--uid", "4343", "--endpoint", "data", expect=0)
        self.secctl("policy", "list", expect=0)
        self.secctl("--json", "policy", "list", expect=0)
        self.secctl("policy", "test", "--uid", "4242", "--gid", "4242", expect=0)
        self.secctl("policy", "test", "--uid", "4343", "--gid", "4343", expect=3)
        self.secctl("policy", "test", "--uid", "0", "--binary", sys.executable, expect=0)
        exported = self.path("policy.json")
        with open(exported, "w") as f:
            f.write(self.secctl("policy", "export", expect=0).stdout)
        self.secctl("policy", "mode", "permissive", expect=0)
        self.secctl("policy", "mode", "enforce", expect=0)
        self.secctl("policy", "remove", rid, expect=0)
        self.secctl("policy", "remove", "999999", expect=1)
        self.secctl("policy", "import", exported, expect=0)

        touch_endpoint(d.data)
        touch_endpoint(d.enroll)
        self.secctl("audit", "--limit", "50", expect=0)

        # A follower open across a change, then malformed input on another connection.
        with RawVarlink(d.control) as follow:
            follow.send("io.secd.Audit.Tail", {"limit": 1}, more=True)
            first = follow.recv()
            self.assertTrue(first.get("continues"), first)
            self.secctl("policy", "allow", "--uid", "4444", "--gid", "4444", expect=0)
            nxt = follow.recv()
            self.assertIn("parameters", nxt, nxt)
        with RawVarlink(d.control) as bad:
            bad.send_raw(b'{"method": "io.secd.Policy.List", "parameters": [1,2,3]}\0')
            bad.recv()
        with RawVarlink(d.control) as junk:
            junk.send_raw(b"\xff\xfe not json\0")
            junk.closed_by_peer()

        if SECMSG:
            self.relay_session(d)

        d.reload()
        self.secctl("reload", expect=0)
        self.secctl("status", expect=0)

        code = d.stop(expect_code=None, timeout=max(secdtest.TIMEOUT, 60))
        log = self.valgrind_log()
        self.assertEqual(code, 0, f"secd under valgrind exited {code}\n--- valgrind log:\n{log}")
        self.assertNotIn("definitely lost: ", log.replace("definitely lost: 0 bytes", ""), log)

    def relay_session(self, d):
        """Enrollments, mTLS sessions, every relay and key-server request, through secmsg."""
        home = self.path("secmsg-home")
        env = {k: v for k, v in os.environ.items() if k not in ("SECMSG_HOME", "XDG_DATA_HOME")}
        env.update(SECD_SOCKET=d.data, SECD_ENROLL_SOCKET=d.enroll, HOME=self.path("."))

        def secmsg(*args, stdin=b""):
            cp = subprocess.run([SECMSG, "--home", home, *args], input=stdin, capture_output=True, env=env,
                                timeout=max(secdtest.TIMEOUT, 60))
            self.assertEqual(cp.returncode, 0, f"secmsg {' '.join(args)}: {cp.stderr.decode(errors='replace')}")
            return cp.stdout

        address = secmsg("id").decode().strip()
        self.assertRegex(address, r"^[0-9a-f]{64}$")
        secmsg("keys", "publish", "--count", "3")
        self.assertEqual(secmsg("keys", "count").decode().strip(), "3")
        secmsg("keys", "bundle", address)
        secmsg("send", "--to", address, stdin=b"under valgrind")
        self.assertEqual(secmsg("recv", "--wait", "5", "--max", "1"), b"under valgrind")
        self.secctl("relay", "stats", expect=0)
        self.secctl("keys", "stats", expect=0)


if __name__ == "__main__":
    unittest.main()
