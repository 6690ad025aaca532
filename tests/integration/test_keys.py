#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The X3DH pre-key server with real processes (issue 5).

KEYS_PUBLISH by the registered owner, KEYS_BUNDLE hands out the lowest
one-time pre-key exactly once (also under many concurrent fetches) and
then none (has_otk 0), KEYS_COUNT goes down exactly; a bad signature in
any signed field stores nothing; bundle fetches are rate-limited per
requester and per target; malformed and truncated payloads get
BAD_PAYLOAD on a connection that keeps serving; `secctl keys stats`.
"""

import struct
import unittest

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

import mtlstest as mt
from secdtest import NOBODY_UID
from mtlstest import (ERR_BAD_PAYLOAD, ERR_BAD_SIGNATURE, ERR_NO_KEYS, ERR_NO_SUCH_MAILBOX,
                      ERR_NOT_REGISTERED, ERR_RATE_LIMITED, KEYS_BUNDLE, KEYS_COUNT, KEYS_PUBLISH, PING,
                      RelayTestCase)


def parse_bundle(p):
    """A KEYS_BUNDLE reply (docs/protocol.md) as a dict; asserts its exact length."""
    assert len(p) in (229, 265), f"bundle reply of {len(p)} bytes"
    b = {"identity_key": p[0:32], "identity_dh": p[32:64], "identity_dh_sig": p[64:128],
         "spk_id": struct.unpack(">I", p[128:132])[0], "spk": p[132:164], "spk_sig": p[164:228],
         "has_otk": p[228]}
    assert b["has_otk"] in (0, 1) and len(p) == 229 + 36 * b["has_otk"], p.hex()
    if b["has_otk"]:
        b["otk_id"] = struct.unpack(">I", p[229:233])[0]
        b["otk"] = p[233:265]
    return b


class KeysTestCase(RelayTestCase):
    relay_sources = ("secd/keys.c",)
    relay_probe = KEYS_COUNT
    secd_extra_args = ("--keys-bundle-rate", "off", "--keys-bundle-target-rate", "off",
                       "--keys-bundle-mailbox-rate", "off")

    def owner(self, name="alice"):
        ident = self.identity(name)
        t = self.tool(name=name)
        t.cmd(f"register {ident.arg}", ok=True)
        return ident, t

    def count(self, t):
        return t.cmd("count", ok=True)["count"]


class KeysTest(KeysTestCase):

    def test_publish_bundle_count(self):
        alice, a = self.owner()
        pub = a.cmd("publish 5 7 100", ok=True)
        self.assertEqual(pub["stored"], 5)
        self.assertEqual(self.count(a), 5)

        b = self.tool(name="requester")
        out = b.cmd(f"bundle {alice.hex}", ok=True)
        self.assertEqual((out["identity_key"], out["identity_dh"], out["spk_id"], out["spk"]),
                         (alice.hex, pub["identity_dh"], 7, pub["spk"]))
        self.assertEqual((out["has_otk"], out["otk_id"], out["otk"]), (True, 100, pub["otks"][0]["key"]))
        self.assertEqual(self.count(a), 4)

        # The raw reply, and its signatures checked here too (the library checked them already).
        raw = b.cmd(f"raw {KEYS_BUNDLE} {alice.hex}")
        bd = parse_bundle(self.assert_reply(raw, KEYS_BUNDLE))
        key = ed25519.Ed25519PublicKey.from_public_bytes(alice.pub)
        try:
            key.verify(bd["identity_dh_sig"], mt.DOMAIN_IDENTITY_DH + bd["identity_dh"])
            key.verify(bd["spk_sig"], mt.DOMAIN_SIGNED_PREKEY + struct.pack(">I", bd["spk_id"]) + bd["spk"])
        except InvalidSignature:
            self.fail(f"secd handed out a bundle whose signatures do not verify: {raw}")
        self.assertEqual((bd["has_otk"], bd["otk_id"], bd["otk"].hex()), (1, 101, pub["otks"][1]["key"]))
        self.assertEqual(self.count(a), 3)

        # A new publish replaces the whole set.
        pub2 = a.cmd("publish 2 8 500", ok=True)
        self.assertEqual(self.count(a), 2)
        out = b.cmd(f"bundle {alice.hex}", ok=True)
        self.assertEqual((out["spk_id"], out["spk"], out["otk_id"]), (8, pub2["spk"], 500))

    def test_exhausted_bundle_has_no_one_time_prekey(self):
        alice, a = self.owner()
        a.cmd("publish 1 3 9", ok=True)
        b = self.tool(name="requester")
        self.assertEqual(b.cmd(f"bundle {alice.hex}", ok=True)["otk_id"], 9)
        out = b.cmd(f"bundle {alice.hex}", ok=True)
        self.assertEqual((out["has_otk"], out["spk_id"]), (False, 3))
        bd = parse_bundle(self.assert_reply(b.cmd(f"raw {KEYS_BUNDLE} {alice.hex}"), KEYS_BUNDLE))
        self.assertEqual(bd["has_otk"], 0)
        self.assertEqual(self.count(a), 0)
        # Publishing with no one-time pre-keys at all is valid too.
        self.assertEqual(a.cmd("publish 0 4 0", ok=True)["stored"], 0)
        self.assertEqual(b.cmd(f"bundle {alice.hex}", ok=True)["spk_id"], 4)

    def test_concurrent_bundles_never_share_a_one_time_prekey(self):
        alice, a = self.owner()
        self.assertEqual(a.cmd("publish 100 1 1", ok=True)["stored"], 100)
        b = self.tool(name="requesters")
        out = b.cmd(f"bundles {alice.hex} 8 15", timeout=60)
        self.assertTrue(out["ok"], out)
        self.assertEqual(out["errors"], {}, out)
        ids = out["otk_ids"]
        dups = sorted({i for i in ids if ids.count(i) > 1})
        self.assertEqual(dups, [], "the same one-time pre-key was handed out twice")
        self.assertEqual(sorted(ids), list(range(1, 101)))
        self.assertEqual(out["no_otk"], 20)
        self.assertEqual(self.count(a), 0)

    def test_bad_signatures_store_nothing(self):
        alice, a = self.owner()
        pub = a.cmd("publish 3 7 10", ok=True)
        for field in ("identity_dh_sig", "spk_sig", "identity_dh", "spk", "spk_id", "signer", "domain"):
            out = a.cmd(f"publish-bad {field} 5")
            self.assert_code(out, ERR_BAD_SIGNATURE, f"KEYS_PUBLISH with a bad {field}")
            self.assertEqual(self.count(a), 3, f"a publish with a bad {field} changed the stored set")
        b = self.tool(name="requester")
        out = b.cmd(f"bundle {alice.hex}", ok=True)
        self.assertEqual((out["identity_dh"], out["spk_id"], out["spk"], out["otk_id"]),
                         (pub["identity_dh"], 7, pub["spk"], 10))
        # Control: the same hand-built payload, unspoiled, is accepted.
        out = a.cmd("publish-bad none 5")
        self.assertEqual(self.assert_reply(out, KEYS_PUBLISH), struct.pack(">H", 5))
        self.assertEqual(self.count(a), 5)

    def test_errors_before_register_and_for_unknown_mailboxes(self):
        alice, nobody_home = self.identity("alice"), self.identity("stranger")
        t = self.tool()
        self.assert_code(t.cmd(f"raw {KEYS_COUNT} -"), ERR_NOT_REGISTERED, "KEYS_COUNT unregistered")
        self.assert_code(t.cmd(f"raw {KEYS_PUBLISH} {mt.publish_payload(alice).hex()}"), ERR_NOT_REGISTERED,
                         "KEYS_PUBLISH unregistered")
        self.assert_code(t.cmd(f"raw {KEYS_BUNDLE} {nobody_home.hex}"), ERR_NO_SUCH_MAILBOX,
                         "KEYS_BUNDLE of a key nobody registered")
        t.cmd(f"register {alice.arg}", ok=True)
        self.assert_code(t.cmd(f"raw {KEYS_BUNDLE} {alice.hex}"), ERR_NO_KEYS, "KEYS_BUNDLE before a publish")
        self.assertEqual(t.cmd(f"bundle {alice.hex}", ok=False)["error"], "ENODATA")
        self.assertEqual(self.count(t), 0)
        # Now the Python-built payload (signed here with cryptography) is accepted.
        out = t.cmd(f"raw {KEYS_PUBLISH} {mt.publish_payload(alice, n_otks=4).hex()}")
        self.assertEqual(self.assert_reply(out, KEYS_PUBLISH), struct.pack(">H", 4))

    def test_malformed_and_truncated_keys_payloads(self):
        alice, a = self.owner()
        a.cmd("publish 2 7 10", ok=True)

        def bad(ftype, payload, what):
            out = a.cmd(f"raw {ftype} {payload.hex() or '-'}")
            self.assert_code(out, ERR_BAD_PAYLOAD, f"{what} ({len(payload)} bytes)")

        good = mt.publish_payload(alice, n_otks=1)
        for n in range(len(good)):
            bad(KEYS_PUBLISH, good[:n], "truncated KEYS_PUBLISH")
        bad(KEYS_PUBLISH, good + b"\x00", "KEYS_PUBLISH with a trailing byte")
        hdr = mt.publish_payload(alice, n_otks=0)[:-2]
        bad(KEYS_PUBLISH, hdr + struct.pack(">H", 2) + struct.pack(">I", 1) + bytes(32), "n=2 with one key")
        bad(KEYS_PUBLISH, hdr + struct.pack(">H", 101) + b"".join(struct.pack(">I", i) + bytes(32)
                                                                  for i in range(101)), "101 one-time keys")
        bad(KEYS_PUBLISH, hdr + struct.pack(">H", 2) + (struct.pack(">I", 5) + bytes(32)) * 2,
            "duplicate one-time key ids")
        for n in list(range(32)) + [33]:
            bad(KEYS_BUNDLE, bytes.fromhex(alice.hex + "00")[:n], "KEYS_BUNDLE")
        for n in (1, 4):
            bad(KEYS_COUNT, bytes(n), "KEYS_COUNT with a payload")
        out = a.cmd(f"raw {PING} 6f6b")
        self.assertEqual((out.get("type"), out.get("payload")), (0x81, "6f6b"), out)
        self.assertEqual(self.count(a), 2, "a malformed request changed the stored keys")


class KeysRateTest(KeysTestCase):
    secd_extra_args = ("--keys-bundle-rate", "1/min", "--keys-bundle-burst", "8",
                       "--keys-bundle-target-rate", "1/min", "--keys-bundle-target-burst", "5")

    def test_bundle_rate_limits_per_target_and_requester(self):
        alice, a = self.owner("alice")
        bob, b = self.owner("bob")
        a.cmd("publish 20 1 1", ok=True)
        b.cmd("publish 20 1 1", ok=True)
        r = self.tool(name="requester")
        for _ in range(5):
            r.cmd(f"bundle {alice.hex}", ok=True)
        self.assert_code(r.cmd(f"raw {KEYS_BUNDLE} {alice.hex}"), ERR_RATE_LIMITED, "6th bundle of one target")
        self.assertEqual(r.cmd(f"bundle {alice.hex}", ok=False)["error"], "EAGAIN")
        self.assertEqual(self.count(a), 15, "refused bundle fetches consumed one-time pre-keys")
        # Another target: the requester's own budget (8) is what is left: 3 more.
        for _ in range(3):
            r.cmd(f"bundle {bob.hex}", ok=True)
        self.assert_code(r.cmd(f"raw {KEYS_BUNDLE} {bob.hex}"), ERR_RATE_LIMITED, "9th bundle of one requester")
        self.assertEqual(self.count(b), 17)


class KeysMailboxRateTest(KeysTestCase):
    secd_extra_args = ("--keys-bundle-rate", "off", "--keys-bundle-target-rate", "1/min",
                       "--keys-bundle-target-burst", "3", "--keys-bundle-mailbox-rate", "1/min",
                       "--keys-bundle-mailbox-burst", "4")

    def test_many_requesters_together_cannot_drain_a_mailbox(self):
        # Each requester stays within its own per-target limit (3); together they hit the
        # mailbox's total (4), and a refused request takes no one-time pre-key.
        self.allow_nobody()
        alice, a = self.owner("alice")
        a.cmd("publish 20 1 1", ok=True)
        r1, r2 = self.tool(name="root-requester"), self.tool(uid=NOBODY_UID, name="nobody-requester")
        for _ in range(3):
            r1.cmd(f"bundle {alice.hex}", ok=True)
        r2.cmd(f"bundle {alice.hex}", ok=True)
        self.assert_code(r2.cmd(f"raw {KEYS_BUNDLE} {alice.hex}"), ERR_RATE_LIMITED,
                         "a 5th bundle of one mailbox from a second requester")
        self.assertEqual(self.count(a), 16, "refused bundle fetches consumed one-time pre-keys")
        # Another mailbox is not limited by this one's total.
        bob, b = self.owner("bob")
        b.cmd("publish 5 1 1", ok=True)
        r2.cmd(f"bundle {bob.hex}", ok=True)


class KeysDefaultRateTest(KeysTestCase):
    """With the shipped defaults, one requester cannot drain a mailbox's one-time pre-keys."""
    secd_extra_args = ()

    def test_default_limits_stop_a_drain(self):
        alice, a = self.owner("alice")
        a.cmd("publish 100 1 1", ok=True)
        r = self.tool(name="drainer")
        served = 0
        for _ in range(20):
            out = r.cmd(f"bundle {alice.hex}")
            if not out["ok"]:
                self.assertEqual(out["error"], "EAGAIN", out)
                break
            served += 1
        self.assertLess(served, 20, "20 bundles of one target in a row were all served")
        self.assertEqual(self.count(a), 100 - served)
        out = r.cmd(f"raw {KEYS_BUNDLE} {alice.hex}")
        self.assert_code(out, ERR_RATE_LIMITED, "the drain goes on")
        self.assertEqual(self.count(a), 100 - served)


class KeysStatsTest(KeysTestCase):

    def test_secctl_keys_stats(self):
        before = self.relay_stats("keys")
        self.assertEqual((before["published"], before["one_time_prekeys"], before["exhausted"]), (0, 0, 0), before)
        alice, a = self.owner("alice")
        bob, b = self.owner("bob")
        a.cmd("publish 3 1 1", ok=True)
        b.cmd("publish 1 1 1", ok=True)
        s = self.relay_stats("keys")
        self.assertEqual((s["published"], s["one_time_prekeys"], s["exhausted"]), (2, 4, 0), s)
        a.cmd(f"bundle {bob.hex}", ok=True)
        a.cmd(f"bundle {bob.hex}", ok=True)          # none left: served without one
        self.assert_code(a.cmd("publish-bad spk_sig 2"), ERR_BAD_SIGNATURE, "a bad publish")
        s = self.relay_stats("keys")
        self.assertEqual((s["published"], s["one_time_prekeys"], s["exhausted"]), (2, 3, 1), s)
        self.assertEqual((s["publishes"] - before["publishes"], s["bundles_served"] - before["bundles_served"],
                          s["bundles_without_one_time"] - before["bundles_without_one_time"]), (2, 2, 1), s)
        refused = {k: v - before["refused"][k] for k, v in s["refused"].items()}
        self.assertEqual({k: v for k, v in refused.items() if v}, {"bad_signature": 1}, s)
        self.assertEqual(self.varlink(self.d).call("io.secd.Status.Get")["keys"], s,
                         "io.secd.Status.Get and secctl keys stats disagree")
        cp = self.secctl("keys", "stats", expect=0)
        self.assertTrue(cp.stdout.strip(), "secctl keys stats printed nothing")
        self.assertIn("bad-signature 1", cp.stdout)


if __name__ == "__main__":
    unittest.main()
