#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Certificates for remote clients: secctl cert issue|list|revoke|crl, ca show,
io.secd.Certs and io.secd.CA on the control socket, and the policy's cert
selector.

Real secd --dev and secctl; the files secctl writes are checked with GnuTLS's
certtool (chain, key purpose, URI SAN, key/certificate pair, CRL).
"""

import base64
import datetime
import hashlib
import json
import os
import re
import sqlite3
import stat
import subprocess
import time
import unittest

from secdtest import (EXIT_FAILURE, EXIT_PERMISSION, EXIT_SUCCESS, EXIT_USAGE, NOBODY_GID, NOBODY_UID,
                      RawVarlink, SecdTestCase, TIMEOUT, VarlinkError, run_as, wait_until)

CERTTOOL = "/usr/bin/certtool"
SERIAL_RE = re.compile(r"^[0-9a-f]{32}$")
RFC3339_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

CERT_CALLS = [
    ("io.secd.Certs.Issue", {"name": "intruder"}),
    ("io.secd.Certs.List", {}),
    ("io.secd.Certs.Revoke", {"name": "intruder"}),
    ("io.secd.Certs.Crl", {}),
    ("io.secd.CA.Get", {}),
]


def raw_calls_as_other(path):
    """In a child as another uid: every Certs/CA call on its own connection; the replies."""
    out = []
    for method, params in CERT_CALLS:
        with RawVarlink(path) as c:
            c.send(method, params)
            out.append(c.recv())
    return out


def certtool(*args, expect=0):
    cp = subprocess.run([CERTTOOL, *args], capture_output=True, text=True, timeout=TIMEOUT)
    if expect is not None and cp.returncode != expect:
        raise AssertionError(f"certtool {' '.join(args)}: exit {cp.returncode}\n{cp.stdout}\n{cp.stderr}")
    return cp


def pem_der(pem):
    body = re.search(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", pem, re.S).group(1)
    return base64.b64decode("".join(body.split()))


def rfc3339(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


def process_memory_contains(pid, needles):
    """Which of needles (bytes) occur in the readable memory of process pid (as root)."""
    found = set()
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            fields = line.split()
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            # Sanitizer shadow and reserved ranges are huge and mostly unreadable.
            if "r" not in fields[1] or hi - lo > (1 << 30):
                continue
            try:
                mem.seek(lo)
                data = mem.read(hi - lo)
            except (OSError, ValueError, OverflowError):
                continue
            for n in needles:
                if n in data:
                    found.add(n)
    return found


@unittest.skipUnless(os.access(CERTTOOL, os.X_OK), "certtool (gnutls-bin) is not installed")
class CertsTest(SecdTestCase):

    def setUp(self):
        super().setUp()
        self.d = self.secd_dev()

    def outdir(self, name, mode=0o700):
        path = self.path(name)
        os.mkdir(path, mode)
        os.chmod(path, mode)
        return path

    def issue(self, name, out, *extra):
        doc = self.secctl_json("cert", "issue", name, "--out", out, *extra)
        self.assertRegex(doc["serial"], SERIAL_RE)
        return doc

    def certs(self, *extra):
        return self.secctl_json("cert", "list", *extra)["certificates"]

    # ---- issue ----------------------------------------------------------------

    def test_issue_writes_verified_files(self):
        out = self.outdir("out")
        before = datetime.datetime.now(datetime.timezone.utc)
        doc = self.issue("backup-1.example_host", out, "--valid", "10d")
        name = "backup-1.example_host"
        key, crt, ca = (os.path.join(out, f) for f in (f"{name}.key", f"{name}.crt", "ca.crt"))

        # Files and modes: every file 0600 (issue 4: "files 0600"), the key ours.
        self.assertEqual(stat.S_IMODE(os.lstat(key).st_mode), 0o600)
        self.assertTrue(stat.S_ISREG(os.lstat(key).st_mode))
        self.assertEqual(stat.S_IMODE(os.lstat(crt).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.lstat(ca).st_mode), 0o600)
        self.assertEqual(sorted(os.listdir(out)), sorted([f"{name}.key", f"{name}.crt", "ca.crt"]))
        with open(key) as f:
            key_pem = f.read()
        self.assertTrue(key_pem.startswith("-----BEGIN PRIVATE KEY-----"), key_pem[:40])
        self.assertEqual(doc["key_file"], f"{name}.key")
        self.assertNotIn("key", doc)   # --json never prints the key

        # The chain verifies against the CA file secctl wrote.
        cp = certtool("--verify", "--load-ca-certificate", ca, "--infile", crt)
        self.assertIn("Verified", cp.stdout)
        # Identity, key purpose, and the key belongs to the certificate.
        info = certtool("-i", "--infile", crt).stdout
        self.assertRegex(info, r"URI: secd://remote/backup-1\.example_host\b")
        self.assertRegex(info, r"(?i)TLS WWW Client")
        self.assertRegex(info, r"(?i)Certificate Authority \(CA\): FALSE")
        pub = re.compile(r"-----BEGIN PUBLIC KEY-----.*?-----END PUBLIC KEY-----", re.S)
        self.assertEqual(pub.search(certtool("--pubkey-info", "--load-privkey", key).stdout).group(0),
                         pub.search(certtool("--pubkey-info", "--load-certificate", crt).stdout).group(0))
        # Validity: what was asked for.
        expires = rfc3339(doc["expires"])
        self.assertLess(abs((expires - before).total_seconds() - 10 * 86400), 120, doc["expires"])
        serial_hex = re.search(r"Serial Number \(hex\): ([0-9a-fA-F:]+)", info).group(1)
        self.assertEqual(serial_hex.replace(":", "").lower().lstrip("0"), doc["serial"].lstrip("0"))

        # Nothing is overwritten: a second issue into the same place fails and leaves the files.
        with open(key) as f:
            self.assertEqual(f.read(), key_pem)
        cp = self.secctl("cert", "issue", name, "--out", out, expect=EXIT_FAILURE)
        self.assertIn("Refusing to overwrite", cp.stderr)
        with open(key) as f:
            self.assertEqual(f.read(), key_pem)

        # The key never shows up in secd's logs nor in the audit trail.
        key_body = "".join(key_pem.splitlines()[1:-1])
        self.assertNotIn(key_body, self.d.output())
        # The audit row is written off the loop: wait (bounded) until it is there, then look.
        def audit_with_serial():
            audit = json.dumps(self.secctl_json("audit", "--limit", "50"))
            return audit if doc["serial"] in audit else None
        audit = wait_until(audit_with_serial, what=f"the audit entry of certificate {doc['serial']}")
        self.assertNotIn(key_body, audit)

    def test_issued_key_is_not_left_in_secd_memory(self):
        """The reply carrying the key is wiped: no copy of the key's PEM text stays in secd.

        Sharpest in the sanitizer build, whose allocator keeps freed memory
        unused for a while: there, leaving out the wipes in control.c's
        output queue fails this test. (libtasn1 inside GnuTLS may keep the
        raw 32-byte seed in freed memory; that is outside secd's code and
        not checked here.)
        """
        if os.geteuid() != 0:
            self.skipTest("reading another process's memory needs root")
        needles = []
        for i in range(3):
            out = self.outdir(f"out{i}")
            self.issue(f"memory-{i}", out)
            with open(os.path.join(out, f"memory-{i}.key")) as f:
                needles += [line.encode() for line in f.read().splitlines() if not line.startswith("-----")]
        # Every line of base64 carries key bytes (the first one of a P-256 key after its fixed prefix).
        self.assertTrue(all(len(n) >= 40 for n in needles), needles)
        self.secctl("cert", "list", expect=EXIT_SUCCESS)     # more traffic through the same buffers
        found = process_memory_contains(self.d.pid, needles)
        self.assertEqual(found, set(), "secd keeps a copy of an issued private key")

    def test_issue_default_validity_and_ca_file_shared(self):
        out = self.outdir("out")
        before = datetime.datetime.now(datetime.timezone.utc)
        a = self.issue("alpha", out)
        b = self.issue("beta", out)
        self.assertNotEqual(a["serial"], b["serial"])
        self.assertLess(abs((rfc3339(a["expires"]) - before).total_seconds() - 30 * 86400), 120)
        for n in ("alpha", "beta"):
            certtool("--verify", "--load-ca-certificate", os.path.join(out, "ca.crt"),
                     "--infile", os.path.join(out, f"{n}.crt"))
        # Human output names the files.
        cp = self.secctl("cert", "issue", "gamma", "--out", out, expect=EXIT_SUCCESS)
        self.assertIn(os.path.join(out, "gamma.key"), cp.stdout)
        self.assertRegex(cp.stdout, r"Issued certificate [0-9a-f]{32} for \"gamma\"")

    def test_bad_name_and_validity(self):
        out = self.outdir("out")
        for args in (("cert", "issue", "a/b", "--out", out),
                     ("cert", "issue", "", "--out", out),
                     ("cert", "issue", "x" * 65, "--out", out),
                     ("cert", "issue", "ok", "--out", out, "--valid", "826d"),
                     ("cert", "issue", "ok", "--out", out, "--valid", "0"),
                     ("cert", "issue", "ok", "--out", out, "--valid", "tomorrow"),
                     ("cert", "issue", "ok"),
                     ("cert", "revoke", "not/a name"),
                     ("policy", "allow", "--cert", "a b")):
            with self.subTest(args=args):
                cp = self.secctl(*args, expect=EXIT_USAGE)
                self.assertEqual(cp.stdout, "")
        self.assertEqual(os.listdir(out), [])
        self.assertEqual(self.certs("--all"), [])

        # secd checks for itself.
        with RawVarlink(self.d.control) as c:
            for params, error, field in (({"name": "a/b"}, "io.secd.Certs.InvalidName", None),
                                         ({"name": "x" * 65}, "io.secd.Certs.InvalidName", None),
                                         ({"name": ""}, "io.secd.Certs.InvalidName", None),
                                         ({"name": "ok", "validity": "826d"},
                                          "org.varlink.service.InvalidParameter", "validity"),
                                         ({"name": "ok", "validity": "0s"},
                                          "org.varlink.service.InvalidParameter", "validity"),
                                         ({"name": "ok", "validity": "soon"},
                                          "org.varlink.service.InvalidParameter", "validity"),
                                         ({"name": 5}, "org.varlink.service.InvalidParameter", "name"),
                                         ({}, "org.varlink.service.InvalidParameter", "name")):
                with self.subTest(params=params):
                    with self.assertRaises(VarlinkError) as e:
                        c.call("io.secd.Certs.Issue", params)
                    self.assertEqual(e.exception.error, error)
                    if field:
                        self.assertEqual(e.exception.parameters.get("parameter"), field)
            for params in ({}, {"serial": "00" * 16, "name": "x"}, {"serial": "xyz"}):
                with self.subTest(revoke=params):
                    with self.assertRaises(VarlinkError) as e:
                        c.call("io.secd.Certs.Revoke", params)
                    self.assertEqual(e.exception.error, "org.varlink.service.InvalidParameter")
        self.assertEqual(self.certs("--all"), [])

    # ---- list, revoke, crl ----------------------------------------------------

    def test_list_revoke_crl(self):
        first = self.issue("host-a", self.outdir("a1"))
        second = self.issue("host-a", self.outdir("a2"))
        other = self.issue("host-b", self.outdir("b"))

        certs = self.certs()
        remote = [c for c in certs if c["kind"] == "remote"]
        # Newest first.
        self.assertEqual([c["serial"] for c in remote], [other["serial"], second["serial"], first["serial"]])
        for c in remote:
            self.assertFalse(c["revoked"])
            self.assertRegex(c["not_after"], RFC3339_RE)
            self.assertRegex(c["not_before"], RFC3339_RE)
            self.assertNotIn("uid", c)
        self.assertEqual(remote[0]["name"], "host-b")
        table = self.secctl("cert", "list", expect=EXIT_SUCCESS).stdout
        self.assertIn(other["serial"], table)
        self.assertIn("host-b", table)
        self.assertRegex(table, r"SERIAL +KIND +HOLDER +NOT-AFTER +STATE")

        # By name: every certificate of that name.
        cp = self.secctl("cert", "revoke", "host-a", expect=EXIT_SUCCESS)
        self.assertEqual(sorted(cp.stdout.split()), sorted([first["serial"], second["serial"]]))
        by_serial = {c["serial"]: c for c in self.certs()}
        for s in (first["serial"], second["serial"]):
            self.assertTrue(by_serial[s]["revoked"])
            self.assertRegex(by_serial[s]["revoked_at"], RFC3339_RE)
        self.assertFalse(by_serial[other["serial"]]["revoked"])

        # By serial, in upper case too.
        cp = self.secctl("cert", "revoke", other["serial"].upper(), expect=EXIT_SUCCESS)
        self.assertEqual(cp.stdout.split(), [other["serial"]])
        self.assertTrue({c["serial"]: c for c in self.certs()}[other["serial"]]["revoked"])
        # Again: still revoked, no error.
        self.secctl("cert", "revoke", other["serial"], expect=EXIT_SUCCESS)

        # Unknown serial or name.
        cp = self.secctl("cert", "revoke", "0" * 32, expect=EXIT_FAILURE)
        self.assertIn("NoSuchCertificate", cp.stderr)
        self.secctl("cert", "revoke", "never-issued", expect=EXIT_FAILURE)

        # The CRL lists all three, signed by the CA.
        crl = self.secctl("cert", "crl", expect=EXIT_SUCCESS).stdout
        self.assertIn("-----BEGIN X509 CRL-----", crl)
        crl_path, ca_path = self.path("crl.pem"), self.path("ca.pem")
        with open(crl_path, "w") as f:
            f.write(crl)
        with open(ca_path, "w") as f:
            f.write(self.secctl_json("ca", "show")["ca"])
        info = certtool("--crl-info", "--infile", crl_path).stdout
        listed = {s.replace(":", "").lower().lstrip("0")
                  for s in re.findall(r"Serial Number \(hex\): ([0-9a-fA-F:]+)", info)}
        for s in (first["serial"], second["serial"], other["serial"]):
            self.assertIn(s.lstrip("0"), listed, info)
        cp = certtool("--verify-crl", "--load-ca-certificate", ca_path, "--infile", crl_path)
        self.assertRegex(cp.stdout + cp.stderr, r"(?i)verified")
        self.assertEqual(self.secctl_json("cert", "crl")["crl"], crl)

        # Audit trail: issued and revoked, with the serials.
        # (Written off the loop: they land a moment after the calls returned.)
        def both():
            audit = json.dumps(self.secctl_json("audit", "--limit", "100"))
            return ("revoked certificate " + first["serial"] in audit
                    and "issued certificate " + other["serial"] in audit)
        wait_until(both, what="the issue and revocation audit entries")

    def test_expired_records_are_pruned_after_cert_retention(self):
        # Every enrollment adds a record; expired ones must not pile up for years.
        gone = self.issue("host-old", self.outdir("old"))
        kept = self.issue("host-recent", self.outdir("recent"))
        fresh = self.issue("host-fresh", self.outdir("fresh"))
        self.secctl("cert", "revoke", "host-old", expect=EXIT_SUCCESS)
        self.d.stop()
        # Age two records in the store: one expired 40 days ago (beyond the default
        # cert_retention of 30 days), one 10 days ago (within it).
        now = int(time.time())
        db = sqlite3.connect(os.path.join(self.d.state_dir, "secd.db"))
        try:
            for doc, days in ((gone, 40), (kept, 10)):
                cur = db.execute("UPDATE certificates SET not_before_sec = ?, not_after_sec = ? WHERE serial = ?",
                                 (now - (days + 30) * 86400, now - days * 86400, bytes.fromhex(doc["serial"])))
                self.assertEqual(cur.rowcount, 1)
            db.commit()
        finally:
            db.close()
        self.d.start()

        def pruned():
            serials = {c["serial"] for c in self.certs("--all")}
            return gone["serial"] not in serials and serials
        serials = wait_until(pruned, interval=0.2, what="the record expired 40 days ago to be removed by the first sweep")
        self.assertIn(kept["serial"], serials)
        self.assertIn(fresh["serial"], serials)
        # Its revocation went with it; the certificate was expired anyway.
        self.secctl("cert", "revoke", gone["serial"], expect=EXIT_FAILURE)
        self.assertTrue(self.d.alive())

    # ---- ca show --------------------------------------------------------------

    def test_ca_show(self):
        doc = self.secctl_json("ca", "show")
        self.assertIn(doc["algorithm"], ("ed25519", "ecdsa-p256"))
        self.assertTrue(doc["subject"])
        self.assertRegex(doc["not_before"], RFC3339_RE)
        self.assertRegex(doc["not_after"], RFC3339_RE)
        self.assertLess(rfc3339(doc["not_before"]), rfc3339(doc["not_after"]))
        self.assertEqual(doc["fingerprint"], hashlib.sha256(pem_der(doc["ca"])).hexdigest())
        # The same CA as in the state directory, and as the one cert issue writes.
        with open(os.path.join(self.d.state_dir, "ca.crt")) as f:
            self.assertEqual(pem_der(f.read()), pem_der(doc["ca"]))
        out = self.outdir("out")
        self.issue("x", out)
        with open(os.path.join(out, "ca.crt")) as f:
            self.assertEqual(f.read(), doc["ca"])
        human = self.secctl("ca", "show", expect=EXIT_SUCCESS).stdout
        self.assertIn(f"fingerprint (SHA-256): {doc['fingerprint']}", human)
        self.assertIn(f"algorithm: {doc['algorithm']}", human)
        self.assertIn("-----BEGIN CERTIFICATE-----", human)

    # ---- who may -----------------------------------------------------------

    def test_non_admin_is_denied(self):
        os.chmod(self.d.runtime_dir, 0o755)
        os.chmod(self.d.control, 0o666)
        out = self.outdir("out", 0o777)
        for args in (("cert", "issue", "intruder", "--out", out), ("cert", "list"),
                     ("cert", "revoke", "intruder"), ("cert", "revoke", "0" * 32), ("cert", "crl"),
                     ("ca", "show")):
            with self.subTest(args=args):
                cp = self.secctl(*args, uid=NOBODY_UID, gid=NOBODY_GID, expect=EXIT_PERMISSION)
                self.assertRegex(cp.stderr, r"(?i)permission denied")
                self.assertEqual(cp.stdout, "")
        # The key file made for the refused issue is gone again; nothing was issued.
        self.assertEqual(os.listdir(out), [])
        self.assertEqual(self.certs("--all"), [])

        replies = run_as(NOBODY_UID, raw_calls_as_other, self.d.control)
        for (method, _), reply in zip(CERT_CALLS, replies):
            with self.subTest(method=method):
                self.assertIsNotNone(reply)
                self.assertEqual(reply.get("error"), method.rsplit(".", 1)[0] + ".PermissionDenied", reply)
        self.assertEqual(self.certs("--all"), [])

    # ---- the policy's cert selector --------------------------------------------

    def test_cert_selector(self):
        rid = self.secctl("policy", "allow", "--cert", "backup-1", "--endpoint", "tcp",
                          "--comment", "remote backup", expect=EXIT_SUCCESS).stdout.strip()
        self.secctl("policy", "deny", "--cert", "stolen", expect=EXIT_SUCCESS)
        rules = self.secctl_json("policy", "list")["rules"]
        rule = [r for r in rules if str(r["id"]) == rid][0]
        self.assertEqual(rule["cert"], "backup-1")
        self.assertEqual(rule["endpoint"], "tcp")
        table = self.secctl("policy", "list", expect=EXIT_SUCCESS).stdout
        self.assertRegex(table, r"ENDPOINT +CERT +COMMENT")
        self.assertIn("backup-1", table)

        # A uid without a passwd entry, so only the cert rules can decide.
        q = ("policy", "test", "--uid", "4343", "--gid", "4343", "--endpoint", "tcp")
        cp = self.secctl(*q, "--cert", "backup-1", expect=EXIT_SUCCESS)
        self.assertIn("cert=backup-1", cp.stdout)
        self.secctl(*q, expect=3)                       # local peer: no cert, no match
        self.secctl(*q, "--cert", "backup-2", expect=3)
        cp = self.secctl(*q, "--cert", "stolen", expect=3)
        self.assertIn("deny-rule", cp.stdout)
        self.secctl("policy", "test", "--uid", "4343", "--gid", "4343", "--endpoint", "data",
                    "--cert", "backup-1", expect=3)

        # Export/import keeps the selector; a restart keeps it too.
        doc = self.secctl_json("policy", "export")
        self.assertIn("backup-1", json.dumps(doc))
        self.d.stop()
        self.d.start()
        rules = self.secctl_json("policy", "list")["rules"]
        self.assertEqual([r.get("cert") for r in rules if r.get("cert")], ["backup-1", "stolen"])
        self.secctl(*q, "--cert", "backup-1", expect=EXIT_SUCCESS)


if __name__ == "__main__":
    unittest.main()
