#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Who may use the control socket: root, the admin group, in --dev the invoking user.

secd checks the peer's credentials on every request, whatever the socket
file's permissions: the tests open the socket to everyone (chmod 0666) and
expect PermissionDenied from secd itself.
"""

import grp
import os
import socket
import unittest

import varlink

from secdtest import (EXIT_PERMISSION, EXIT_SUCCESS, NOBODY_GID, NOBODY_UID, RawVarlink,
                      SecdTestCase, TIMEOUT, run_as)

ADMIN_GROUP = "adm"   # exists on Debian; used as the configured admin group

# Every io.secd.* method with valid parameters.
CALLS = [
    ("io.secd.Status.Get", {}),
    ("io.secd.Policy.List", {}),
    ("io.secd.Policy.Add", {"rule": {"action": "allow", "uid": NOBODY_UID}}),
    ("io.secd.Policy.Remove", {"id": 1}),
    ("io.secd.Policy.SetMode", {"mode": "permissive"}),
    ("io.secd.Policy.Test", {"uid": NOBODY_UID}),
    ("io.secd.Policy.Export", {}),
    ("io.secd.Policy.Import", {"policy": {}}),
    ("io.secd.Audit.Tail", {"limit": 5}),
    ("io.secd.Service.Reload", {}),
]


def raw_calls_as_other(path):
    """Runs in a child as another uid: every call on its own connection; the replies."""
    out = []
    for method, params in CALLS:
        with RawVarlink(path) as c:
            c.send(method, params)
            out.append(c.recv())
    # A stream request is refused too, and not turned into a stream.
    with RawVarlink(path) as c:
        c.send("io.secd.Audit.Tail", {}, more=True)
        out.append(c.recv())
    return out


def python_varlink_as_other(path):
    """Runs in a child: the generic python3-varlink client."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    s.connect(path)
    client = varlink.Client(address="unix:" + path)
    errors = []
    try:
        with client.open("io.secd.Policy", connection=s) as policy:
            try:
                policy.List()
                errors.append(None)
            except varlink.VarlinkError as e:
                errors.append(e.error())
            try:
                policy.Add({"action": "allow", "uid": NOBODY_UID})
                errors.append(None)
            except varlink.VarlinkError as e:
                errors.append(e.error())
    except varlink.VarlinkError as e:
        # GetInterfaceDescription itself was refused.
        errors.append(e.error())
    return errors


def connect_as_other(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return "connected"
    except PermissionError:
        return "EACCES"
    finally:
        s.close()


class PermissionsTest(SecdTestCase):

    def open_runtime_dir(self, d):
        os.chmod(d.runtime_dir, 0o755)

    def assert_everything_denied(self, d, before):
        # secctl: every verb, exit 5, saying what to do.
        for args in (("status",), ("policy", "list"), ("policy", "allow", "--uid", str(NOBODY_UID)),
                     ("policy", "deny", "--uid", "0"), ("policy", "remove", "1"),
                     ("policy", "mode", "permissive"), ("policy", "test", "--uid", "0"),
                     ("policy", "export"), ("audit", "--limit", "1"), ("reload",)):
            with self.subTest(args=args):
                cp = self.secctl(*args, daemon=d, uid=NOBODY_UID, expect=EXIT_PERMISSION)
                self.assertRegex(cp.stderr, r"(?i)permission denied")
                self.assertEqual(cp.stdout, "")
        doc = self.path("import.json")
        with open(doc, "w") as f:
            f.write(self.secctl("policy", "export", daemon=d, expect=EXIT_SUCCESS).stdout)
        os.chmod(doc, 0o644)
        self.secctl("policy", "import", doc, daemon=d, uid=NOBODY_UID, expect=EXIT_PERMISSION)

        # Raw Varlink: the interface's own PermissionDenied error for each call.
        replies = run_as(NOBODY_UID, raw_calls_as_other, d.control)
        for (method, _), reply in zip(CALLS + [("io.secd.Audit.Tail", None)], replies):
            with self.subTest(method=method):
                self.assertIsNotNone(reply, f"{method}: connection closed without an answer")
                iface = method.rsplit(".", 1)[0]
                self.assertEqual(reply.get("error"), f"{iface}.PermissionDenied", reply)
                self.assertFalse(reply.get("continues"), reply)

        # python3-varlink sees the same.
        errors = run_as(NOBODY_UID, python_varlink_as_other, d.control)
        self.assertTrue(errors and all(e == "io.secd.Policy.PermissionDenied" for e in errors), errors)

        # Nothing changed, and secd still serves its administrator.
        self.assertEqual(self.secctl_json("policy", "list", daemon=d), before)
        self.assertEqual(self.secctl_json("status", daemon=d)["mode"], before["mode"])

    def test_non_admin_is_denied_by_socket_and_by_secd(self):
        d = self.secd_dev()
        self.open_runtime_dir(d)
        before = self.secctl_json("policy", "list")

        # The socket file's own permissions keep others out of connect().
        self.assertEqual(run_as(NOBODY_UID, connect_as_other, d.control), "EACCES",
                         f"control socket mode {oct(os.stat(d.control).st_mode)}")
        cp = self.secctl("status", uid=NOBODY_UID, expect=EXIT_PERMISSION)
        self.assertIn(d.control, cp.stderr)

        # With the socket opened to everyone, secd itself refuses every request.
        os.chmod(d.control, 0o666)
        self.assertEqual(run_as(NOBODY_UID, connect_as_other, d.control), "connected")
        self.assert_everything_denied(d, before)

        # Permissive mode never applies to the control socket.
        self.secctl("policy", "mode", "permissive", expect=EXIT_SUCCESS)
        before = self.secctl_json("policy", "list")
        self.secctl("status", uid=NOBODY_UID, expect=EXIT_PERMISSION)
        self.secctl("policy", "allow", "--uid", str(NOBODY_UID), uid=NOBODY_UID,
                    expect=EXIT_PERMISSION)
        # Even a policy rule that allows nobody on the control endpoint does not make it an admin.
        self.add_rule("allow", "--uid", str(NOBODY_UID), "--endpoint", "control")
        before = self.secctl_json("policy", "list")
        self.secctl("policy", "list", uid=NOBODY_UID, expect=EXIT_PERMISSION)
        self.assertEqual(self.secctl_json("policy", "list"), before)
        d.stop()

    def test_admin_group(self):
        """Without --dev: root and members of admin_group are admins, nobody else."""
        adm = grp.getgrnam(ADMIN_GROUP).gr_gid
        d = self.secd_config([f"state_dir = {self.path('state')}",
                              f"runtime_dir = {self.path('run')}",
                              f"admin_group = {ADMIN_GROUP}"])
        self.open_runtime_dir(d)

        # The control socket belongs to the admin group: its members connect
        # without the test opening the file.
        st = os.stat(d.control)
        self.assertEqual(st.st_gid, adm, "control socket group")
        self.assertEqual(st.st_mode & 0o777, 0o660, f"control socket mode {oct(st.st_mode)}")

        self.secctl("status", expect=EXIT_SUCCESS)
        cp = self.secctl("status", uid=NOBODY_UID, gid=NOBODY_GID, groups=[adm], expect=EXIT_SUCCESS)
        self.assertIn("enforce", cp.stdout)
        rid = self.add_rule("allow", "--uid", "4711", uid=NOBODY_UID, gid=NOBODY_GID, groups=[adm])
        self.assertIn(rid, [r["id"] for r in self.rules()])
        # A primary group counts as well.
        self.secctl("status", uid=NOBODY_UID, gid=adm, expect=EXIT_SUCCESS)

        # Not a member: refused by the socket, and by secd once the socket is open.
        self.secctl("status", uid=NOBODY_UID, gid=NOBODY_GID, expect=EXIT_PERMISSION)
        os.chmod(d.control, 0o666)
        before = self.secctl_json("policy", "list")
        self.assert_everything_denied(d, before)
        d.stop()


if __name__ == "__main__":
    unittest.main()
