#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Starting secd by hand: --dev, a config file, and the ways a start must fail."""

import os
import re
import socket
import stat
import subprocess
import unittest

from secdtest import SECD, TIMEOUT, EXIT_SUCCESS, RawVarlink, SecdTestCase, Secd, base_env

SRCDIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def control_paths_in(text):
    return re.findall(r"(/[^\s'\"`=]*control\.sock)", text)


class DaemonStartTest(SecdTestCase):

    def test_dev_start_creates_store_and_sockets(self):
        d = self.secd_dev()

        # The store exists once READY=1 has been sent.
        self.assertTrue(os.path.isfile(d.db), f"no store at {d.db}\n{d.describe()}")
        with open(d.db, "rb") as f:
            self.assertEqual(f.read(16), b"SQLite format 3\0")

        # The three endpoints are bound under the runtime directory with the
        # documented permissions: data and enroll for everyone, control not.
        for path, mode in ((d.data, 0o666), (d.enroll, 0o666)):
            st = os.stat(path)
            self.assertTrue(stat.S_ISSOCK(st.st_mode), path)
            self.assertEqual(stat.S_IMODE(st.st_mode), mode, path)
        st = os.stat(d.control)
        self.assertTrue(stat.S_ISSOCK(st.st_mode), d.control)
        self.assertEqual(stat.S_IMODE(st.st_mode) & 0o007, 0,
                         f"control socket is open to others: {oct(st.st_mode)}")

        # It tells the user how to point secctl at it.
        self.assertIn(d.control, control_paths_in(d.output()),
                      f"secd --dev does not print its control socket\n{d.describe()}")

        # And secctl reaches it that way.
        status = self.secctl_json("status")
        self.assertEqual(status["mode"], "enforce")
        self.assertGreaterEqual(status["rules"], 1, "--dev adds a rule for the invoking user")
        d.stop()

    def test_watchdog_and_status(self):
        """WATCHDOG=1 when the service manager asks for it; STATUS= with a live summary."""
        d = self.secd_dev(env={"WATCHDOG_USEC": "400000"})
        for _ in range(3):
            d.wait_for_notify("WATCHDOG", "1", "with WATCHDOG_USEC=400000", timeout=5)
        status = [m["STATUS"] for m in d.notify.messages if "STATUS" in m]
        self.assertTrue(status, f"no STATUS= sent: {d.notify.messages}")
        d.stop()

    def test_version_and_help(self):
        cp = subprocess.run([SECD, "--version"], capture_output=True, text=True, env=base_env(),
                            timeout=TIMEOUT)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        version = self.secctl("--version", sock="/nonexistent").stdout.split()[-1]
        self.assertEqual(cp.stdout, f"secd {version}\n")
        cp = subprocess.run([SECD, "--help"], capture_output=True, text=True, env=base_env(),
                            timeout=TIMEOUT)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        # Every config key is also a command-line option (issue 3), and
        # documented in secd.conf(5).
        with open(os.path.join(SRCDIR, "docs", "man", "secd.conf.5")) as f:
            man = f.read()
        for opt in ("--config", "--state-dir", "--runtime-dir", "--dev", "--admin-group",
                    "--max-connections", "--control-message-max", "--idle-timeout", "--drain-timeout",
                    "--hash-max-size", "--hash-cache-entries", "--log-level"):
            self.assertIn(opt, cp.stdout)
            if opt not in ("--config", "--dev"):
                self.assertIn(opt[2:].replace("-", "_"), man, f"{opt} not in secd.conf(5)")

    def test_dev_default_directory(self):
        """secd --dev alone keeps everything under ./secd-dev of its working directory."""
        cwd = self.path("work")
        os.mkdir(cwd)
        d = Secd(self, self.root, ["--dev"], name="secd-default", cwd=cwd)
        self.daemons.append(d)
        d.start()
        printed = control_paths_in(d.output())
        self.assertTrue(printed, f"secd --dev does not print its control socket\n{d.describe()}")
        control = printed[0]
        self.assertTrue(control.startswith(os.path.join(cwd, "secd-dev") + "/"),
                        f"control socket {control} is not under {cwd}/secd-dev")
        self.assertTrue(stat.S_ISSOCK(os.stat(control).st_mode), control)
        # README: export SECCTL_SOCKET=$PWD/secd-dev/run/control.sock
        self.assertEqual(control, os.path.join(cwd, "secd-dev", "run", "control.sock"))
        stores = [os.path.join(dp, f) for dp, _, fs in os.walk(os.path.join(cwd, "secd-dev"))
                  for f in fs if f == "secd.db"]
        self.assertEqual(len(stores), 1, f"store under {cwd}/secd-dev: {stores}")
        self.secctl("status", sock=control, expect=EXIT_SUCCESS)
        d.stop()

    def test_second_instance_on_same_runtime_dir_is_refused(self):
        first = self.secd_dev()
        rules = self.rules()
        out = self.secd_expect_start_failure(
            ["--dev", "--state-dir", self.path("other-state"), "--runtime-dir", first.runtime_dir])
        self.assertRegex(out, r"(?i)already|another|in use|listen",
                         "the refusal does not say that another secd is listening")
        self.assertTrue(any(p in out for p in (first.control, first.data, first.enroll)),
                        f"the refusal does not name the socket in use:\n{out}")
        # The first one is untouched: its sockets are still its own and it serves.
        self.assertTrue(first.alive())
        for path in (first.control, first.data, first.enroll):
            self.assertTrue(stat.S_ISSOCK(os.stat(path).st_mode), path)
        self.assert_serving(first, rules=rules)
        self.secctl("status", expect=EXIT_SUCCESS)
        first.stop()

    def test_stale_socket_files_are_replaced(self):
        run = self.path("secd", "run")
        os.makedirs(run)
        for name in ("control.sock", "secd.sock", "enroll.sock"):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(os.path.join(run, name))
            s.close()   # the file stays, nobody listens
        d = self.secd_dev(runtime_dir=run)
        self.secctl("status", expect=EXIT_SUCCESS)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(d.data)
        d.stop()

    def test_non_socket_file_in_the_way_is_not_removed(self):
        run = self.path("secd", "run")
        os.makedirs(run)
        victim = os.path.join(run, "control.sock")
        with open(victim, "w") as f:
            f.write("not a socket\n")
        self.secd_expect_start_failure(
            ["--dev", "--state-dir", self.path("secd", "state"), "--runtime-dir", run])
        with open(victim) as f:
            self.assertEqual(f.read(), "not a socket\n", "secd replaced a file that is not a socket")

    def _conf_failure(self, lines, expect_line, *words):
        conf = self.path("bad.conf")
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        out = self.secd_expect_start_failure(["--config", conf])
        self.assertIn(f"{conf}:{expect_line}", out, f"no file:line in the error:\n{out}")
        for w in words:
            self.assertIn(w, out)
        return out

    def _dirs(self):
        return [f"state_dir = {self.path('state')}", f"runtime_dir = {self.path('run')}"]

    def test_config_unknown_key(self):
        self._conf_failure(["# a comment", *self._dirs(), "", "no_such_key = 1"], 5, "no_such_key")

    def test_config_bad_values(self):
        for i, (key, value) in enumerate((("max_connections", "lots"),
                                          ("control_message_max", "64 parsecs"),
                                          ("idle_timeout", "-5s"),
                                          ("log_level", "chatty"),
                                          ("max_connections", "0"),
                                          ("tcp_listen", "nowhere"))):
            with self.subTest(key=key, value=value):
                self._conf_failure([*self._dirs(), f"{key} = {value}"], 3, key)

    def test_config_line_without_equals(self):
        self._conf_failure([*self._dirs(), "state_dir"], 3)

    def test_command_line_bad_value(self):
        out = self.secd_expect_start_failure(
            ["--dev", "--state-dir", self.path("state"), "--runtime-dir", self.path("run"),
             "--max-connections", "lots"])
        self.assertIn("max", out)

    def test_unknown_option(self):
        out = self.secd_expect_start_failure(["--no-such-option"])
        self.assertIn("no-such-option", out)

    def test_missing_config_file(self):
        missing = self.path("missing.conf")
        out = self.secd_expect_start_failure(["--config", missing])
        self.assertIn(missing, out)

    def test_missing_admin_group_stops_the_start(self):
        conf = self.path("secd.conf")
        with open(conf, "w") as f:
            f.write("\n".join([*self._dirs(), "admin_group = secd-test-no-such-group"]) + "\n")
        out = self.secd_expect_start_failure(["--config", conf])
        self.assertIn("secd-test-no-such-group", out)
        # Nothing listens where the sockets would have been.
        for name in ("control.sock", "secd.sock", "enroll.sock"):
            p = self.path("run", name)
            if os.path.exists(p):
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    with self.assertRaises(ConnectionRefusedError, msg=p):
                        s.connect(p)

    def test_config_file_start_without_dev(self):
        """A production-like start: config file, an existing admin group, no --dev."""
        d = self.secd_config([*self._dirs(), "admin_group = adm", "log_level = debug",
                              "max_connections = 8"])
        self.assertTrue(os.path.isfile(d.db))
        status = self.secctl_json("status")
        # No --dev: no rule for the invoking user is added.
        self.assertEqual(status["rules"], 0, status)
        with RawVarlink(d.control) as c:
            self.assertEqual(c.call("io.secd.Policy.List")["rules"], [])
        d.stop()


if __name__ == "__main__":
    unittest.main()
