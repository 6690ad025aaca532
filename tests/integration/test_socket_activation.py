#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""secd under systemd-socket-activate: endpoints arrive as named fds."""

import os
import socket
import unittest

from secdtest import EXIT_SUCCESS, RawVarlink, SecdTestCase, Secd


class SocketActivationTest(SecdTestCase):

    def _activated(self, names, extra_args=()):
        sockdir = self.path("activated")
        os.makedirs(sockdir, exist_ok=True)
        files = {"data": "data.sock", "enroll": "enroll.sock", "control": "control.sock"}
        activate = [(n, os.path.join(sockdir, files[n])) for n in names]
        state = self.path("state")
        run = self.path("run")
        d = Secd(self, self.root, ["--dev", "--state-dir", state, "--runtime-dir", run, *extra_args],
                 name="secd-activated", activate=activate, runtime_dir=run, state_dir=state)
        self.daemons.append(d)
        d.sockets = dict(activate)
        return d

    def test_named_fds(self):
        d = self._activated(["data", "enroll", "control"])
        d.start()   # connects to the data socket to make systemd-socket-activate exec secd
        control = d.sockets["control"]

        # secctl through the activated control socket.
        cp = self.secctl("status", sock=control, expect=EXIT_SUCCESS)
        self.assertIn("enforce", cp.stdout)
        status = self.secctl_json("status", sock=control)
        self.assertEqual(status["mode"], "enforce")
        rid = self.add_rule("allow", "--uid", "4242", "--comment", "activated", sock=control)
        self.assertIn(rid, [r["id"] for r in self.rules(sock=control)])

        # secd used the sockets it was given and bound none of its own.
        own = [f for f in os.listdir(d.runtime_dir) if f.endswith(".sock")] \
            if os.path.isdir(d.runtime_dir) else []
        self.assertEqual(own, [], "secd bound its own sockets although it was socket-activated")

        # The data and enroll endpoints are served too: both accept; data
        # expects TLS and hangs up on anything else.
        for name in ("data", "enroll"):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(10)
                s.connect(d.sockets[name])
                if name != "data":
                    continue
                s.sendall(b"not a TLS ClientHello\r\n" * 8)
                try:
                    while s.recv(4096):
                        pass
                except ConnectionResetError:
                    pass

        # The control socket also speaks Varlink to anyone who asks.
        with RawVarlink(control) as c:
            info = c.call("org.varlink.service.GetInfo")
        self.assertIn("io.secd.Policy", info["interfaces"])

        d.stop()
        # The activated socket files belong to the activator, not to secd.
        self.assertTrue(os.path.exists(control))

    def test_control_only(self):
        """Only a control fd is passed: the control API works through it."""
        d = self._activated(["control"])
        d.start(wait_ready=False)
        # secctl's own connection is what makes the activator exec secd; its
        # call waits in the socket's backlog until secd is up.
        d.trigger_activation()
        d.wait_ready()
        self.secctl("status", sock=d.sockets["control"], expect=EXIT_SUCCESS)
        d.stop()


if __name__ == "__main__":
    unittest.main()
