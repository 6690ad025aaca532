#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Every secctl verb against a real secd: output, --json, exit statuses."""

import json
import os
import re
import shutil
import signal
import subprocess
import unittest

from secdtest import (EXIT_DENIED, EXIT_FAILURE, EXIT_SUCCESS, EXIT_UNREACHABLE, EXIT_USAGE,
                      NOBODY_UID, SECCTL, TIMEOUT, Deadline, SecdTestCase, base_env, read_line,
                      sanitizer_report, sha256_file, sha256sum)

SHA_RE = re.compile(r"^[0-9a-f]{64}$")


class SecctlVerbsTest(SecdTestCase):

    def setUp(self):
        super().setUp()
        self.d = self.secd_dev()
        # Two small "executables" with known contents.
        self.bin_a = self.path("app-a")
        self.bin_b = self.path("app-b")
        for p, text in ((self.bin_a, b"#!/bin/sh\necho a\n"), (self.bin_b, b"#!/bin/sh\necho b\n")):
            with open(p, "wb") as f:
                f.write(text)
            os.chmod(p, 0o755)

    def tearDown(self):
        if self.d.alive():
            self.d.stop()
        super().tearDown()

    def generation(self):
        return self.secctl_json("policy", "list")["generation"]

    def rule(self, rid):
        rules = [r for r in self.rules() if r["id"] == rid]
        self.assertEqual(len(rules), 1, f"rule {rid} in {self.rules()}")
        return rules[0]

    # ---- version, status ---------------------------------------------------

    def test_version(self):
        cp = self.secctl("--version", sock="/nonexistent", expect=EXIT_SUCCESS)
        m = re.match(r"^secctl (\S+)\n$", cp.stdout)
        self.assertTrue(m, cp.stdout)
        version = m.group(1)
        cp = self.secctl("version", expect=EXIT_SUCCESS)
        self.assertIn(version, cp.stdout)
        self.assertEqual(self.secctl_json("status")["version"], version,
                         "secd and secctl from one build report one version")

    def test_help_lists_every_verb(self):
        cp = self.secctl("--help", sock="/nonexistent", expect=EXIT_SUCCESS)
        for verb in ("status", "policy", "list", "allow", "deny", "remove", "mode", "test", "export",
                     "import", "audit", "reload", "hash", "version"):
            self.assertRegex(cp.stdout, rf"\b{verb}\b")

    def test_status(self):
        cp = self.secctl("status", expect=EXIT_SUCCESS)
        self.assertIn("enforce", cp.stdout)
        st = self.secctl_json("status")
        for key, typ in (("version", str), ("uptime_usec", int), ("mode", str), ("generation", int),
                         ("rules", int), ("connections", dict), ("decisions", dict),
                         ("hash_cache", dict)):
            self.assertIsInstance(st.get(key), typ, f"status field {key}: {st}")
        self.assertEqual(set(st["connections"]), {"data", "tcp", "enroll", "control"})
        self.assertEqual(set(st["decisions"]), {"allowed", "denied", "permissive"})
        self.assertEqual(set(st["hash_cache"]),
                         {"hits", "misses", "evictions", "too_large", "entries", "capacity"})
        self.assertEqual(st["mode"], "enforce")
        self.assertEqual(st["rules"], len(self.rules()))
        self.assertEqual(st["generation"], self.generation())
        self.assertGreaterEqual(st["connections"]["control"], 1, "secctl's own connection")
        self.assertGreater(st["uptime_usec"], 0)
        later = self.secctl_json("status")
        self.assertGreater(later["uptime_usec"], st["uptime_usec"])

    # ---- policy list / allow / deny / remove -------------------------------

    def test_dev_rule_allows_invoking_user(self):
        rules = self.rules()
        self.assertTrue(any(r["action"] == "allow" and r.get("uid") == os.getuid() for r in rules),
                        f"--dev did not allow uid {os.getuid()}: {rules}")
        cp = self.secctl("policy", "test", "--uid", str(os.getuid()), expect=EXIT_SUCCESS)
        self.assertIn("verdict: allow", cp.stdout)

    def test_allow_prints_id_and_is_listed(self):
        g0 = self.generation()
        cp = self.secctl("policy", "allow", "--uid", "4242", "--endpoint", "data", "--comment",
                         "build bot", expect=EXIT_SUCCESS)
        self.assertRegex(cp.stdout, r"^[0-9]+\n$", "policy allow prints only the new id")
        rid = int(cp.stdout)
        r = self.rule(rid)
        self.assertEqual((r["action"], r["uid"], r["endpoint"], r["comment"]),
                         ("allow", 4242, "data", "build bot"))
        self.assertEqual(self.generation(), g0 + 1, "a policy change bumps the generation")

        # Human table: a header, the rule's row, and the summary line.
        cp = self.secctl("policy", "list", expect=EXIT_SUCCESS)
        lines = cp.stdout.splitlines()
        self.assertRegex(lines[0], r"^ID\s+ACTION")
        row = [l for l in lines if re.match(rf"^{rid}\s+allow\s", l)]
        self.assertEqual(len(row), 1, cp.stdout)
        self.assertIn("build bot", row[0])
        self.assertIn("4242", row[0])
        n = len(self.rules())
        self.assertIn(f"{n} rules, mode enforce, generation {g0 + 1}", cp.stdout)
        cp = self.secctl("--no-legend", "policy", "list", expect=EXIT_SUCCESS)
        self.assertNotRegex(cp.stdout, r"(?m)^ID\s+ACTION")
        self.assertEqual(len(cp.stdout.splitlines()), n)

    def test_allow_by_names_resolves_ids(self):
        rid = self.add_rule("allow", "--user", "nobody")
        r = self.rule(rid)
        self.assertEqual(r["uid"], NOBODY_UID, r)
        self.assertIn(r.get("user"), (None, "nobody"), r)
        rid = self.add_rule("deny", "--group", "nogroup")
        r = self.rule(rid)
        self.assertEqual((r["action"], r["gid"]), ("deny", 65534), r)

    def test_binary_hashes_the_file(self):
        rid = self.add_rule("allow", "--binary", os.path.relpath(self.bin_a, self.root))
        r = self.rule(rid)
        self.assertEqual(r["sha256"], sha256_file(self.bin_a))
        self.assertEqual(r["path"], os.path.realpath(self.bin_a))
        # A symlink is recorded by the file the kernel would report.
        link = self.path("link-to-a")
        os.symlink(self.bin_a, link)
        rid = self.add_rule("allow", "--binary", link, "--uid", "7")
        r = self.rule(rid)
        self.assertEqual((r["path"], r["sha256"], r["uid"]),
                         (os.path.realpath(self.bin_a), sha256_file(self.bin_a), 7))

    def test_sha256_is_normalised(self):
        h = sha256_file(self.bin_a)
        rid = self.add_rule("allow", "--sha256", h.upper())
        self.assertEqual(self.rule(rid)["sha256"], h)

    def test_remove(self):
        rid = self.add_rule("allow", "--uid", "5000")
        g = self.generation()
        self.secctl("policy", "remove", str(rid), expect=EXIT_SUCCESS)
        self.assertNotIn(rid, [r["id"] for r in self.rules()])
        self.assertEqual(self.generation(), g + 1)
        # Again: the rule is gone.
        cp = self.secctl("policy", "remove", str(rid), expect=EXIT_FAILURE)
        self.assertIn(str(rid), cp.stderr)
        cp = self.secctl("policy", "remove", "999999", expect=EXIT_FAILURE)
        self.assertIn("999999", cp.stderr)
        self.assertEqual(self.generation(), g + 1, "a failed remove changes nothing")
        self.secctl("policy", "remove", "abc", expect=EXIT_USAGE)
        self.secctl("policy", "remove", expect=EXIT_USAGE)

    def test_remove_json(self):
        rid = self.add_rule("allow", "--uid", "5001")
        doc = self.secctl_json("policy", "remove", str(rid))
        self.assertEqual(doc["generation"], self.generation())

    # ---- policy test -------------------------------------------------------

    def test_policy_test_allow_deny_and_default(self):
        # Default deny: no rule for uid 4343.
        cp = self.secctl("policy", "test", "--uid", "1", expect=EXIT_DENIED)
        self.assertIn("verdict: deny", cp.stdout)
        self.assertIn("no-match", cp.stdout)

        allow = self.add_rule("allow", "--uid", "1")
        cp = self.secctl("policy", "test", "--uid", "1", expect=EXIT_SUCCESS)
        self.assertIn("verdict: allow", cp.stdout)
        doc = self.secctl_json("policy", "test", "--uid", "1")
        self.assertEqual((doc["allow"], doc["admit"], doc["reason"], doc["rule"]["id"], doc["mode"]),
                         (True, True, "allow-rule", allow, "enforce"))
        self.assertEqual(doc["generation"], self.generation())

        # Deny wins over a matching allow.
        deny = self.add_rule("deny", "--uid", "1", "--endpoint", "data")
        cp = self.secctl("policy", "test", "--uid", "1", "--endpoint", "data", expect=EXIT_DENIED)
        self.assertIn("verdict: deny", cp.stdout)
        self.assertIn("deny-rule", cp.stdout)
        doc = self.secctl_json("policy", "test", "--uid", "1", "--endpoint", "data",
                               expect=EXIT_DENIED)
        self.assertEqual((doc["allow"], doc["admit"], doc["reason"], doc["rule"]["id"]),
                         (False, False, "deny-rule", deny))
        # All selectors of the deny rule must match: another endpoint is allowed.
        self.secctl("policy", "test", "--uid", "1", "--endpoint", "enroll", expect=EXIT_SUCCESS)

    def test_policy_test_uid_without_passwd_entry(self):
        """A client uid need not exist in passwd (admission judges kernel credentials);
        'policy test' with --uid and --gid must still answer."""
        self.add_rule("allow", "--uid", "4343", "--gid", "4343")
        cp = self.secctl("policy", "test", "--uid", "4343", "--gid", "4343", expect=EXIT_SUCCESS)
        self.assertIn("verdict: allow", cp.stdout)
        cp = self.secctl("policy", "test", "--uid", "4344", "--gid", "4344", expect=EXIT_DENIED)
        self.assertIn("no-match", cp.stdout)

    def test_policy_test_by_user_and_binary(self):
        self.add_rule("allow", "--user", "nobody", "--binary", self.bin_a)
        self.secctl("policy", "test", "--user", "nobody", "--binary", self.bin_a, expect=EXIT_SUCCESS)
        self.secctl("policy", "test", "--uid", str(NOBODY_UID), "--sha256", sha256_file(self.bin_a),
                    "--path", os.path.realpath(self.bin_a), expect=EXIT_SUCCESS)
        # Another binary, or the right hash under another path, does not match.
        self.secctl("policy", "test", "--user", "nobody", "--binary", self.bin_b, expect=EXIT_DENIED)
        # Another user with the right binary does not match either.
        self.secctl("policy", "test", "--uid", "2", "--binary", self.bin_a, expect=EXIT_DENIED)

    def test_policy_test_path_hashed_by_secd(self):
        """Test with a path and no hash: secd hashes the file itself."""
        self.add_rule("allow", "--sha256", sha256_file(self.bin_a), "--uid", "3")
        self.secctl("policy", "test", "--uid", "3", "--path", self.bin_a, expect=EXIT_SUCCESS)
        self.secctl("policy", "test", "--uid", "3", "--path", self.bin_b, expect=EXIT_DENIED)
        cp = self.secctl("policy", "test", "--uid", "3", "--path", self.path("missing"),
                         expect=EXIT_FAILURE)
        self.assertIn(self.path("missing"), cp.stderr)

    def test_mode(self):
        g = self.generation()
        self.secctl("policy", "mode", "permissive", expect=EXIT_SUCCESS)
        self.assertEqual(self.secctl_json("status")["mode"], "permissive")
        self.assertEqual(self.secctl_json("policy", "list")["mode"], "permissive")
        self.assertEqual(self.generation(), g + 1)
        # The verdict stays deny (exit 3), but the client would be admitted.
        doc = self.secctl_json("policy", "test", "--uid", "7", expect=EXIT_DENIED)
        self.assertEqual((doc["allow"], doc["admit"], doc["mode"]), (False, True, "permissive"))
        # Never on the control endpoint.
        doc = self.secctl_json("policy", "test", "--uid", "7", "--endpoint", "control",
                               expect=EXIT_DENIED)
        self.assertEqual((doc["allow"], doc["admit"]), (False, False))
        self.secctl("policy", "mode", "enforce", expect=EXIT_SUCCESS)
        doc = self.secctl_json("policy", "test", "--uid", "7", expect=EXIT_DENIED)
        self.assertEqual((doc["allow"], doc["admit"], doc["mode"]), (False, False, "enforce"))
        cp = self.secctl("policy", "mode", "lenient", expect=EXIT_USAGE)
        self.assertIn("lenient", cp.stderr)

    # ---- export / import ---------------------------------------------------

    def test_export_import_roundtrip(self):
        self.add_rule("allow", "--uid", "6000", "--comment", "exported")
        self.add_rule("deny", "--binary", self.bin_b)
        before = self.rules()

        cp = self.secctl("policy", "export", expect=EXIT_SUCCESS)
        doc = json.loads(cp.stdout)
        self.assertIsInstance(doc, dict)
        exported = self.path("policy.json")
        self.secctl("policy", "export", exported, expect=EXIT_SUCCESS)
        with open(exported) as f:
            self.assertEqual(json.load(f), doc, "export to a file and to stdout agree")

        # Import replaces the whole policy.
        self.add_rule("allow", "--uid", "6001", "--comment", "not in the export")
        g = self.generation()
        cp = self.secctl("policy", "import", exported, expect=EXIT_SUCCESS)
        self.assertRegex(cp.stdout, rf"Imported {len(before)} rules?")
        after = self.rules()
        strip = lambda rs: sorted((json.dumps({k: v for k, v in r.items() if k != "id"}, sort_keys=True)
                                   for r in rs))
        self.assertEqual(strip(after), strip(before))
        self.assertGreater(self.generation(), g)

        # --json prints the reply's parameters.
        res = self.secctl_json("policy", "import", exported)
        self.assertEqual(res["rules"], len(before))
        self.assertEqual(res["generation"], self.generation())

    def test_import_rejects_bad_documents(self):
        before = self.rules()
        g = self.generation()
        exported = self.path("policy.json")
        self.secctl("policy", "export", exported, expect=EXIT_SUCCESS)
        with open(exported) as f:
            doc = json.load(f)

        bad = self.path("bad.json")
        cases = {
            "not json": ("{ this is not json", None),
            "not an object": ("[1, 2, 3]", None),
            "unknown top-level field": (json.dumps({**doc, "surprise": 1}), "surprise"),
        }
        rules_key = next((k for k, v in doc.items() if isinstance(v, list)), None)
        if rules_key:
            good = {"action": "allow", "uid": 1}
            cases["unknown rule field"] = (json.dumps({**doc, rules_key: [{**good, "colour": "red"}]}),
                                           "colour")
            cases["malformed hash"] = (json.dumps({**doc, rules_key: [{**good, "sha256": "abc"}]}),
                                       "sha256")
            cases["rule without selector"] = (json.dumps({**doc, rules_key: [{"action": "allow"}]}),
                                              None)
            cases["unknown user"] = (json.dumps({**doc, rules_key: [{"action": "allow",
                                                                     "user": "secd-no-such-user"}]}),
                                     "user")
        for name, (text, field) in cases.items():
            with self.subTest(name):
                with open(bad, "w") as f:
                    f.write(text)
                cp = self.secctl("policy", "import", bad, expect=EXIT_USAGE)
                if field:
                    self.assertIn(field, cp.stderr)
                self.assertEqual(self.rules(), before, "a rejected import changes nothing")
                self.assertEqual(self.generation(), g)
        self.secctl("policy", "import", self.path("missing.json"), expect=EXIT_USAGE)

    # ---- audit, reload -----------------------------------------------------

    def test_audit(self):
        rids = [self.add_rule("allow", "--uid", str(7000 + i), "--comment", f"audit {i}")
                for i in range(5)]
        cp = self.secctl("audit", expect=EXIT_SUCCESS)
        self.assertTrue(cp.stdout.strip(), "audit prints the newest entries")

        entries = self._audit_json("--limit", "3")
        self.assertEqual(len(entries), 3)
        for e in entries:
            for key, typ in (("id", int), ("time_usec", int), ("kind", str), ("message", str)):
                self.assertIsInstance(e.get(key), typ, e)
        self.assertEqual([e["id"] for e in entries], sorted(e["id"] for e in entries), "oldest first")
        # The newest three are the last three policy changes.
        self.assertTrue(all(e["kind"] == "policy" for e in entries), entries)
        text = json.dumps(entries)
        for rid in rids[-3:]:
            self.assertRegex(text, rf"\b{rid}\b")
        # More entries than were asked for exist.
        self.assertGreaterEqual(len(self._audit_json("--limit", "1000")), 5)
        self.secctl("audit", "--limit", "0", expect=EXIT_USAGE)
        self.secctl("audit", "--limit", "1001", expect=EXIT_USAGE)
        self.secctl("audit", "--limit", "x", expect=EXIT_USAGE)

    def test_audit_follow(self):
        """secctl --json audit --follow: one JSON object per line as entries are written; SIGINT ends it with 0."""
        env = base_env({"SECCTL_SOCKET": self.d.control})
        p = subprocess.Popen([SECCTL, "--json", "audit", "--follow", "--limit", "1"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addCleanup(p.stderr.close)
        self.addCleanup(p.stdout.close)
        self.addCleanup(p.kill)
        buf = bytearray()
        deadline = Deadline()

        def next_entry():
            line = read_line(p.stdout, deadline, buf)
            if not line:
                p.kill()
                p.wait(TIMEOUT)
                self.fail(f"secctl audit --follow: {'timed out' if line is None else 'stopped'} "
                          f"(exit {p.returncode}): {p.stderr.read().decode()}")
            return json.loads(line)

        self.assertIn("kind", next_entry())
        rid = self.add_rule("allow", "--uid", "7100", "--comment", "followed")
        while True:
            e = next_entry()
            if e["kind"] == "policy" and re.search(rf"\b{rid}\b", json.dumps(e)):
                break
        p.send_signal(signal.SIGINT)
        self.assertEqual(p.wait(TIMEOUT), 0)
        err = p.stderr.read().decode()
        self.assertIsNone(sanitizer_report(err), err)

    def _audit_json(self, *args):
        doc = self.secctl_json("audit", *args)
        if isinstance(doc, dict):
            doc = doc["entries"]
        return doc

    def test_reload(self):
        cp = self.secctl("reload", expect=EXIT_SUCCESS)
        self.assertEqual(cp.stdout, f"Reloaded, policy generation {self.generation()}.\n")
        doc = self.secctl_json("reload")
        self.assertEqual(doc["restart_needed"], [])
        self.assertEqual(doc["generation"], self.generation())
        self.assertTrue(self.d.alive())
        self.assert_serving(self.d)

    # ---- hash --------------------------------------------------------------

    def test_hash_matches_sha256sum(self):
        odd = self.path("we\\ird\nname")
        shutil.copy(self.bin_a, odd)
        empty = self.path("empty")
        open(empty, "w").close()
        files = ["app-a", self.bin_b, "/usr/bin/python3", empty, odd]
        cp = self.secctl("hash", *files, expect=EXIT_SUCCESS)
        self.assertEqual(cp.stdout.encode(), sha256sum(*files, cwd=self.root))

        doc = self.secctl_json("hash", self.bin_a, self.bin_b)
        self.assertEqual([(e["path"], e["sha256"]) for e in doc],
                         [(self.bin_a, sha256_file(self.bin_a)), (self.bin_b, sha256_file(self.bin_b))])

        # Like sha256sum: a missing file is reported, the others are still printed.
        cp = self.secctl("hash", self.bin_a, self.path("missing"), self.bin_b, expect=EXIT_FAILURE)
        self.assertEqual(cp.stdout.encode(), sha256sum(self.bin_a, self.bin_b))
        self.assertIn(self.path("missing"), cp.stderr)
        self.secctl("hash", self.root, expect=EXIT_FAILURE)
        self.secctl("hash", expect=EXIT_USAGE)

    # ---- errors ------------------------------------------------------------

    def test_invalid_arguments_name_the_field(self):
        before = self.rules()
        for args, field in (
                (("policy", "allow", "--uid", "abc"), "--uid"),
                (("policy", "allow", "--uid", "-1"), "--uid"),
                (("policy", "allow", "--uid", "4294967295"), "--uid"),
                (("policy", "allow", "--gid", "1x"), "--gid"),
                (("policy", "allow", "--sha256", "abc"), "--sha256"),
                (("policy", "allow", "--sha256", "g" * 64), "--sha256"),
                (("policy", "allow", "--path", "relative/path"), "--path"),
                (("policy", "allow", "--path", "/a/../b"), "--path"),
                (("policy", "allow", "--endpoint", "everywhere"), "--endpoint"),
                (("policy", "allow", "--user", "secd-no-such-user"), "user"),
                (("policy", "allow", "--group", "secd-no-such-group"), "group"),
                (("policy", "allow", "--binary", "/nonexistent/secd-binary"), "--binary"),
                (("policy", "allow", "--binary", self.bin_a, "--sha256", "0" * 64), "--binary"),
                (("policy", "allow",), "selector"),
                (("policy", "allow", "--uid", "1", "extra"), "extra"),
                (("policy", "test", "--binary", self.bin_a), "--uid"),
                (("policy", "test", "--user", "secd-no-such-user"), "--user"),
                (("policy", "test", "--uid", "1", "--sha256", "12"), "--sha256"),
                (("audit", "--comment", "x"), "--comment"),
                (("policy",), "policy"),
                (("policy", "frobnicate"), "frobnicate"),
                (("frobnicate",), "frobnicate"),
                (("--no-such-option", "status"), "--no-such-option"),
                ((), "verb")):
            with self.subTest(args=args):
                cp = self.secctl(*args, expect=EXIT_USAGE)
                self.assertIn(field, cp.stderr)
                self.assertEqual(cp.stdout, "")
        self.assertEqual(self.rules(), before, "nothing was added")

    def test_daemon_not_running(self):
        missing = self.path("nowhere", "control.sock")
        for sock_args, env_sock in (((), missing), (("--socket", missing), "/elsewhere/control.sock")):
            with self.subTest(sock_args=sock_args):
                cp = self.secctl(*sock_args, "status", sock=env_sock, expect=EXIT_UNREACHABLE)
                self.assertIn(missing, cp.stderr)
        # A socket file with nobody behind it (secd stopped).
        control = self.d.control
        self.d.stop()
        if os.path.exists(control):
            cp = self.secctl("policy", "list", sock=control, expect=EXIT_UNREACHABLE)
            self.assertIn(control, cp.stderr)
        # A socket file that is left behind when secd was killed.
        d2 = self.secd_dev(name="secd2")
        d2.proc.kill()
        d2.wait_exit()
        cp = self.secctl("status", sock=d2.control, expect=EXIT_UNREACHABLE)
        self.assertIn(d2.control, cp.stderr)

    def test_socket_option_beats_environment(self):
        cp = self.secctl("--socket", self.d.control, "status", sock=self.path("wrong.sock"),
                         expect=EXIT_SUCCESS)
        self.assertIn("enforce", cp.stdout)


if __name__ == "__main__":
    unittest.main()
