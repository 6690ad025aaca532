#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Malformed Varlink on the control socket: the right error or a closed
connection for the offender, and secd keeps serving everyone else with its
rules intact."""

import json
import socket
import time
import unittest

from secdtest import Deadline, RawVarlink, SecdTestCase, TIMEOUT, VarlinkError

CLOSE = "close"   # the expected outcome: connection closed without a reply


def nested(depth):
    return "[" * depth + "]" * depth


class MalformedVarlinkTest(SecdTestCase):

    def setUp(self):
        super().setUp()
        self.d = self.secd_dev(extra_args=["--idle-timeout", "2s", "--request-timeout", "2s"])
        with RawVarlink(self.d.control) as c:
            c.call("io.secd.Policy.Add", {"rule": {"action": "deny", "uid": 1234, "comment": "keep me"}})
            self.policy = c.call("io.secd.Policy.List")

    def tearDown(self):
        if self.d.alive():
            self.d.stop()
        super().tearDown()

    def assert_intact(self):
        """Another connection gets a proper answer and the rules are untouched."""
        self.assertTrue(self.d.alive(), self.d.describe())
        self.assertEqual(self.assert_serving(self.d), self.policy)

    def send_and_expect(self, data, expect, shutdown_write=False):
        """Send raw bytes and check the outcome.

        expect: CLOSE (closed without a reply), an error name (the connection
        then stays usable), or a tuple of those (any one will do).
        Returns the error's parameters, or None when the connection was closed.
        """
        allowed = expect if isinstance(expect, tuple) else (expect,)
        c = self.varlink(self.d)
        try:
            c.send_raw(data)
            if shutdown_write:
                c.sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            self.assertIn(CLOSE, allowed, f"closed while sending {data[:120]!r}")
            return None
        try:
            reply = c.recv()
        except TimeoutError:
            self.fail(f"neither a reply nor a close after {data[:120]!r}")
        if reply is None:
            self.assertIn(CLOSE, allowed, f"closed instead of answering {expect} to {data[:120]!r}")
            return None
        self.assertIn(reply.get("error"), allowed, f"secd answered {reply} to {data[:120]!r}")
        # The same connection still works after an error reply.
        self.assertEqual(c.call("io.secd.Policy.List"), self.policy)
        return reply.get("parameters", {})

    def msg(self, obj):
        return json.dumps(obj).encode() + b"\0"

    # ---- the matrix --------------------------------------------------------

    def test_garbage_and_framing(self):
        for name, data, shut in (
                ("garbage bytes", b"\xff\xfe\x00garbage\x01\x02\0", False),
                ("binary noise", bytes(range(256)) * 4, False),
                ("empty message", b"\0", False),
                ("only whitespace", b"   \n\0", False),
                ("truncated JSON", b'{"method": "io.secd.Status.Ge\0', False),
                ("JSON without NUL, then EOF", b'{"method": "io.secd.Status.Get"}', True),
                ("trailing garbage after object", b'{"method": "io.secd.Status.Get"} x\0', False),
                ("two objects in one message", b'{"method": "io.secd.Status.Get"}{}\0', False),
                ("NUL escaped in a string",
                 b'{"method": "io.secd.Policy.Add", "parameters": {"rule": '
                 b'{"action": "allow", "uid": 1, "comment": "a\\u0000b"}}}\0', False),
                ("invalid UTF-8 in a string",
                 b'{"method": "io.secd.Policy.Add", "parameters": {"rule": '
                 b'{"action": "allow", "uid": 1, "comment": "\xff\xfe\xc0\xaf"}}}\0', False),
                ("invalid UTF-8 in a key", b'{"meth\xffod": "io.secd.Status.Get"}\0', False),
                ("NaN", b'{"method": "io.secd.Policy.Remove", "parameters": {"id": NaN}}\0', False),
        ):
            with self.subTest(name):
                self.send_and_expect(data, CLOSE, shutdown_write=shut)
                self.assert_intact()

    def test_not_a_call(self):
        for name, data in (
                ("array", b"[1, 2, 3]\0"),
                ("string", b'"io.secd.Status.Get"\0'),
                ("number", b"42\0"),
                ("null", b"null\0"),
                ("no method", self.msg({"parameters": {}})),
                ("method not a string", self.msg({"method": 7})),
                ("parameters not an object", self.msg({"method": "io.secd.Status.Get", "parameters": [1]})),
                ("more not a boolean", self.msg({"method": "io.secd.Status.Get", "more": "yes"})),
                ("unknown top-level key", self.msg({"method": "io.secd.Status.Get", "colour": "red"})),
        ):
            with self.subTest(name):
                self.send_and_expect(data, CLOSE)
                self.assert_intact()
        # A malformed method name: a closed connection or a "not found" error.
        for name in ("not a method", "Get", "io.secd.policy.list", "io..secd.List", "io.secd.Policy."):
            with self.subTest(method=name):
                self.send_and_expect(self.msg({"method": name}),
                                     (CLOSE, "org.varlink.service.MethodNotFound",
                                      "org.varlink.service.InterfaceNotFound"))
                self.assert_intact()

    def test_unknown_method_and_interface(self):
        p = self.send_and_expect(self.msg({"method": "io.secd.Policy.Frobnicate"}),
                                 "org.varlink.service.MethodNotFound")
        self.assertEqual(p.get("method"), "io.secd.Policy.Frobnicate")
        p = self.send_and_expect(self.msg({"method": "io.secd.Nope.Get"}),
                                 "org.varlink.service.InterfaceNotFound")
        self.assertEqual(p.get("interface"), "io.secd.Nope")
        p = self.send_and_expect(self.msg({"method": "org.varlink.service.Frobnicate"}),
                                 "org.varlink.service.MethodNotFound")
        # io.secd.Enroll lives on the enroll socket only.
        self.send_and_expect(self.msg({"method": "io.secd.Enroll.Issue"}),
                             "org.varlink.service.InterfaceNotFound")
        self.assert_intact()

    def test_invalid_parameters(self):
        for method, params, name in (
                ("io.secd.Policy.List", {"bogus": 1}, "bogus"),
                ("io.secd.Status.Get", {"verbose": True}, "verbose"),
                ("io.secd.Policy.Remove", {}, "id"),
                ("io.secd.Policy.Remove", {"id": "one"}, "id"),
                ("io.secd.Policy.Remove", {"id": 1.5}, "id"),
                ("io.secd.Policy.Remove", {"id": 1, "also": 2}, "also"),
                ("io.secd.Policy.Remove", {"id": 2 ** 70}, "id"),
                ("io.secd.Policy.Add", {"rule": "allow everything"}, "rule"),
                ("io.secd.Policy.Add", {}, "rule"),
                ("io.secd.Policy.SetMode", {"mode": 1}, "mode"),
                ("io.secd.Policy.Test", {"uid": "root"}, "uid"),
                ("io.secd.Policy.Test", {"uid": -5}, "uid"),
                ("io.secd.Policy.Test", {"uid": 0, "gids": "wheel"}, "gids"),
                ("io.secd.Policy.Import", {"policy": [1]}, "policy"),
                ("io.secd.Audit.Tail", {"limit": "ten"}, "limit"),
                ("io.secd.Service.Reload", {"force": True}, "force"),
                ("org.varlink.service.GetInterfaceDescription", {}, "interface"),
                ("org.varlink.service.GetInterfaceDescription", {"interface": 5}, "interface"),
        ):
            with self.subTest(method=method, params=params):
                p = self.send_and_expect(self.msg({"method": method, "parameters": params}),
                                         "org.varlink.service.InvalidParameter")
                self.assertEqual(p, {"parameter": name})
        self.assert_intact()

    def test_invalid_rules_name_the_field(self):
        for rule, field in (({"action": "allow", "uid": 1, "colour": "red"}, "colour"),
                            ({"action": "permit", "uid": 1}, "action"),
                            ({"action": "allow", "uid": 1, "sha256": "00"}, "sha256"),
                            ({"action": "allow", "uid": 1, "endpoint": "moon"}, "endpoint"),
                            ({"action": "allow", "path": "relative"}, "path"),
                            ({"action": "allow", "uid": "zero"}, "uid"),
                            ({"action": "allow", "uid": 1, "id": 5}, "id")):
            with self.subTest(rule=rule):
                with RawVarlink(self.d.control) as c:
                    with self.assertRaises(VarlinkError) as cm:
                        c.call("io.secd.Policy.Add", {"rule": rule})
                    e = cm.exception
                    self.assertIn(e.error, ("io.secd.Policy.InvalidRule",
                                            "org.varlink.service.InvalidParameter"), e.reply)
                    self.assertIn(field, json.dumps(e.parameters), e.reply)
        self.assert_intact()

    def test_oversized_messages(self):
        big = self.msg({"method": "io.secd.Status.Get", "parameters": {"pad": "A" * (70 * 1024)}})
        self.send_and_expect(big, CLOSE)
        self.assert_intact()
        # Over the limit without ever sending a NUL: closed before it ends.
        c = self.varlink(self.d)
        closed = False
        try:
            for _ in range(64):
                c.send_raw(b'{"method": "io.secd.Status.Get", "parameters": {"pad": "' + b"A" * 4096)
        except (BrokenPipeError, ConnectionResetError):
            closed = True
        self.assertTrue(closed or c.closed_by_peer(), "secd kept reading an endless message")
        self.assert_intact()
        # Just under the limit is fine (an unknown parameter, answered properly).
        pad = 60 * 1024
        p = self.send_and_expect(self.msg({"method": "io.secd.Status.Get", "parameters": {"pad": "A" * pad}}),
                                 "org.varlink.service.InvalidParameter")
        self.assertEqual(p, {"parameter": "pad"})

    def test_deep_nesting(self):
        for depth in (65, 1000, 100000):
            with self.subTest(depth=depth):
                data = ('{"method": "io.secd.Policy.List", "parameters": {"x": %s}}' % nested(depth)).encode()
                self.send_and_expect(data + b"\0", CLOSE)
                self.assert_intact()
        # Moderate nesting is parsed and refused by name.
        p = self.send_and_expect(self.msg({"method": "io.secd.Policy.List",
                                           "parameters": {"x": json.loads(nested(10))}}),
                                 "org.varlink.service.InvalidParameter")
        self.assertEqual(p, {"parameter": "x"})

    def test_pipelined_and_oneway(self):
        c = self.varlink(self.d)
        c.send_raw(self.msg({"method": "io.secd.Policy.List"}) +
                   self.msg({"method": "io.secd.Nope.X"}) +
                   self.msg({"method": "io.secd.Status.Get"}))
        r1, r2, r3 = c.recv(), c.recv(), c.recv()
        self.assertEqual(r1["parameters"], self.policy)
        self.assertEqual(r2["error"], "org.varlink.service.InterfaceNotFound")
        self.assertIn("uptime_usec", r3["parameters"])
        # oneway: no reply; the next call's reply is the next message.
        c.send("io.secd.Status.Get", {}, oneway=True)
        c.send("io.secd.Policy.List")
        self.assertEqual(c.recv()["parameters"], self.policy)
        self.assert_intact()

    def test_slow_and_idle_clients_are_dropped(self):
        idle = self.varlink(self.d)
        partial = self.varlink(self.d)
        partial.send_raw(b'{"method": "io.secd.Sta')
        # While they hang around, everybody else is served.
        self.assert_intact()
        self.assertTrue(idle.closed_by_peer(timeout=TIMEOUT), "an idle connection was never closed")
        self.assertTrue(partial.closed_by_peer(timeout=TIMEOUT), "a half-sent request was never dropped")
        self.assert_intact()

    def test_many_connections(self):
        conns = []
        try:
            for _ in range(300):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(2)
                try:
                    s.connect(self.d.control)
                except (BlockingIOError, ConnectionRefusedError, socket.timeout):
                    s.close()
                    break
                conns.append(s)
            self.assertGreater(len(conns), 64)
            # Every connection gets an answer or is closed; none hangs.
            answered = closed = 0
            live = []
            for s in conns:
                try:
                    s.sendall(self.msg({"method": "io.secd.Policy.List"}))
                    live.append(s)
                except (BrokenPipeError, ConnectionResetError):
                    closed += 1
                    s.close()
            # Read them in order, hanging up each one after its answer, so a
            # secd that keeps the excess waiting in the backlog gets to them.
            for s in live:
                d = Deadline()
                buf = b""
                while b"\0" not in buf:
                    s.settimeout(max(d.remaining(), 0.001))
                    try:
                        chunk = s.recv(65536)
                    except (ConnectionResetError, BrokenPipeError):
                        chunk = b""
                    except socket.timeout:
                        self.fail("a connection got neither an answer nor a close")
                    if not chunk:
                        break
                    buf += chunk
                s.close()
                if b"\0" in buf:
                    self.assertEqual(json.loads(buf.split(b"\0")[0])["parameters"], self.policy)
                    answered += 1
                else:
                    closed += 1
            self.assertGreaterEqual(answered, 1)
            self.assertEqual(answered + closed, len(conns))
        finally:
            for s in conns:
                s.close()
        # Once they are gone, a new client is served again (bounded wait: secd
        # notices the hang-ups on its own schedule).
        d = Deadline()
        while True:
            try:
                self.assert_intact()
                break
            except (ConnectionError, OSError, AssertionError):
                if d.expired():
                    raise
                time.sleep(0.05)


if __name__ == "__main__":
    unittest.main()
