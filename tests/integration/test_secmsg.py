#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""secmsg(1) between two users (root and nobody) through a real secd (issue 5).

id creates a private identity (home 0700, identity 0600, seed never
printed); send exits 0 only after the durable ack; recv writes the exact
bytes in order and acknowledges them; keys publish/count/bundle, with the
bundle's one-time pre-key matching a private key kept in the home; the
documented exit statuses for a missing mailbox, a bad address, a busy
mailbox and someone else's mailbox.
"""

import json
import os
import shutil
import stat
import subprocess
import time
import unittest

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

from secdtest import NOBODY_GID, NOBODY_UID, TIMEOUT, base_env, sanitizer_report, sha256_file
import mtlstest as mt
from mtlstest import RelayTestCase


class SecmsgTest(RelayTestCase):

    def setUp(self):
        super().setUp()
        if not (mt.SECMSG and os.access(mt.SECMSG, os.X_OK)):
            if mt.source_has("secmsg/secmsg.c"):
                self.fail("secmsg/secmsg.c is in the tree but SECMSG does not name a built secmsg")
            self.skipTest("secmsg is not built yet")
        self.secmsg_exe = self.path("bin", "secmsg")
        shutil.copy(mt.SECMSG, self.secmsg_exe)
        os.chmod(self.secmsg_exe, 0o755)
        self.add_rule("allow", "--uid", str(NOBODY_UID), "--sha256", sha256_file(self.secmsg_exe))
        # nobody's $HOME; secmsg makes its home below it.
        self.nobody_home = self.path("nobody")
        os.mkdir(self.nobody_home, 0o755)
        os.chown(self.nobody_home, NOBODY_UID, NOBODY_GID)
        self.bob = os.path.join(self.nobody_home, "secmsg")
        os.mkdir(self.path("root-home"), 0o700)
        self.alice = self.path("root-home", "secmsg")

    def secmsg(self, *args, uid=None, home=None, stdin=b"", expect=None, env=None):
        e = base_env({"SECD_SOCKET": self.d.data, "SECD_ENROLL_SOCKET": self.d.enroll,
                      "HOME": self.nobody_home if uid == NOBODY_UID else self.path("root-home"),
                      **(env or {})})
        e.pop("SECMSG_HOME", None)
        e.pop("XDG_DATA_HOME", None)
        argv = [self.secmsg_exe, *(["--home", home] if home else []), *args]
        kw = {}
        if uid is not None:
            kw.update(user=uid, group=uid, extra_groups=[])
        cp = subprocess.run(argv, input=stdin, capture_output=True, env=e, cwd="/", timeout=TIMEOUT, **kw)
        err = cp.stderr.decode(errors="replace")
        report = sanitizer_report(err)
        if report:
            self.fail(f"secmsg {' '.join(args)}: sanitizer report:\n{report}")
        if expect is not None:
            self.assertEqual(cp.returncode, expect,
                             f"secmsg {' '.join(args)} (uid {uid}): exit {cp.returncode}\n"
                             f"stdout: {cp.stdout[:500]!r}\nstderr: {err}")
        return cp

    def address(self, uid=None, home=None):
        cp = self.secmsg("id", uid=uid, home=home, expect=0)
        addr = cp.stdout.decode().strip()
        self.assertRegex(addr, r"^[0-9a-f]{64}$")
        return addr

    def test_two_users_exchange_messages(self):
        bob = self.address(uid=NOBODY_UID, home=self.bob)
        self.assertEqual(self.address(uid=NOBODY_UID, home=self.bob), bob, "id is not stable")
        # The home and the identity are private, owned by the user, and the seed never shows.
        st = os.stat(self.bob)
        self.assertEqual((stat.S_IMODE(st.st_mode), st.st_uid), (0o700, NOBODY_UID))
        ident = os.path.join(self.bob, "identity")
        st = os.stat(ident)
        self.assertEqual((stat.S_IMODE(st.st_mode), st.st_uid, st.st_size), (0o600, NOBODY_UID, 32))
        with open(ident, "rb") as f:
            seed = f.read()
        pub = ed25519.Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.assertEqual(pub.hex(), bob, "the address is not the identity's public key")

        # bob's mailbox exists once he receives; sending before that is "no such mailbox".
        alice = self.address(home=self.alice)
        self.secmsg("send", "--to", bob, home=self.alice, stdin=b"too early", expect=5)
        cp = self.secmsg("recv", uid=NOBODY_UID, home=self.bob, expect=0)
        self.assertEqual(cp.stdout, b"")

        msg1 = bytes(range(256)) * 3 + b"\n\x00end"
        path = self.path("msg1")
        with open(path, "wb") as f:
            f.write(msg1)
        ids = []
        for args, data in ((["send", "--to", bob, path], None), (["send", "--to", bob], b"second\n"),
                           (["send", "--to", bob, "-"], b"3")):
            cp = self.secmsg(*args, home=self.alice, stdin=data or b"", expect=0)
            ids.append(int(cp.stdout.decode().strip()))
        self.assertEqual(ids, sorted(ids))
        for out in (seed.hex(), seed.hex().upper()):
            self.assertNotIn(out.encode(), cp.stdout + cp.stderr)

        cp = self.secmsg("recv", "--max", "1", uid=NOBODY_UID, home=self.bob, expect=0)
        self.assertEqual(cp.stdout, msg1)
        cp = self.secmsg("recv", "--wait", "2", uid=NOBODY_UID, home=self.bob, expect=0)
        self.assertEqual(cp.stdout, b"second\n3")
        cp = self.secmsg("recv", uid=NOBODY_UID, home=self.bob, expect=0)
        self.assertEqual(cp.stdout, b"", "acknowledged messages came again")

        # The other direction, with the options instead of the environment.
        self.secmsg("recv", home=self.alice, expect=0)
        self.secmsg("--socket", self.d.data, "--enroll-socket", self.d.enroll, "send", "--to", alice,
                    uid=NOBODY_UID, home=self.bob, stdin=b"hi alice", env={"SECD_SOCKET": "/nonexistent"},
                    expect=0)
        cp = self.secmsg("recv", "--wait", "5", "--max", "1", home=self.alice, expect=0)
        self.assertEqual(cp.stdout, b"hi alice")

    def test_recv_acknowledges_only_what_reached_stdout(self):
        bob = self.address(uid=NOBODY_UID, home=self.bob)
        self.address(home=self.alice)
        self.secmsg("recv", uid=NOBODY_UID, home=self.bob, expect=0)
        self.secmsg("send", "--to", bob, home=self.alice, stdin=b"keep me", expect=0)
        e = base_env({"SECD_SOCKET": self.d.data, "SECD_ENROLL_SOCKET": self.d.enroll, "HOME": self.nobody_home})
        with open("/dev/full", "wb") as full:
            cp = subprocess.run([self.secmsg_exe, "--home", self.bob, "recv"], stdout=full, stderr=subprocess.PIPE,
                                env=e, cwd="/", timeout=TIMEOUT, user=NOBODY_UID, group=NOBODY_GID,
                                extra_groups=[])
        self.assertNotEqual(cp.returncode, 0, "recv into a full disk claimed success")
        self.assertIsNone(sanitizer_report(cp.stderr.decode(errors="replace")))
        cp = self.secmsg("recv", uid=NOBODY_UID, home=self.bob, expect=0)
        self.assertEqual(cp.stdout, b"keep me", "a message that never reached stdout was acknowledged")

    def test_recv_wait_wakes_on_send_and_bundle_without_one_time_keys(self):
        bob = self.address(uid=NOBODY_UID, home=self.bob)
        self.address(home=self.alice)
        self.secmsg("recv", uid=NOBODY_UID, home=self.bob, expect=0)
        e = base_env({"SECD_SOCKET": self.d.data, "SECD_ENROLL_SOCKET": self.d.enroll, "HOME": self.nobody_home})
        waiter = subprocess.Popen([self.secmsg_exe, "--home", self.bob, "recv", "--wait", "20", "--max", "1"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e, cwd="/", user=NOBODY_UID,
                                  group=NOBODY_GID, extra_groups=[])
        self.addCleanup(lambda: waiter.poll() is None and (waiter.kill(), waiter.wait()))
        time.sleep(0.5)
        t0 = time.monotonic()
        self.secmsg("send", "--to", bob, home=self.alice, stdin=b"wake up", expect=0)
        out, err = waiter.communicate(timeout=TIMEOUT)
        self.assertLess(time.monotonic() - t0, 10, "recv --wait did not wake on the send")
        self.assertEqual((waiter.returncode, out), (0, b"wake up"), err)

        self.assertEqual(self.secmsg("keys", "publish", "--count", "0", uid=NOBODY_UID, home=self.bob,
                                     expect=0).stdout.strip(), b"0")
        doc = json.loads(self.secmsg("keys", "bundle", bob, "--json", home=self.alice, expect=0).stdout)
        self.assertEqual((doc["identity_key"], doc["one_time_prekey_id"], doc["one_time_prekey"]), (bob, None, None))
        cp = self.secmsg("keys", "bundle", bob, home=self.alice, expect=0)
        self.assertNotIn(b"one_time", cp.stdout)
        self.assertTrue(cp.stderr.strip(), "no note that the bundle has no one-time pre-key")

    def test_hostile_identity_files_are_refused_with_a_reason(self):
        cases = {
            "symlink": lambda p: os.symlink("/etc/passwd", p),
            "short": lambda p: open(os.open(p, os.O_WRONLY | os.O_CREAT, 0o600), "wb").write(os.urandom(31)),
            "readable": lambda p: (open(os.open(p, os.O_WRONLY | os.O_CREAT, 0o600), "wb").write(os.urandom(32)),
                                   os.chmod(p, 0o644)),
            "fifo": lambda p: os.mkfifo(p, 0o600),
        }
        for name, make in cases.items():
            home = self.path(f"home-{name}")
            os.mkdir(home, 0o700)
            make(os.path.join(home, "identity"))
            cp = self.secmsg("id", home=home)
            self.assertNotEqual(cp.returncode, 0, f"{name} identity accepted: {cp.stdout!r}")
            self.assertEqual(cp.stdout, b"", f"{name} identity: something printed")
            self.assertIn(b"secmsg: ", cp.stderr, f"{name} identity refused without a reason (exit {cp.returncode})")

    def test_stale_temporary_files_are_removed(self):
        # A secmsg killed between writing a secret to a temporary file and renaming it
        # leaves the secret behind: the next run deletes old ones, never young ones
        # (another secmsg may be about to rename its own).
        home = self.path("home-tmp")
        os.mkdir(home, 0o700)
        stale = os.path.join(home, ".identity.0badc0de.tmp")
        young = os.path.join(home, ".prekeys.12345678.tmp")
        for p in (stale, young):
            with open(os.open(p, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
                f.write(os.urandom(32))
        old = time.time() - 3600
        os.utime(stale, (old, old))
        self.address(home=home)
        self.assertFalse(os.path.exists(stale), "a stale temporary file with a secret was left")
        self.assertTrue(os.path.exists(young), "a young temporary file was deleted")

    def test_keys_publish_count_bundle(self):
        bob = self.address(uid=NOBODY_UID, home=self.bob)
        self.address(home=self.alice)
        self.secmsg("keys", "bundle", bob, home=self.alice, expect=5)
        cp = self.secmsg("keys", "publish", "--count", "5", uid=NOBODY_UID, home=self.bob, expect=0)
        self.assertEqual(cp.stdout.decode().strip(), "5")
        self.assertEqual(self.secmsg("keys", "count", uid=NOBODY_UID, home=self.bob,
                                     expect=0).stdout.decode().strip(), "5")
        cp = self.secmsg("keys", "bundle", bob, "--json", home=self.alice, expect=0)
        b = json.loads(cp.stdout)
        self.assertEqual(b["identity_key"], bob)
        self.assertIsNotNone(b["one_time_prekey_id"], b)
        self.assertEqual(self.secmsg("keys", "count", uid=NOBODY_UID, home=self.bob,
                                     expect=0).stdout.decode().strip(), "4")
        # The one-time pre-key handed out is one whose private part bob kept.
        prekeys = os.path.join(self.bob, "prekeys")
        st = os.stat(prekeys)
        self.assertEqual((stat.S_IMODE(st.st_mode), st.st_uid), (0o600, NOBODY_UID))
        kept = {}
        with open(prekeys) as f:
            for line in f:
                kind, kid, hexkey = line.split()
                kept[(kind, int(kid))] = bytes.fromhex(hexkey)

        def public(priv):
            return x25519.X25519PrivateKey.from_private_bytes(priv).public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()
        self.assertEqual(public(kept[("otk", b["one_time_prekey_id"])]), b["one_time_prekey"])
        self.assertEqual(public(kept[("spk", b["signed_prekey_id"])]), b["signed_prekey"])
        # Republishing keeps the newest 3 signed pre-keys' private parts, and the current one works.
        for _ in range(3):
            self.secmsg("keys", "publish", "--count", "2", uid=NOBODY_UID, home=self.bob, expect=0)
        with open(prekeys) as f:
            kinds = [line.split()[0] for line in f]
        self.assertEqual(kinds.count("spk"), 3, kinds)
        b2 = json.loads(self.secmsg("keys", "bundle", bob, "--json", home=self.alice, expect=0).stdout)
        with open(prekeys) as f:
            kept = {(k, int(i)): bytes.fromhex(h) for k, i, h in (line.split() for line in f)}
        self.assertEqual(public(kept[("spk", b2["signed_prekey_id"])]), b2["signed_prekey"])
        self.assertEqual(public(kept[("otk", b2["one_time_prekey_id"])]), b2["one_time_prekey"])
        # Human output: one "name value" per line.
        cp = self.secmsg("keys", "bundle", bob, home=self.alice, expect=0)
        fields = dict(line.split(" ", 1) for line in cp.stdout.decode().splitlines())
        self.assertEqual(fields["identity_key"], bob)
        self.assertNotEqual(int(fields["one_time_prekey_id"]), b2["one_time_prekey_id"])

    def test_exit_statuses(self):
        bob = self.address(uid=NOBODY_UID, home=self.bob)
        self.secmsg("send", "--to", bob[:-1], home=self.alice, stdin=b"x", expect=2)
        self.secmsg("send", "--to", bob.upper(), home=self.alice, stdin=b"x", expect=2)
        self.secmsg("frobnicate", home=self.alice, expect=2)
        # A home others can read is refused.
        loose = self.path("loose")
        os.mkdir(loose, 0o755)
        cp = self.secmsg("id", home=loose)
        self.assertNotEqual(cp.returncode, 0, "secmsg used a home directory others can read")
        self.assertFalse(os.path.exists(os.path.join(loose, "identity")))
        # Someone else's mailbox: root with a copy of bob's identity is not its owner.
        self.secmsg("recv", uid=NOBODY_UID, home=self.bob, expect=0)
        thief = self.path("thief")
        os.mkdir(thief, 0o700)
        shutil.copy(os.path.join(self.bob, "identity"), os.path.join(thief, "identity"))
        os.chmod(os.path.join(thief, "identity"), 0o600)
        self.secmsg("recv", home=thief, expect=3)
        # A busy mailbox: another consumer holds it.
        self.allow_nobody()
        holder = self.tool(uid=NOBODY_UID, name="holder")
        holder.cmd(f"register @{os.path.join(self.bob, 'identity')}", ok=True)
        self.secmsg("recv", uid=NOBODY_UID, home=self.bob, expect=6)
        holder.close()
        # Nobody listening.
        self.secmsg("id", home=self.alice, expect=0)
        self.secmsg("recv", home=self.alice, env={"SECD_SOCKET": self.path("no.sock")}, expect=4)


if __name__ == "__main__":
    unittest.main()
