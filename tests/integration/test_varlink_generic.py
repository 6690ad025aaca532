#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A generic Varlink client (python3-varlink) drives secd as well as secctl does."""

import json
import os
import socket
import subprocess
import unittest

import varlink

from secdtest import PYTHON, RawVarlink, SecdTestCase, TIMEOUT, base_env

SRCDIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INTERFACE_DIR = os.path.join(SRCDIR, "secd", "interfaces")
INTERFACES = ["io.secd.Audit", "io.secd.Policy", "io.secd.Service", "io.secd.Status"]


class VarlinkGenericTest(SecdTestCase):

    def setUp(self):
        super().setUp()
        self.d = self.secd_dev()
        self.address = "unix:" + self.d.control

    def tearDown(self):
        if self.d.alive():
            self.d.stop()
        super().tearDown()

    def connection(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(TIMEOUT)
        s.connect(self.d.control)
        self.addCleanup(s.close)
        return s

    def test_get_info(self):
        with varlink.Client(address=self.address) as client:
            interfaces = client.get_interfaces(socket_connection=self.connection())
            info = client.info
        for name in ["org.varlink.service", *INTERFACES]:
            self.assertIn(name, interfaces)
        for key in ("vendor", "product", "version", "url"):
            self.assertIsInstance(info.get(key), str, f"GetInfo field {key}: {info}")
        self.assertEqual(info["version"], self.secctl_json("status")["version"])

    def test_interface_descriptions(self):
        client = varlink.Client(address=self.address)
        conn = self.connection()
        with client.open("org.varlink.service", connection=conn) as service:
            for name in INTERFACES:
                with self.subTest(interface=name):
                    desc = service.GetInterfaceDescription(name)["description"]
                    with open(os.path.join(INTERFACE_DIR, name + ".varlink")) as f:
                        self.assertEqual(desc.strip(), f.read().strip(),
                                         "the served description is the interface file, comments included")
                    # python3-varlink's own parser accepts it.
                    self.assertEqual(varlink.Interface(desc).name, name)
            with self.assertRaises(varlink.VarlinkError) as cm:
                service.GetInterfaceDescription("io.secd.Nope")
            self.assertEqual(cm.exception.error(), "org.varlink.service.InterfaceNotFound")
            self.assertEqual(cm.exception.parameters().get("interface"), "io.secd.Nope")

    def test_policy_add_then_list(self):
        client = varlink.Client(address=self.address)
        with client.open("io.secd.Policy", connection=self.connection()) as policy:
            before = policy.List()
            added = policy.Add({"action": "allow", "uid": 31337, "endpoint": "data",
                                "comment": "from python3-varlink"})
            self.assertEqual(added["generation"], before["generation"] + 1)
            after = policy.List()
            self.assertEqual(after["generation"], added["generation"])
            rule = [r for r in after["rules"] if r["id"] == added["id"]]
            self.assertEqual(len(rule), 1, after)
            self.assertEqual({k: rule[0][k] for k in ("action", "uid", "endpoint", "comment")},
                             {"action": "allow", "uid": 31337, "endpoint": "data",
                              "comment": "from python3-varlink"})
            verdict = policy.Test(uid=31337, gid=31337, gids=[], endpoint="data")
            self.assertEqual((verdict["allow"], verdict["reason"], verdict["rule"]["id"]),
                             (True, "allow-rule", added["id"]))

            with self.assertRaises(varlink.VarlinkError) as cm:
                policy.Remove(987654)
            self.assertEqual(cm.exception.error(), "io.secd.Policy.NoSuchRule")
            self.assertEqual(cm.exception.parameters(), {"id": 987654})
            with self.assertRaises(varlink.VarlinkError) as cm:
                policy.Add({"action": "allow"})
            self.assertEqual(cm.exception.error(), "io.secd.Policy.InvalidRule")
            with self.assertRaises(varlink.VarlinkError) as cm:
                policy.Add({"action": "allow", "sha256": "xyz"})
            self.assertEqual(cm.exception.error(), "io.secd.Policy.InvalidRule")
            self.assertEqual(cm.exception.parameters()["field"], "sha256")
            with self.assertRaises(varlink.VarlinkError) as cm:
                policy.Add({"action": "allow", "user": "secd-no-such-user"})
            self.assertEqual(cm.exception.error(), "io.secd.Policy.UnknownName")
            self.assertEqual(cm.exception.parameters(), {"field": "user", "name": "secd-no-such-user"})
            self.assertEqual(policy.List(), after, "failed calls changed nothing")

        # secctl sees what the generic client did.
        self.assertIn(added["id"], [r["id"] for r in self.rules()])

    def test_varlink_cli(self):
        """python3 -m varlink.cli, the generic command line tool."""
        cp = subprocess.run([PYTHON, "-m", "varlink.cli", "call",
                             f"{self.address}/io.secd.Status.Get", "{}"],
                            capture_output=True, text=True, env=base_env(), timeout=TIMEOUT)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(json.loads(cp.stdout)["mode"], "enforce")
        cp = subprocess.run([PYTHON, "-m", "varlink.cli", "info", self.address],
                            capture_output=True, text=True, env=base_env(), timeout=TIMEOUT)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertIn("io.secd.Policy", cp.stdout)

    def test_audit_follow(self):
        client = varlink.Client(address=self.address)
        follow_conn = self.connection()
        with client.open("io.secd.Audit", connection=follow_conn) as audit:
            stream = audit.Tail(limit=2, _more=True)
            first = next(stream)
            self.assertLessEqual(len(first["entries"]), 2)
            last_id = max([e["id"] for e in first["entries"]], default=0)

            # A change from another connection arrives on the stream.
            with client.open("io.secd.Policy", connection=self.connection()) as policy:
                added = policy.Add({"action": "deny", "uid": 4040, "comment": "follow me"})
            for _ in range(10):
                reply = next(stream)
                new = [e for e in reply["entries"] if e["id"] > last_id]
                if any(str(added["id"]) in json.dumps(e) for e in new):
                    break
            else:
                self.fail("the policy change never showed up on the followed audit stream")
            entry = [e for e in new if str(added["id"]) in json.dumps(e)][0]
            self.assertEqual(entry["kind"], "policy", entry)
            self.assertIsInstance(entry["time_usec"], int)

    def test_audit_follow_raw_continues(self):
        """The same on the wire: every reply of a followed Tail carries continues: true."""
        with RawVarlink(self.d.control) as follower:
            follower.send("io.secd.Audit.Tail", {"limit": 1}, more=True)
            first = follower.recv()
            self.assertIs(first.get("continues"), True, first)
            self.assertNotIn("error", first)
            with RawVarlink(self.d.control) as admin:
                rid = admin.call("io.secd.Policy.Add", {"rule": {"action": "allow", "uid": 5050}})["id"]
                admin.call("io.secd.Policy.Remove", {"id": rid})
            seen = []
            while len([e for e in seen if str(rid) in json.dumps(e)]) < 2:
                reply = follower.recv()
                self.assertIsNotNone(reply, "the stream ended")
                self.assertIs(reply.get("continues"), True, reply)
                seen += reply["parameters"]["entries"]
            # A plain Tail (no "more") is one reply without continues.
            with RawVarlink(self.d.control) as c:
                c.send("io.secd.Audit.Tail", {"limit": 3})
                reply = c.recv()
                self.assertFalse(reply.get("continues", False), reply)
                self.assertEqual(len(reply["parameters"]["entries"]), 3)
        # The follower hung up; secd keeps serving.
        self.assert_serving(self.d)


if __name__ == "__main__":
    unittest.main()
