#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""SIGHUP reloads, SIGTERM drains, and a restart keeps the store."""

import os
import time
import unittest

from secdtest import EXIT_FAILURE, EXIT_SUCCESS, RawVarlink, SecdTestCase


class ReloadAndDrainTest(SecdTestCase):

    def write_conf(self, d, *extra):
        with open(d.config_path, "w") as f:
            f.write("\n".join([f"state_dir = {d.state_dir}", f"runtime_dir = {d.runtime_dir}",
                               *extra]) + "\n")

    def start_configured(self, *extra):
        return self.secd_config([f"state_dir = {self.path('state')}",
                                 f"runtime_dir = {self.path('run')}", *extra], dev=True)

    def capacity(self):
        return self.secctl_json("status")["hash_cache"]["capacity"]

    def test_sighup_reloads_config(self):
        d = self.start_configured("hash_cache_entries = 100")
        self.assertEqual(self.capacity(), 100)
        rules = self.secctl_json("policy", "list")

        self.write_conf(d, "hash_cache_entries = 250")
        d.reload()   # RELOADING=1, then READY=1
        self.assertEqual(self.capacity(), 250, "SIGHUP did not apply the new configuration")
        self.assertEqual(self.secctl_json("policy", "list"), rules)

        # A config value that changes behaviour: the message size limit.
        with RawVarlink(d.control) as c:
            c.send("io.secd.Status.Get", {"pad": "A" * 4000})
            self.assertEqual(c.recv()["error"], "org.varlink.service.InvalidParameter")
        self.write_conf(d, "hash_cache_entries = 250", "control_message_max = 2K")
        d.reload()
        with RawVarlink(d.control) as c:
            c.send("io.secd.Status.Get", {"pad": "A" * 4000})
            self.assertTrue(c.closed_by_peer(), "the new control_message_max is not in force")
        self.secctl("status", expect=EXIT_SUCCESS)
        d.stop()

    def test_secctl_reload(self):
        d = self.start_configured("hash_cache_entries = 100")
        self.write_conf(d, "hash_cache_entries = 300")
        doc = self.secctl_json("reload")
        self.assertEqual(doc["restart_needed"], [])
        self.assertEqual(self.capacity(), 300)

        # A setting that needs a restart is reported and keeps its running value.
        with open(d.config_path, "w") as f:
            f.write(f"state_dir = {d.state_dir}\nruntime_dir = {self.path('run2')}\n"
                    "hash_cache_entries = 300\n")
        doc = self.secctl_json("reload")
        self.assertIn("runtime_dir", doc["restart_needed"])
        cp = self.secctl("reload", expect=EXIT_SUCCESS)
        self.assertIn("runtime_dir", cp.stderr, "the human output warns about restart-only settings")
        self.assertTrue(os.path.exists(d.control), "the running control socket was removed")
        self.assertFalse(os.path.exists(self.path("run2", "control.sock")))
        self.secctl("status", expect=EXIT_SUCCESS)
        d.stop()

    def test_invalid_config_on_reload_keeps_the_running_one(self):
        d = self.start_configured("hash_cache_entries = 100")
        self.write_conf(d, "hash_cache_entries = 200", "bogus_key = 1")
        cp = self.secctl("reload", expect=EXIT_FAILURE)
        self.assertIn(f"{d.config_path}:4", cp.stderr)
        self.assertEqual(self.capacity(), 100, "a rejected configuration was partly applied")

        # The same by signal: secd stays up, with the old configuration.
        d.notify.drain()
        d.proc.send_signal(1)   # SIGHUP
        d.wait_for_notify("RELOADING", "1", "after SIGHUP")
        d.wait_for_notify("READY", "1", "after a failed reload")
        self.assertTrue(d.alive(), d.describe())
        self.assertIn(f"{d.config_path}:4", d.stderr())
        self.assertEqual(self.capacity(), 100)
        d.stop()

    def test_sigterm_with_clients_connected(self):
        d = self.secd_dev(extra_args=["--drain-timeout", "3s"])
        idle = self.varlink(d)
        partial = self.varlink(d)
        partial.send_raw(b'{"method": "io.secd.Policy.Li')
        follower = self.varlink(d)
        follower.send("io.secd.Audit.Tail", {"limit": 1}, more=True)
        self.assertTrue(follower.recv().get("continues"))
        # A request that was answered before the signal is not lost.
        self.assertIn("rules", idle.call("io.secd.Policy.List"))

        started = time.monotonic()
        d.stop(timeout=3 + 10)   # STOPPING=1 and exit status 0
        # Within the drain deadline (3 s), plus slack for a sanitizer build.
        self.assertLess(time.monotonic() - started, 3 + 2)
        for c in (idle, partial, follower):
            self.assertTrue(c.closed_by_peer(timeout=1), "a client was left connected to a dead secd")
        # secd removed the sockets it bound.
        for path in (d.control, d.data, d.enroll):
            self.assertFalse(os.path.exists(path), f"{path} left behind")

    def test_sigterm_stops_accepting(self):
        d = self.secd_dev(extra_args=["--drain-timeout", "5s"])
        d.proc.send_signal(15)
        d.wait_for_notify("STOPPING", "1", "after SIGTERM")
        # From now on nobody new gets served (the socket is gone or refuses).
        if d.alive():
            try:
                with RawVarlink(d.control, timeout=5) as c:
                    c.send("io.secd.Policy.List")
                    self.assertIsNone(c.recv(), "a new client was served after STOPPING=1")
            except (FileNotFoundError, ConnectionRefusedError, ConnectionResetError, BrokenPipeError):
                pass
        self.assertEqual(d.wait_exit(), 0, d.describe())
        d.check_sanitizers()

    def test_restart_keeps_rules(self):
        d = self.secd_dev()
        self.add_rule("allow", "--uid", "1000", "--comment", "survives")
        self.add_rule("deny", "--user", "nobody", "--endpoint", "enroll")
        self.add_rule("allow", "--sha256", "ab" * 32)
        self.secctl("policy", "mode", "permissive", expect=EXIT_SUCCESS)
        before = self.secctl_json("policy", "list")
        audit_before = self.secctl_json("audit", "--limit", "1000")
        d.stop()

        again = self.secd_dev(name="secd-again", state_dir=d.state_dir, runtime_dir=d.runtime_dir)
        after = self.secctl_json("policy", "list", daemon=again)
        self.assertEqual(after["rules"], before["rules"], "--dev must not add its rule twice")
        self.assertEqual(after["mode"], "permissive")
        self.assertEqual(after["generation"], before["generation"])
        # The audit trail survives too.
        audit_after = self.secctl_json("audit", "--limit", "1000", daemon=again)
        entries = lambda doc: doc["entries"] if isinstance(doc, dict) else doc
        ids_after = {e["id"] for e in entries(audit_after)}
        self.assertTrue({e["id"] for e in entries(audit_before)} <= ids_after)

        # A restart on a different runtime directory uses the same store.
        again.stop()
        third = self.secd_dev(name="secd-third", state_dir=d.state_dir)
        self.assertEqual(self.secctl_json("policy", "list", daemon=third)["rules"], before["rules"])
        third.stop()


if __name__ == "__main__":
    unittest.main()
