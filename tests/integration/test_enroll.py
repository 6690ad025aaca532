#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""io.secd.Enroll on the enroll socket: who gets a certificate, what is in
it, and what everybody else gets instead.

Keys and CSRs are made with certtool (gnutls-bin) in the test's directory;
certificates are checked with certtool too, so these tests look at what a
client receives, not at secd's own parsing.
"""

import os
import re
import shutil
import stat
import base64
import subprocess
import time
import unittest

from secdtest import (EXIT_SUCCESS, NOBODY_UID, RawVarlink, SecdTestCase, TIMEOUT, VarlinkError,
                      run_as, sha256sum, wait_until)

CERTTOOL = shutil.which("certtool") or "/usr/bin/certtool"
PYTHON_EXE = os.path.realpath("/usr/bin/python3")


def certtool(*args, input=None):
    cp = subprocess.run([CERTTOOL, *args], capture_output=True, text=True, input=input, timeout=TIMEOUT)
    if cp.returncode != 0:
        raise AssertionError(f"certtool {' '.join(args)} failed: {cp.stderr}")
    return cp.stdout


def issue(path, csr):
    """Enroll.Issue from this process (runs in any process); returns the reply or the error."""
    with RawVarlink(path) as v:
        try:
            return {"ok": v.call("io.secd.Enroll.Issue", {"csr": csr})}
        except VarlinkError as e:
            return {"error": e.error, "parameters": e.parameters}


class EnrollTest(SecdTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if not os.access(CERTTOOL, os.X_OK):
            raise unittest.SkipTest("certtool (gnutls-bin) is not installed")

    def setUp(self):
        super().setUp()
        self.template = self.path("csr.cfg")
        with open(self.template, "w") as f:
            f.write('cn = "ignored"\ndns_name = "evil.example"\nca\ntls_www_server\n')

    def start(self, *extra):
        d = self.secd_dev(extra_args=list(extra))
        for p in (os.path.dirname(d.runtime_dir), d.runtime_dir):
            os.chmod(p, 0o755)
        self.addCleanup(lambda: d.alive() and d.stop())
        return d

    def csr(self, key_type="ed25519", name="client"):
        key = self.path(f"{name}.key")
        req = self.path(f"{name}.csr")
        args = ["--generate-privkey", "--key-type", key_type, "--outfile", key]
        if key_type == "rsa":
            args += ["--bits", "2048"]
        certtool(*args)
        certtool("--generate-request", "--load-privkey", key, "--template", self.template, "--outfile", req)
        with open(req) as f:
            text = f.read()
        os.chmod(req, 0o644)
        return text

    def test_issue_allowed(self):
        d = self.start()
        csr = self.csr()
        r = issue(d.enroll, csr)
        self.assertIn("ok", r, r)
        reply = r["ok"]
        self.assertEqual(set(reply), {"certificate", "ca", "expires"})
        self.assertRegex(reply["expires"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        crt, ca = self.path("client.crt"), self.path("ca.crt")
        with open(crt, "w") as f:
            f.write(reply["certificate"])
        with open(ca, "w") as f:
            f.write(reply["ca"])
        out = certtool("--verify", "--load-ca-certificate", ca, "--infile", crt)
        self.assertIn("Verified", out)
        # The CA handed out is the one in the state directory.
        with open(os.path.join(d.state_dir, "ca.crt")) as f:
            self.assertEqual(f.read(), reply["ca"])

        info = certtool("-i", "--infile", crt)
        sha = sha256sum(PYTHON_EXE).split()[0].decode()
        uris = re.findall(r"URI: (\S+)", info)
        self.assertEqual(uris, [f"secd://local/uid/{os.getuid()}/sha256/{sha}"], info)
        # Only what secd decides: the CSR's CN, DNS name, CA flag and server purpose are gone.
        self.assertIn(f"Subject: CN=uid {os.getuid()}", info)
        self.assertNotIn("evil.example", info)
        self.assertIn("Certificate Authority (CA): FALSE", info)
        self.assertIn("TLS WWW Client", info)
        self.assertNotIn("TLS WWW Server", info)
        serial = re.search(r"Serial Number \(hex\): ([0-9a-f]+)", info).group(1)
        self.assertEqual(len(serial), 32, info)
        # Valid for the default hour.
        left = time.mktime(time.strptime(reply["expires"], "%Y-%m-%dT%H:%M:%SZ")) - time.mktime(time.gmtime())
        self.assertTrue(3500 < left <= 3600, left)

        # Recorded and audited (the audit row is written off the loop: it lands a moment later).
        def enroll_entries():
            audit = self.secctl_json("audit", "--limit", "50")
            entries = audit["entries"] if isinstance(audit, dict) else audit
            return [e for e in entries if e["kind"] == "enroll"]
        enrolls = wait_until(enroll_entries, what="the enroll audit entry")
        self.assertEqual(len(enrolls), 1, enrolls)
        self.assertEqual(enrolls[0]["fields"]["serial"], serial)
        self.assertEqual(enrolls[0]["fields"]["sha256"], sha)

        # ECDSA P-256 is accepted too.
        r = issue(d.enroll, self.csr("ecdsa", "p256"))
        self.assertIn("ok", r, r)

    def test_other_uid_not_admitted(self):
        d = self.start()
        csr = self.csr()
        r = run_as(NOBODY_UID, issue, d.enroll, csr)
        self.assertEqual(r.get("error"), "io.secd.Enroll.NotAdmitted", r)
        self.assertEqual(r["parameters"], {"reason": "policy"})

    def test_bad_requests(self):
        d = self.start()
        for csr in ("", "garbage", "-----BEGIN NEW CERTIFICATE REQUEST-----\nAAAA\n"
                                   "-----END NEW CERTIFICATE REQUEST-----\n"):
            r = issue(d.enroll, csr)
            self.assertEqual(r.get("error"), "io.secd.Enroll.InvalidRequest", (csr, r))
        # A key type secd does not accept.
        r = issue(d.enroll, self.csr("rsa", "rsa"))
        self.assertEqual(r.get("error"), "io.secd.Enroll.InvalidRequest", r)
        # A broken self-signature: flip a byte of the signature at the end of the DER.
        good = self.csr("ed25519", "flip")
        der = subprocess.run(["/usr/bin/openssl", "req", "-outform", "DER"], input=good.encode(),
                             capture_output=True, timeout=TIMEOUT)
        if der.returncode == 0 and der.stdout:
            raw = bytearray(der.stdout)
            raw[-1] ^= 1
            b64 = base64.encodebytes(bytes(raw)).decode()
            bad = f"-----BEGIN CERTIFICATE REQUEST-----\n{b64}-----END CERTIFICATE REQUEST-----\n"
            r = issue(d.enroll, bad)
            self.assertEqual(r.get("error"), "io.secd.Enroll.InvalidRequest", r)
        # Larger than a CSR can be (16 KiB), though within the Varlink message limit.
        r = issue(d.enroll, good + "\n" * (20 * 1024))
        self.assertEqual(r.get("error"), "io.secd.Enroll.InvalidRequest", r)
        # Missing parameter.
        with RawVarlink(d.enroll) as v:
            with self.assertRaises(VarlinkError) as cm:
                v.call("io.secd.Enroll.Issue", {})
            self.assertEqual(cm.exception.error, "org.varlink.service.InvalidParameter")
        # secd still serves.
        self.assertIn("ok", issue(d.enroll, good))

    def test_rate_limited(self):
        d = self.start("--enroll-rate-limit", "3", "--enroll-rate-interval", "1h")
        csr = self.csr()
        for _ in range(3):
            self.assertIn("ok", issue(d.enroll, csr))
        r = issue(d.enroll, csr)
        self.assertEqual(r.get("error"), "io.secd.Enroll.RateLimited", r)
        retry = r["parameters"]["retry_after_usec"]
        self.assertTrue(0 < retry <= 3600 * 10**6, retry)
        # Per uid: another user is not affected by root's count (and is refused by policy instead).
        r = run_as(NOBODY_UID, issue, d.enroll, csr)
        self.assertEqual(r.get("error"), "io.secd.Enroll.NotAdmitted", r)

    def test_interfaces(self):
        d = self.start()
        with RawVarlink(d.enroll) as v:
            info = v.call("org.varlink.service.GetInfo")
            self.assertEqual(sorted(info["interfaces"]), ["io.secd.Enroll", "org.varlink.service"])
            desc = v.call("org.varlink.service.GetInterfaceDescription", {"interface": "io.secd.Enroll"})
            self.assertIn("interface io.secd.Enroll", desc["description"])
            with self.assertRaises(VarlinkError) as cm:
                v.call("org.varlink.service.GetInterfaceDescription", {"interface": "io.secd.Policy"})
            self.assertEqual(cm.exception.error, "org.varlink.service.InterfaceNotFound")
            with self.assertRaises(VarlinkError) as cm:
                v.call("io.secd.Policy.List")
            self.assertEqual(cm.exception.error, "org.varlink.service.InterfaceNotFound")
        with RawVarlink(d.control) as v:
            info = v.call("org.varlink.service.GetInfo")
            self.assertNotIn("io.secd.Enroll", info["interfaces"])

    def test_reload_keeps_the_ca(self):
        d = self.start()
        csr = self.csr()
        first = issue(d.enroll, csr)["ok"]["ca"]
        d.reload()
        r = issue(d.enroll, csr)
        self.assertIn("ok", r, r)
        self.assertEqual(r["ok"]["ca"], first)

    def test_ca_files(self):
        d = self.start()
        key, crt = os.path.join(d.state_dir, "ca.key"), os.path.join(d.state_dir, "ca.crt")
        self.assertEqual(stat.S_IMODE(os.stat(key).st_mode), 0o600)
        with open(crt) as f:
            first = f.read()
        d.stop()
        # Loaded, not remade, on the next start.
        d.start()
        with open(crt) as f:
            self.assertEqual(f.read(), first)
        d.stop()
        # A key that others may read is refused, with a message that says so.
        os.chmod(key, 0o640)
        out = self.secd_expect_start_failure(["--dev", "--state-dir", d.state_dir,
                                              "--runtime-dir", self.path("run2")])
        self.assertIn("ca.key", out)
        self.assertIn("0640", out)


if __name__ == "__main__":
    unittest.main()
