#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The relay with real processes (issue 5): secd, secctl and secd-relay-client.

Two identities exchange messages in order and an ACK removes them (only
in its own mailbox); a REGISTER proof signed by another key, without the
domain string, computed for another TLS session, replayed byte for byte
from one, or "signed" for a small-order key is refused; a second uid or a
remote certificate cannot take or read someone's mailbox; one consumer at
a time, released when its connection closes or dies, one winner when two
race; quotas, rate limits and TTL expiry answer with their errors and lose
nothing; a resend is stored once; FETCH honours its after_id cursor (so
a consumer that has not acknowledged yet waits instead of spinning),
long-polls, is clamped, is BUSY when one already waits, outlives the idle
timeout and is answered on SIGTERM; pipelined requests each get one answer; malformed, truncated and
random payloads of every relay frame get per-request errors on a
connection that keeps serving; a FETCH reply fits one frame; `secctl relay
stats` and io.secd.Status tell the truth; and under systemd-socket-activate
too.

secd-relay-client prints one JSON line per command: library calls report
errno names (libsecclient's mapping: NOT_OWNER -EPERM, MAILBOX_BUSY -EBUSY,
QUOTA_EXCEEDED -EDQUOT, RATE_LIMITED -EAGAIN, NOT_REGISTERED -ENOTCONN,
ALREADY_REGISTERED -EEXIST), raw frames the exact ERROR code.
"""

import os
import socket
import sqlite3
import struct
import time
import unittest

from secdtest import NOBODY_UID, Secd, wait_until
import mtlstest as mt
from mtlstest import (ACK, ERR_ALREADY_REGISTERED, ERR_BAD_PAYLOAD, ERR_BAD_SIGNATURE, ERR_MAILBOX_BUSY,
                      ERR_MESSAGE_TOO_LARGE, ERR_NO_SUCH_MAILBOX, ERR_NOT_OWNER, ERR_NOT_REGISTERED,
                      ERR_QUOTA_EXCEEDED, ERR_RATE_LIMITED, FETCH, KEYS_COUNT, KEYS_PUBLISH, PING,
                      REGISTER, SEND, RelayTestCase)


def cid(n, tag=b"T"):
    return (tag * 8)[:8] + struct.pack(">Q", n)


def send_payload(to_hex, client_id, blob):
    return bytes.fromhex(to_hex) + client_id + blob


def fetch_payload(max_count=100, max_bytes=1 << 20, wait_ms=0, after_id=0):
    return struct.pack(">HIIQ", max_count, max_bytes, wait_ms, after_id)


def fetch_reply_ids(p):
    """The server ids of a FETCH reply payload, checking its layout."""
    n, off, ids = struct.unpack(">H", p[:2])[0], 2, []
    for _ in range(n):
        sid, _, _, length = struct.unpack(">Q16sQI", p[off:off + 36])
        ids.append(sid)
        off += 36 + length
    assert off == len(p), f"FETCH reply of {len(p)} bytes, items end at {off}"
    return ids


def ack_payload(ids):
    return struct.pack(">H", len(ids)) + b"".join(struct.pack(">Q", i) for i in ids)


def blob_of(m):
    """A fetched message's bytes (inline up to 256 bytes) or None."""
    return bytes.fromhex(m["data"]) if "data" in m else None


def same_bytes(m, data):
    import hashlib
    return m["len"] == len(data) and m["sha256"] == hashlib.sha256(data).hexdigest()


class RelayExchangeTest(RelayTestCase):

    def test_two_identities_exchange_messages_in_order_and_ack_removes_them(self):
        alice, bob = self.identity("alice"), self.identity("bob")
        a, b, c = self.tool(name="alice"), self.tool(name="bob"), self.tool(name="carol")
        out = a.cmd(f"register {alice.arg}", ok=True)
        self.assertEqual((out["key"], out["created"]), (alice.hex, True))
        self.assertEqual(b.cmd(f"register {bob.arg}", ok=True)["created"], True)

        # alice -> bob, with carol's message in between: bob sees arrival order.
        to_bob = [(a, cid(1, b"A"), b"hello bob"), (c, cid(1, b"C"), b"from carol"),
                  (a, cid(2, b"A"), mt.fill_pattern(5000)), (a, cid(3, b"A"), b"\x00\xffthird")]
        sids = []
        for tool, i, data in to_bob:
            out = tool.cmd(f"send {bob.hex} {i.hex()} {data.hex()}", ok=True)
            self.assertFalse(out["duplicate"], out)
            sids.append(out["server_id"])
        self.assertEqual(sids, sorted(set(sids)), "server ids do not grow with arrival")
        to_alice = [cid(1, b"B"), cid(2, b"B")]
        for i in to_alice:
            b.cmd(f"send {alice.hex} {i.hex()} {i.hex()}", ok=True)

        got = b.cmd("fetch 100 0 0", ok=True)["messages"]
        self.assertEqual([(m["id"], m["cid"]) for m in got], [(s, i.hex()) for s, (_, i, _) in zip(sids, to_bob)])
        for m, (_, _, data) in zip(got, to_bob):
            self.assertTrue(same_bytes(m, data), f"message {m['id']} changed in transit: {m}")
        now = time.time() * 1e6
        for m in got:
            self.assertLess(abs(m["received_usec"] - now), 120e6, f"received_usec is not CLOCK_REALTIME: {m}")
        got_a = a.cmd("fetch 100 0 0", ok=True)["messages"]
        self.assertEqual([(m["cid"], blob_of(m)) for m in got_a], [(i.hex(), i) for i in to_alice])

        # bob acknowledges; alice does not.
        out = b.cmd("ack " + " ".join(str(m["id"]) for m in got), ok=True)
        self.assertEqual(out["deleted"], len(got))
        self.assertEqual(b.cmd(f"ack {got[0]['id']}", ok=True)["deleted"], 0, "an id deleted twice")
        self.assertEqual(a.cmd(f"ack {got_a[0]['id']} {got_a[0]['id']}", ok=True)["deleted"], 1,
                         "a duplicated id in one ACK counted twice")
        got_a = got_a[1:]
        for t in (a, b, c):
            self.assertEqual(t.close(), 0)

        # Fresh connections: bob's mailbox is empty, alice's still holds both (at-least-once).
        b2, a2 = self.tool(name="bob2"), self.tool(name="alice2")
        self.assertEqual(b2.cmd(f"register {bob.arg}", ok=True)["created"], False)
        self.assertEqual(b2.cmd("fetch 100 0 0", ok=True)["messages"], [])
        a2.cmd(f"register {alice.arg}", ok=True)
        again = a2.cmd("fetch 100 0 0", ok=True)["messages"]
        self.assertEqual([m["id"] for m in again], [m["id"] for m in got_a])

    def test_send_to_unknown_mailbox_and_oversize_blob_are_refused(self):
        t = self.tool()
        bob = self.identity("bob")
        t.cmd(f"register {bob.arg}", ok=True)
        nobody_home = self.identity("unregistered")
        out = t.cmd(f"raw {SEND} {send_payload(nobody_home.hex, cid(1), b'x').hex()}")
        self.assert_code(out, ERR_NO_SUCH_MAILBOX, "SEND to a key nobody registered")
        self.assertEqual(t.cmd(f"send {nobody_home.hex} - 78")["error"], "ENXIO")
        # relay_message_max defaults to 96 KiB: one byte more is refused, exactly that is stored.
        out = t.cmd(f"raw {SEND} {send_payload(bob.hex, cid(2), b'').hex()},fill:{96 * 1024 + 1}")
        self.assert_code(out, ERR_MESSAGE_TOO_LARGE, "a 96 KiB + 1 blob")
        self.assertEqual(t.cmd(f"send {bob.hex} - fill:{96 * 1024 + 1}")["error"], "EMSGSIZE")
        t.cmd(f"send {bob.hex} - fill:{96 * 1024}", ok=True)
        got = t.cmd("fetch 100 0 0", ok=True)["messages"]
        self.assertEqual([m["len"] for m in got], [96 * 1024])
        self.assertTrue(same_bytes(got[0], mt.fill_pattern(96 * 1024)))

    def test_resend_with_the_same_client_id_is_stored_once(self):
        self.allow_nobody()
        bob = self.identity("bob")
        t, other = self.tool(), self.tool(uid=NOBODY_UID, name="nobody")
        t.cmd(f"register {bob.arg}", ok=True)
        i = cid(42, b"R")
        first = t.cmd(f"send {bob.hex} {i.hex()} 6f6e65", ok=True)
        self.assertFalse(first["duplicate"])
        again = t.cmd(f"send {bob.hex} {i.hex()} 6f6e65", ok=True)
        self.assertEqual((again["server_id"], again["duplicate"]), (first["server_id"], True))
        # Raw: the reply carries the same id and the duplicate flag.
        out = t.cmd(f"raw {SEND} {send_payload(bob.hex, i, b'one').hex()}")
        self.assertEqual(self.assert_reply(out, SEND), struct.pack(">QB", first["server_id"], 1))
        # Another sender's message with the same client id is its own message.
        theirs = other.cmd(f"send {bob.hex} {i.hex()} 74776f", ok=True)
        self.assertFalse(theirs["duplicate"])
        self.assertNotEqual(theirs["server_id"], first["server_id"])

        got = t.cmd("fetch 100 0 0", ok=True)["messages"]
        self.assertEqual([(m["id"], blob_of(m)) for m in got],
                         [(first["server_id"], b"one"), (theirs["server_id"], b"two")])
        t.cmd(f"ack {first['server_id']}", ok=True)
        # After the ack: still the same id, still not stored again.
        after = t.cmd(f"send {bob.hex} {i.hex()} 6f6e65", ok=True)
        self.assertEqual((after["server_id"], after["duplicate"]), (first["server_id"], True))
        t.close()
        fresh = self.tool(name="fresh")
        fresh.cmd(f"register {bob.arg}", ok=True)
        self.assertEqual([m["id"] for m in fresh.cmd("fetch 100 0 0", ok=True)["messages"]],
                         [theirs["server_id"]])

    def test_fetch_long_poll_wakes_on_send_and_times_out_empty(self):
        bob = self.identity("bob")
        waiter, sender = self.tool(name="waiter"), self.tool(name="sender")
        waiter.cmd(f"register {bob.arg}", ok=True)
        # Nothing pending: the FETCH waits its time and comes back empty.
        out = waiter.cmd("fetch 10 0 800", ok=True)
        self.assertEqual(out["messages"], [])
        self.assertGreaterEqual(out["elapsed_ms"], 700, f"FETCH did not wait: {out}")
        self.assertLess(out["elapsed_ms"], 8000, out)
        # A send while it waits wakes it long before its timeout.
        waiter.write("fetch 10 0 15000")
        time.sleep(0.5)
        t0 = time.monotonic()
        sent = sender.cmd(f"send {bob.hex} - 77616b65", ok=True)
        out = waiter.read(timeout=15)
        woke = time.monotonic() - t0
        self.assertTrue(out["ok"], out)
        self.assertEqual([(m["id"], blob_of(m)) for m in out["messages"]], [(sent["server_id"], b"wake")])
        # Sent 0.5 s after the FETCH was written (leave room for a slow start of the request).
        self.assertGreaterEqual(out["elapsed_ms"], 150, f"FETCH answered before the send: {out}")
        self.assertLess(woke, 5, f"the long poll took {woke:.1f}s to notice the message")

    def test_fetch_wait_is_clamped_by_relay_fetch_wait_max(self):
        d = self.start_secd(extra_args=("--relay-fetch-wait-max", "1s"), name="secd-clamp")
        bob = self.identity("bob")
        t = self.tool(d=d)
        t.cmd(f"register {bob.arg}", ok=True)
        out = t.cmd("fetch 10 0 20000", ok=True, timeout=15)
        self.assertEqual(out["messages"], [])
        self.assertGreaterEqual(out["elapsed_ms"], 900, out)
        self.assertLess(out["elapsed_ms"], 5000, f"relay_fetch_wait_max=1s was not applied: {out}")

    def test_fetch_bounds_count_and_bytes(self):
        bob = self.identity("bob")
        t = self.tool()
        t.cmd(f"register {bob.arg}", ok=True)
        ids = t.cmd(f"sendmany {bob.hex} 6 1000 4242", ok=True)["ids"]
        # count
        out = t.cmd(f"raw {FETCH} {fetch_payload(2, 1 << 20, 0).hex()}")
        p = self.assert_reply(out, FETCH)
        self.assertEqual(struct.unpack(">H", p[:2])[0], 2)
        # bytes: the first always, then while the total stays <= max_bytes
        for max_bytes, n in ((1, 1), (1999, 1), (2000, 2), (3500, 3)):
            p = self.assert_reply(t.cmd(f"raw {FETCH} {fetch_payload(100, max_bytes, 0).hex()}"), FETCH)
            self.assertEqual(struct.unpack(">H", p[:2])[0], n, f"max_bytes={max_bytes}")
            first = struct.unpack(">Q", p[2:10])[0]
            self.assertEqual(first, ids[0])
        self.assertEqual(len(p), 2 + 3 * (36 + 1000))


    def test_pipelined_requests_second_fetch_busy_and_replies_out_of_order(self):
        bob = self.identity("bob")
        t, sender = self.tool(name="pipeliner"), self.tool(name="sender")
        k = t.cmd("tls-open", ok=True)["k"]
        self.assertEqual(self.assert_reply(t.cmd(f"tls-register {k} {bob.arg}"), REGISTER), b"\x01")
        waiting = t.cmd(f"tls-send {k} {FETCH} {fetch_payload(10, 1 << 20, 15000).hex()}", ok=True)["request_id"]
        second = t.cmd(f"tls-send {k} {FETCH} {fetch_payload(10, 1 << 20, 0).hex()}", ok=True)["request_id"]
        ping = t.cmd(f"tls-send {k} {PING} 7069", ok=True)["request_id"]
        out = t.cmd(f"tls-recv {k}", ok=True)
        self.assertEqual(out["request_id"], second, f"first reply: {out}")
        self.assert_code(out, mt.ERR_BUSY, "a second FETCH while one waits")
        out = t.cmd(f"tls-recv {k}", ok=True)
        self.assertEqual((out["request_id"], out["type"], out["payload"]), (ping, 0x81, "7069"))
        sid = sender.cmd(f"send {bob.hex} - 6c617465", ok=True)["server_id"]
        out = t.cmd(f"tls-recv {k}", ok=True, timeout=15)
        self.assertEqual((out["request_id"], out["type"]), (waiting, FETCH | 0x80), out)
        p = bytes.fromhex(out["payload"])
        self.assertEqual(struct.unpack(">HQ", p[:10]), (1, sid))
        self.assertEqual(p[-4:], b"late")

    def test_many_pipelined_sends_each_get_one_answer(self):
        bob = self.identity("bob")
        t = self.tool(name="pipeliner")
        k = t.cmd("tls-open", ok=True)["k"]
        self.assert_reply(t.cmd(f"tls-register {k} {bob.arg}"), REGISTER)
        sent = {}
        for n in range(300):
            i = cid(n, b"P")
            rid = t.cmd(f"tls-send {k} {SEND} {send_payload(bob.hex, i, i).hex()}", ok=True)["request_id"]
            sent[rid] = i
        stored, busy = {}, 0
        for _ in range(len(sent)):
            out = t.cmd(f"tls-recv {k}", ok=True)
            self.assertIn(out["request_id"], sent, f"a reply to no request: {out}")
            i = sent.pop(out["request_id"])
            if out["type"] == mt.ERROR:
                self.assertEqual(out["code"], mt.ERR_BUSY, out)   # explicit, never silent
                busy += 1
            else:
                p = self.assert_reply(out, SEND)
                stored[i.hex()] = struct.unpack(">Q", p[:8])[0]
        self.assertEqual(sent, {}, "requests without an answer")
        out = t.cmd(f"tls-raw {k} {FETCH} {fetch_payload(1000, 1 << 20, 0).hex()}")
        p = self.assert_reply(out, FETCH)
        n, off, got = struct.unpack(">H", p[:2])[0], 2, {}
        for _ in range(n):
            sid, c, _, length = struct.unpack(">Q16sQI", p[off:off + 36])
            got[c.hex()] = sid
            off += 36 + length
        self.assertEqual(got, stored, f"stored messages differ from the acknowledged ones ({busy} BUSY)")

    def test_library_drops_redeliveries_until_acked(self):
        bob = self.identity("bob")
        t = self.tool()
        t.cmd(f"register {bob.arg}", ok=True)
        sids = [t.cmd(f"send {bob.hex} - 0{i}", ok=True)["server_id"] for i in range(2)]
        self.assertEqual([m["id"] for m in t.cmd("fetch 10 0 0", ok=True)["messages"]], sids)
        # secd sends them again to a FETCH without a cursor (at-least-once); the library,
        # whose cursor is past them now, hands each out once.
        p = self.assert_reply(t.cmd(f"raw {FETCH} {fetch_payload().hex()}"), FETCH)
        self.assertEqual(struct.unpack(">H", p[:2])[0], 2)
        self.assertEqual(t.cmd("fetch 10 0 0", ok=True)["messages"], [])
        t.cmd(f"ack {sids[0]} {sids[1]}", ok=True)
        p = self.assert_reply(t.cmd(f"raw {FETCH} {fetch_payload().hex()}"), FETCH)
        self.assertEqual(p, b"\x00\x00")

    def test_fetch_without_ack_waits_for_a_new_message(self):
        """The library's cursor: a FETCH when only already-returned messages are pending waits
        (it used to answer at once, and a consumer that did not acknowledge spun)."""
        bob = self.identity("bob")
        consumer, sender = self.tool(name="consumer"), self.tool(name="sender")
        consumer.cmd(f"register {bob.arg}", ok=True)
        first = sender.cmd(f"send {bob.hex} - 6f6e65", ok=True)["server_id"]
        self.assertEqual([m["id"] for m in consumer.cmd("fetch 10 0 0", ok=True)["messages"]], [first])
        # Not acknowledged, fetched again with a wait: it waits its time, then comes back empty.
        out = consumer.cmd("fetch 10 0 1500", ok=True)
        self.assertEqual(out["messages"], [], out)
        self.assertGreaterEqual(out["elapsed_ms"], 1300, f"FETCH of only redeliveries did not wait: {out}")
        self.assertLess(out["elapsed_ms"], 8000, out)
        # Still not acknowledged; a message sent during the wait is what the waiting FETCH returns.
        consumer.write("fetch 10 0 1500")
        time.sleep(0.4)
        second = sender.cmd(f"send {bob.hex} - 74776f", ok=True)["server_id"]
        out = consumer.read(timeout=15)
        self.assertTrue(out["ok"], out)
        self.assertEqual([(m["id"], blob_of(m)) for m in out["messages"]], [(second, b"two")])
        self.assertGreaterEqual(out["elapsed_ms"], 150, f"FETCH answered before the send: {out}")
        # Both are still pending: a new consumer (cursor 0) gets both, in order.
        self.assertEqual(consumer.close(), 0)
        fresh = self.tool(name="fresh")
        fresh.cmd(f"register {bob.arg}", ok=True)
        self.assertEqual([m["id"] for m in fresh.cmd("fetch 10 0 0", ok=True)["messages"]], [first, second])

    def test_fetch_after_id_on_the_wire(self):
        bob = self.identity("bob")
        t, sender = self.tool(), self.tool(name="sender")
        t.cmd(f"register {bob.arg}", ok=True)
        sids = [sender.cmd(f"send {bob.hex} - 0{i}", ok=True)["server_id"] for i in range(3)]

        def ids(after_id, wait_ms=0, max_count=100):
            out = t.cmd(f"raw {FETCH} {fetch_payload(max_count, 1 << 20, wait_ms, after_id).hex()}")
            return fetch_reply_ids(self.assert_reply(out, FETCH, f"FETCH after {after_id}"))

        self.assertEqual(ids(0), sids)
        self.assertEqual(ids(sids[0]), sids[1:])
        self.assertEqual(ids(sids[1] - 1), sids[1:])
        self.assertEqual(ids(sids[0], max_count=1), sids[1:2], "the count starts at the cursor")
        self.assertEqual(ids(sids[2]), [])
        # Any u64 is a valid cursor; beyond every id (SQLite rowids stop at 2^63 - 1) it matches nothing.
        for after in (sids[2] + 1000, 2**63 - 1, 2**63, 2**64 - 1):
            self.assertEqual(ids(after), [], f"after_id {after}")
        # Acknowledged messages are gone whatever the cursor.
        t.cmd(f"ack {sids[1]}", ok=True)
        self.assertEqual(ids(sids[0]), sids[2:])

        # A FETCH waiting above the newest id is not woken (nor answered) by a message at or below
        # its cursor: secd looks again and keeps waiting until its deadline.
        t0 = time.monotonic()
        t.write(f"raw {FETCH} {fetch_payload(10, 1 << 20, 1500, sids[2] + 1000).hex()}")
        time.sleep(0.3)
        low = sender.cmd(f"send {bob.hex} - 6c6f77", ok=True)["server_id"]
        self.assertLess(low, sids[2] + 1000)
        out = t.read(timeout=15)
        elapsed = time.monotonic() - t0
        self.assertEqual(fetch_reply_ids(self.assert_reply(out, FETCH)), [])
        self.assertGreaterEqual(elapsed, 1.3, f"a message below the cursor ended the wait: {out}")
        # A message above the cursor does wake a waiting FETCH, which returns only what is above it.
        t0 = time.monotonic()
        t.write(f"raw {FETCH} {fetch_payload(10, 1 << 20, 10000, low).hex()}")
        time.sleep(0.3)
        high = sender.cmd(f"send {bob.hex} - 68696768", ok=True)["server_id"]
        out = t.read(timeout=15)
        self.assertEqual(fetch_reply_ids(self.assert_reply(out, FETCH)), [high])
        self.assertLess(time.monotonic() - t0, 5, "the long poll did not notice a message above its cursor")
        self.assertTrue(self.d.alive())

    def test_ack_of_another_mailbox_ids_deletes_nothing(self):
        alice, bob = self.identity("alice"), self.identity("bob")
        a, b = self.tool(name="alice"), self.tool(name="bob")
        a.cmd(f"register {alice.arg}", ok=True)
        b.cmd(f"register {bob.arg}", ok=True)
        sids = [b.cmd(f"send {alice.hex} - 0{i}", ok=True)["server_id"] for i in range(3)]
        self.assertEqual(b.cmd("ack " + " ".join(map(str, sids)), ok=True)["deleted"], 0)
        p = self.assert_reply(b.cmd(f"raw {ACK} {ack_payload(sids).hex()}"), ACK)
        self.assertEqual(p, b"\x00\x00")
        self.assertEqual([m["id"] for m in a.cmd("fetch 10 0 0", ok=True)["messages"]], sids)


class RelayProofTest(RelayTestCase):

    def test_foreign_key_and_replayed_proofs_are_refused(self):
        alice, mallory = self.identity("alice"), self.identity("mallory")
        t = self.tool(name="prover")
        k0 = t.cmd("tls-open", ok=True)["k"]
        k1 = t.cmd("tls-open", ok=True)["k"]
        self.assertNotEqual(t.cmd(f"tls-exporter {k0}", ok=True)["exporter"],
                            t.cmd(f"tls-exporter {k1}", ok=True)["exporter"])

        self.assert_code(t.cmd(f"tls-register {k0} {alice.arg} {mallory.arg}"), ERR_BAD_SIGNATURE,
                         "alice's key with mallory's signature")
        self.assert_code(t.cmd(f"tls-register {k0} {alice.arg} - - nodomain"), ERR_BAD_SIGNATURE,
                         "a proof without the domain-separation string")
        self.assert_code(t.cmd(f"tls-register {k0} {alice.arg} - {k1}"), ERR_BAD_SIGNATURE,
                         "a proof over another session's exporter")
        # The connection lives after each refusal.
        self.assertEqual(self.assert_reply(t.cmd(f"tls-raw {k0} {PING} 6869"), PING), b"hi")

        # Control: the right proof on its own session works (and created the mailbox now,
        # so nothing above did).
        good = t.cmd(f"tls-register {k0} {alice.arg}")
        self.assertEqual(self.assert_reply(good, REGISTER), b"\x01")
        # The same key again on its own connection: fine, nothing created.
        self.assertEqual(self.assert_reply(t.cmd(f"tls-register {k0} {alice.arg}"), REGISTER), b"\x00")
        # Those exact bytes replayed on another session: refused.
        self.assert_code(t.cmd(f"tls-raw {k1} {REGISTER} {good['sent']}"), ERR_BAD_SIGNATURE,
                         "the working proof replayed on another connection")
        k2 = t.cmd("tls-open", ok=True)["k"]
        self.assert_code(t.cmd(f"tls-raw {k2} {REGISTER} {good['sent']}"), ERR_BAD_SIGNATURE,
                         "the working proof replayed on a later connection")
        self.assertEqual(self.assert_reply(t.cmd(f"tls-raw {k1} {PING} 6869"), PING), b"hi")
        self.assertEqual(t.close(), 0)

    def test_small_order_key_cannot_register_without_a_private_key(self):
        """The identity point as a mailbox key: R = identity, S = 0 "verifies" for every message
        under a permissive Ed25519 check, so such a proof proves nothing and replays anywhere.
        secd must refuse it (BAD_SIGNATURE, or BAD_PAYLOAD for a key it rejects outright)."""
        t = self.tool()
        identity_point = bytes([1]) + bytes(31)
        forged = identity_point + identity_point + bytes(32)
        for _ in range(2):
            k = t.cmd("tls-open", ok=True)["k"]
            out = t.cmd(f"tls-raw {k} {REGISTER} {forged.hex()}", ok=True)
            self.assertEqual(out.get("type"), mt.ERROR,
                             f"secd accepted a REGISTER for the small-order key 01 00..00 with the forged "
                             f"proof R=identity, S=0 (no private key exists): {out}")
            self.assertIn(out.get("code"), (ERR_BAD_SIGNATURE, ERR_BAD_PAYLOAD), out)

    def test_connections_closed_mid_request_leave_nothing_behind(self):
        """REGISTER, SEND, FETCH (waiting), ACK and KEYS_* sent, then the connection closed
        before the reply: secd stays up (sanitizers check it at stop) and no mailbox stays
        reserved by a dead connection."""
        t = self.tool(name="quitter")
        keeper = self.identity("keeper")
        t.cmd(f"register {keeper.arg}", ok=True)
        t.cmd("publish 50 1 1", ok=True)
        for n in range(12):
            ident = self.identity(f"gone{n}")
            k = t.cmd("tls-open", ok=True)["k"]
            proof = ident.pub + ident.sign(mt.DOMAIN_REGISTER + bytes.fromhex(
                t.cmd(f"tls-exporter {k}", ok=True)["exporter"]))
            t.cmd(f"tls-send {k} {REGISTER} {proof.hex()}", ok=True)
            if n % 2:
                # Registered for real first, then requests that go to the store or wait.
                self.assert_reply(t.cmd(f"tls-recv {k}", ok=True), REGISTER)
                t.cmd(f"tls-send {k} {SEND} {send_payload(keeper.hex, cid(n, b'Q'), b'bye').hex()}", ok=True)
                t.cmd(f"tls-send {k} {mt.KEYS_BUNDLE} {keeper.hex}", ok=True)
                t.cmd(f"tls-send {k} {ACK} {ack_payload([1, 2]).hex()}", ok=True)
                t.cmd(f"tls-send {k} {FETCH} {fetch_payload(10, 1000, 10000).hex()}", ok=True)
            t.cmd(f"tls-close {k}", ok=True)
            # The mailbox is free again (at once or very soon) for a new connection.
            k = t.cmd("tls-open", ok=True)["k"]

            def takes(k=k, ident=ident):
                frame = ident.pub + ident.sign(mt.DOMAIN_REGISTER + bytes.fromhex(
                    t.cmd(f"tls-exporter {k}", ok=True)["exporter"]))
                out = t.cmd(f"tls-raw {k} {REGISTER} {frame.hex()}", ok=True)
                return out if out.get("code") != ERR_MAILBOX_BUSY else None
            out = wait_until(takes, timeout=10, interval=0.05, what=f"mailbox gone{n} to be released")
            self.assertEqual(out["type"], REGISTER | 0x80, out)
            t.cmd(f"tls-close {k}", ok=True)
        self.assertTrue(self.d.alive())
        got = t.cmd("fetch 100 0 0", ok=True)["messages"]
        self.assertTrue(all(blob_of(m) == b"bye" for m in got), got)
        self.assertLessEqual(len(got), 6)

    def test_racing_registers_of_a_new_mailbox_have_one_winner(self):
        t = self.tool(name="racer")
        ks = [t.cmd("tls-open", ok=True)["k"] for _ in range(2)]
        for n in range(5):
            ident = self.identity(f"race{n}")
            # Both proofs are made first (exporters from the tool, signatures here), then both
            # frames leave back to back, before either reply.
            frames = [ident.pub + ident.sign(mt.DOMAIN_REGISTER + bytes.fromhex(
                t.cmd(f"tls-exporter {k}", ok=True)["exporter"])) for k in ks]
            for k, f in zip(ks, frames):
                t.cmd(f"tls-send {k} {REGISTER} {f.hex()}", ok=True)
            replies = sorted((t.cmd(f"tls-recv {k}", ok=True) for k in ks), key=lambda o: o["type"])
            self.assertEqual([(o["type"], o.get("payload") if o["type"] != mt.ERROR else o.get("code"))
                              for o in replies], [(REGISTER | 0x80, "01"), (mt.ERROR, ERR_MAILBOX_BUSY)],
                             f"round {n}: {replies}")
            # Fresh connections for the next round.
            for i, k in enumerate(ks):
                t.cmd(f"tls-close {k}", ok=True)
                ks[i] = t.cmd("tls-open", ok=True)["k"]

    def test_other_uid_cannot_take_fetch_or_ack_a_mailbox(self):
        self.allow_nobody()
        alice, mal = self.identity("alice"), self.identity("mallory", uid=NOBODY_UID)
        stolen = alice.file_for(NOBODY_UID)
        owner = self.tool(name="owner")
        owner.cmd(f"register {alice.arg}", ok=True)
        owner.cmd(f"send {alice.hex} {cid(1).hex()} 736563726574", ok=True)
        # No consumer now: what answers is ownership, not MAILBOX_BUSY.
        owner.close()

        n = self.tool(uid=NOBODY_UID, name="nobody")
        self.assertEqual(n.cmd(f"register {stolen}", ok=False)["error"], "EPERM")
        k = n.cmd("tls-open", ok=True)["k"]
        self.assert_code(n.cmd(f"tls-register {k} {stolen}"), ERR_NOT_OWNER, "REGISTER of root's mailbox")
        # Unregistered: nothing of the mailbox is reachable.
        self.assert_code(n.cmd(f"tls-raw {k} {FETCH} {fetch_payload().hex()}"), ERR_NOT_REGISTERED, "FETCH")
        self.assert_code(n.cmd(f"tls-raw {k} {ACK} {ack_payload([1, 2, 3]).hex()}"), ERR_NOT_REGISTERED, "ACK")
        self.assert_code(n.cmd(f"tls-raw {k} {KEYS_COUNT} -"), ERR_NOT_REGISTERED, "KEYS_COUNT")
        self.assert_code(n.cmd(f"tls-raw {k} {KEYS_PUBLISH} {mt.publish_payload(alice).hex()}"),
                         ERR_NOT_REGISTERED, "KEYS_PUBLISH")
        self.assertEqual(n.cmd("fetch 10 0 0", ok=False)["error"], "ENOTCONN")
        # Sending to it is allowed; only the owner reads it.
        n.cmd(f"send {alice.hex} {cid(2).hex()} 6869", ok=True)
        # nobody's own mailbox works (the uid is admitted; the refusals above were ownership).
        self.assertEqual(n.cmd(f"register {mal.arg}", ok=True)["created"], True)
        n.close()

        owner2 = self.tool(name="owner2")
        owner2.cmd(f"register {alice.arg}", ok=True)
        got = owner2.cmd("fetch 100 0 0", ok=True)["messages"]
        self.assertEqual([blob_of(m) for m in got], [b"secret", b"hi"], "the owner lost messages")

    def test_one_consumer_at_a_time_and_release_on_close(self):
        alice, bob = self.identity("alice"), self.identity("bob")
        a, b = self.tool(name="first"), self.tool(name="second")
        a.cmd(f"register {alice.arg}", ok=True)
        self.assertEqual(b.cmd(f"register {alice.arg}", ok=False)["error"], "EBUSY")
        k = b.cmd("tls-open", ok=True)["k"]
        self.assert_code(b.cmd(f"tls-register {k} {alice.arg}"), ERR_MAILBOX_BUSY, "a second consumer")
        # The first consumer goes away: the mailbox is free again.
        a.cmd("disconnect", ok=True)

        def takes_over():
            out = b.cmd(f"tls-register {k} {alice.arg}")
            if out.get("code") == ERR_MAILBOX_BUSY:
                return None
            return out
        out = wait_until(takes_over, timeout=10, interval=0.05, what="the mailbox to be released")
        self.assertEqual(self.assert_reply(out, REGISTER), b"\x00")
        # Now the old consumer is the second one.
        a.cmd("connect", ok=True)
        self.assertEqual(a.cmd(f"register {alice.arg}", ok=False)["error"], "EBUSY")
        # One mailbox per connection.
        self.assert_code(b.cmd(f"tls-register {k} {bob.arg}"), ERR_ALREADY_REGISTERED,
                         "a second mailbox on a registered connection")
        self.assertEqual(b.cmd(f"tls-raw {k} {PING} 00")["type"], 0x81)


    def test_killed_consumer_releases_the_mailbox(self):
        alice = self.identity("alice")
        holder = self.tool(name="holder")
        holder.cmd(f"register {alice.arg}", ok=True)
        other = self.tool(name="other")
        self.assertEqual(other.cmd(f"register {alice.arg}", ok=False)["error"], "EBUSY")
        holder.proc.kill()
        holder.proc.wait(10)

        def registered():
            out = other.cmd(f"register {alice.arg}")
            return out if out.get("error") != "EBUSY" else None
        out = wait_until(registered, timeout=10, interval=0.05, what="secd to release a dead consumer's mailbox")
        self.assertTrue(out["ok"], out)


class RelayRemoteCertificateTest(RelayTestCase):
    """A remote principal (secctl cert issue, tcp endpoint) next to a local one."""

    def setUp(self):
        self.port = mt.free_tcp_port()
        self.secd_extra_args = ("--tcp-listen", f"127.0.0.1:{self.port}")
        super().setUp()

    def remote_tool(self, name):
        out = self.path(f"cert-{name}")
        os.mkdir(out, 0o700)
        self.secctl("cert", "issue", name, "--out", out, expect=0)
        self.add_rule("allow", "--cert", name, "--endpoint", "tcp")
        files = [os.path.join(out, f) for f in ("ca.crt", f"{name}.crt", f"{name}.key")]
        for f in files:
            self.assertTrue(os.path.exists(f), f"secctl cert issue wrote {os.listdir(out)}")
        args = ["--endpoint", f"127.0.0.1:{self.port}", "--pem", *files, "--timeout", str(int(mt.TIMEOUT * 500))]
        t = mt.RelayTool(self, self.client, args, name=name)
        self.assertTrue(t.connect_result.get("ok"), f"{name} did not connect over tcp: {t.connect_result}")
        return t

    def test_remote_principal_cannot_take_a_local_mailbox(self):
        alice, rem = self.identity("alice"), self.identity("remote")
        local = self.tool(name="local")
        local.cmd(f"register {alice.arg}", ok=True)
        local.close()                       # no consumer: ownership is what answers
        r = self.remote_tool("backup-1")
        self.assertEqual(r.cmd(f"register {alice.arg}", ok=False)["error"], "EPERM")
        self.assertEqual(r.cmd("fetch 10 0 0", ok=False)["error"], "ENOTCONN")
        self.assert_code(r.cmd(f"raw {ACK} {ack_payload([1]).hex()}"), ERR_NOT_REGISTERED, "ACK over tcp")
        self.assertEqual(r.cmd(f"register {rem.arg}", ok=True)["created"], True)
        i = cid(5, b"X")
        to_alice = r.cmd(f"send {alice.hex} {i.hex()} 66726f6d2074637020", ok=True)["server_id"]
        # The same client id from the local principal is another sender's message.
        local = self.tool(name="local2")
        local.cmd(f"register {alice.arg}", ok=True)
        to_rem = local.cmd(f"send {rem.hex} {i.hex()} 6261636b", ok=True)
        self.assertFalse(to_rem["duplicate"])
        self.assertEqual([(m["id"], blob_of(m)) for m in local.cmd("fetch 10 0 0", ok=True)["messages"]],
                         [(to_alice, b"from tcp ")])
        self.assertEqual([blob_of(m) for m in r.cmd("fetch 10 0 0", ok=True)["messages"]], [b"back"])


class RelayQuotaTest(RelayTestCase):
    secd_extra_args = ("--relay-mailbox-max-messages", "5", "--relay-mailbox-max-bytes", "1024")

    def test_message_quota(self):
        bob = self.identity("bob")
        t = self.tool()
        t.cmd(f"register {bob.arg}", ok=True)
        out = t.cmd(f"sendmany {bob.hex} 6 10 5151")
        self.assertEqual((out["ok"], out["error"], out["sent"]), (False, "EDQUOT", 5), out)
        self.assert_code(t.cmd(f"raw {SEND} {send_payload(bob.hex, cid(99), b'x').hex()}"),
                         ERR_QUOTA_EXCEEDED, "a sixth message")
        # A resend of a stored message (a lost reply) is answered, full mailbox or not.
        again = t.cmd(f"send {bob.hex} {(bytes.fromhex('5151') + bytes(6) + struct.pack('>Q', 4)).hex()} "
                      f"{mt.fill_pattern(10, bytes.fromhex('5151') + bytes(6) + struct.pack('>Q', 4)).hex()}")
        self.assertEqual((again.get("ok"), again.get("server_id"), again.get("duplicate")), (True, out["ids"][4], True),
                         f"a resend into a full mailbox: {again}")
        got = t.cmd("fetch 100 0 0", ok=True)["messages"]
        self.assertEqual([m["id"] for m in got], out["ids"], "accepted messages were lost")
        for i, m in enumerate(got):
            self.assertEqual(blob_of(m), mt.fill_pattern(10, bytes.fromhex("5151") + bytes(6) +
                                                         struct.pack(">Q", i)))
        # Acknowledging makes room for exactly that many.
        t.cmd(f"ack {got[0]['id']} {got[1]['id']}", ok=True)
        out = t.cmd(f"sendmany {bob.hex} 3 10 5252")
        self.assertEqual((out["error"], out["sent"]), ("EDQUOT", 2), out)

    def test_byte_quota(self):
        bob = self.identity("bob")
        t = self.tool()
        t.cmd(f"register {bob.arg}", ok=True)
        t.cmd(f"send {bob.hex} - fill:600", ok=True)
        self.assertEqual(t.cmd(f"send {bob.hex} - fill:500", ok=False)["error"], "EDQUOT")
        t.cmd(f"send {bob.hex} - fill:400", ok=True)
        t.cmd(f"send {bob.hex} - fill:24", ok=True)       # exactly 1024 queued
        self.assert_code(t.cmd(f"raw {SEND} {send_payload(bob.hex, cid(7), b'z').hex()}"),
                         ERR_QUOTA_EXCEEDED, "one byte over the byte quota")
        got = t.cmd("fetch 100 0 0", ok=True)["messages"]
        self.assertEqual([m["len"] for m in got], [600, 400, 24])


class RelayStoreCapTest(RelayTestCase):
    secd_extra_args = ("--relay-store-max-bytes", "2K")

    def test_store_cap_counts_every_mailbox(self):
        bob, carol = self.identity("bob"), self.identity("carol")
        tb, tc = self.tool(name="bob"), self.tool(name="carol")
        tb.cmd(f"register {bob.arg}", ok=True)
        tc.cmd(f"register {carol.arg}", ok=True)
        tb.cmd(f"send {bob.hex} - fill:1500", ok=True)
        # Carol's mailbox is empty, but the store as a whole is not.
        self.assertEqual(tc.cmd(f"send {carol.hex} - fill:600", ok=False)["error"], "EDQUOT")
        tc.cmd(f"send {carol.hex} - fill:548", ok=True)      # exactly 2048 queued
        out = tb.cmd(f"raw {SEND} {send_payload(bob.hex, cid(9), b'z').hex()}")
        self.assert_code(out, ERR_QUOTA_EXCEEDED, "one byte over the store cap")
        self.assertIn("store", str(out), out)
        wait_until(lambda: "relay_store_max_bytes" in self.d.output(), what="secd's warning that the store is full")
        # Nothing accepted was lost; acknowledging makes room for any mailbox.
        got = tb.cmd("fetch 100 0 0", ok=True)["messages"]
        self.assertEqual([m["len"] for m in got], [1500])
        tb.cmd(f"ack {got[0]['id']}", ok=True)
        tc.cmd(f"send {carol.hex} - fill:1000", ok=True)
        self.assertEqual([m["len"] for m in tc.cmd("fetch 100 0 0", ok=True)["messages"]], [548, 1000])


class RelayConcurrentQuotaTest(RelayTestCase):
    secd_extra_args = ("--relay-mailbox-max-messages", "50", "--relay-send-rate", "off",
                       "--relay-recipient-rate", "off")

    def test_concurrent_senders_never_overfill_a_mailbox(self):
        bob = self.identity("bob")
        owner = self.tool(name="owner")
        owner.cmd(f"register {bob.arg}", ok=True)
        senders = [self.tool(name=f"sender{i}") for i in range(4)]
        for i, t in enumerate(senders):          # all four start before any answer is read
            t.write(f"sendmany {bob.hex} 30 100 {0x5100 + i:04x}")
        results = [t.read(timeout=60) for t in senders]
        for r in results:
            self.assertEqual(r.get("error"), "EDQUOT", results)
        self.assertEqual(sum(r["sent"] for r in results), 50, results)
        got = owner.cmd("fetch 1000 0 0", ok=True)["messages"]
        self.assertEqual(sorted(m["id"] for m in got), sorted(i for r in results for i in r["ids"]))


class RelayMailboxesPerOwnerTest(RelayTestCase):
    secd_extra_args = ("--relay-mailboxes-per-owner", "2")

    def test_one_identity_owns_a_bounded_number_of_mailboxes(self):
        # Each mailbox may hold its quota: without a cap on mailboxes per identity one
        # principal could make secd store without bound.
        self.allow_nobody()
        a, b, c = self.identity("a"), self.identity("b"), self.identity("c")
        for ident in (a, b):
            t = self.tool(name=f"reg-{ident.hex[:6]}")
            t.cmd(f"register {ident.arg}", ok=True)
            t.close()
        t = self.tool(name="third")
        self.assertEqual(t.cmd(f"register {c.arg}", ok=False)["error"], "EDQUOT")
        k = t.cmd("tls-open", ok=True)["k"]
        self.assert_code(t.cmd(f"tls-register {k} {c.arg}"), ERR_QUOTA_EXCEEDED, "a third mailbox")
        # The mailboxes it owns stay usable, and the connection goes on.
        t.cmd(f"register {a.arg}", ok=True)
        t.cmd(f"send {a.hex} - 6f6b", ok=True)
        # Another identity is not limited by this one's mailboxes.
        n = self.tool(uid=NOBODY_UID, name="nobody")
        n.cmd(f"register {self.identity('n', uid=NOBODY_UID).arg}", ok=True)
        st = self.secctl_json("status")["relay"]
        self.assertEqual(st["mailboxes"], 3, st)
        self.assertGreaterEqual(st["refused"]["quota_exceeded"], 2, st)


class RelaySendRateTest(RelayTestCase):
    secd_extra_args = ("--relay-send-rate", "1/min", "--relay-send-burst", "3")

    def test_per_sender_rate_limit(self):
        self.allow_nobody()
        bob = self.identity("bob")
        t, other = self.tool(), self.tool(uid=NOBODY_UID, name="nobody")
        t.cmd(f"register {bob.arg}", ok=True)
        out = t.cmd(f"sendmany {bob.hex} 4 8 6161")
        self.assertEqual((out["error"], out["sent"]), ("EAGAIN", 3), out)
        self.assert_code(t.cmd(f"raw {SEND} {send_payload(bob.hex, cid(9), b'x').hex()}"),
                         ERR_RATE_LIMITED, "over the sender's rate")
        # Another sender is not limited by this one's use.
        other.cmd(f"send {bob.hex} - 6f6b", ok=True)
        got = t.cmd("fetch 100 0 0", ok=True)["messages"]
        self.assertEqual(len(got), 4, f"refused sends were stored or accepted ones lost: {got}")


class RelayRecipientRateTest(RelayTestCase):
    secd_extra_args = ("--relay-recipient-rate", "1/min", "--relay-recipient-burst", "4")

    def test_per_recipient_rate_limit(self):
        self.allow_nobody()
        bob, carol = self.identity("bob"), self.identity("carol")
        t, other = self.tool(), self.tool(uid=NOBODY_UID, name="nobody")
        t.cmd(f"register {bob.arg}", ok=True)
        other.cmd(f"register {self.identity('c', uid=NOBODY_UID).arg}", ok=True)
        t2 = self.tool(name="carol")
        t2.cmd(f"register {carol.arg}", ok=True)
        self.assertEqual(t.cmd(f"sendmany {bob.hex} 2 8 6262", ok=True)["sent"], 2)
        self.assertEqual(other.cmd(f"sendmany {bob.hex} 2 8 6363", ok=True)["sent"], 2)
        self.assertEqual(other.cmd(f"send {bob.hex} - 6e6f", ok=False)["error"], "EAGAIN")
        self.assert_code(t.cmd(f"raw {SEND} {send_payload(bob.hex, cid(5), b'x').hex()}"),
                         ERR_RATE_LIMITED, "over the recipient's rate")
        # Another recipient is not affected.
        t.cmd(f"send {carol.hex} - 6f6b", ok=True)
        self.assertEqual(len(t.cmd("fetch 100 0 0", ok=True)["messages"]), 4)


class RelayExpiryTest(RelayTestCase):
    """relay_ttl cannot go below 60 s, so the test ages a message in the store while
    secd is stopped; the restarted secd must stop delivering it at once and sweep it
    (relay_sweep_interval 1 s), with the counters following."""

    secd_extra_args = ("--relay-sweep-interval", "1s")

    def test_expired_message_is_not_delivered_and_is_swept(self):
        bob = self.identity("bob")
        t = self.tool()
        t.cmd(f"register {bob.arg}", ok=True)
        old = t.cmd(f"send {bob.hex} {cid(1, b'E').hex()} 6f6c64", ok=True)["server_id"]
        new = t.cmd(f"send {bob.hex} {cid(2, b'E').hex()} 6e6577", ok=True)["server_id"]
        t.close()
        self.assertEqual(self.relay_stats()["messages"], 2)
        self.d.stop()

        db = sqlite3.connect(self.d.db)
        cols = [r[1] for r in db.execute("PRAGMA table_info(messages)")]
        expiry = [c for c in cols if "expir" in c]
        received = [c for c in cols if "receiv" in c]
        self.assertEqual((len(expiry), len(received)), (1, 1), f"messages columns: {cols}")
        past = int((time.time() - 3600) * 1e6)
        with db:
            # As if received 31 days ago with the default 30-day TTL.
            n = db.execute(f"UPDATE messages SET {received[0]} = ?, {expiry[0]} = ? WHERE id = ?",
                           (past - 31 * 86400 * 10**6, past, old)).rowcount
        db.close()
        self.assertEqual(n, 1, f"message {old} is not in the store's messages table")

        self.d = self.secd_dev(name="secd", extra_args=("--enroll-rate-limit", "1000", *self.secd_extra_args),
                               state_dir=self.d.state_dir, runtime_dir=self.d.runtime_dir)
        self.open_runtime_dir(self.d)
        t = self.tool(name="after")
        t.cmd(f"register {bob.arg}", ok=True)
        got = t.cmd("fetch 100 0 0", ok=True)["messages"]
        self.assertEqual([m["id"] for m in got], [new], "an expired message was delivered")
        wait_until(lambda: self.relay_stats()["messages"] == 1, timeout=10,
                   what="the sweep to delete the expired message from the counters")
        self.assertEqual(self.relay_stats()["expired"], 1)
        db = sqlite3.connect(self.d.db)
        left = [r[0] for r in db.execute("SELECT id FROM messages")]
        db.close()
        self.assertEqual(left, [new])


class RelayMalformedTest(RelayTestCase):

    def assert_bad(self, t, ftype, payload, what, tls=None):
        hexp = payload.hex() or "-"
        out = t.cmd(f"tls-raw {tls} {ftype} {hexp}" if tls is not None else f"raw {ftype} {hexp}")
        self.assert_code(out, ERR_BAD_PAYLOAD, f"{what} ({len(payload)} bytes)")

    def assert_alive(self, t, tls=None):
        out = t.cmd(f"tls-raw {tls} {PING} 6f6b" if tls is not None else f"raw {PING} 6f6b")
        self.assertEqual((out.get("type"), out.get("payload")), (0x81, "6f6b"), f"no PONG after: {out}")

    def test_malformed_and_truncated_relay_payloads(self):
        alice, bob = self.identity("alice"), self.identity("bob")
        t = self.tool()
        # REGISTER on a fresh (unregistered) raw connection: every truncation, a trailing byte.
        k = t.cmd("tls-open", ok=True)["k"]
        good = bytes.fromhex(t.cmd(f"tls-register {k} {alice.arg}")["sent"])
        k = t.cmd("tls-open", ok=True)["k"]
        for n in range(len(good)):
            self.assert_bad(t, REGISTER, good[:n], "truncated REGISTER", tls=k)
        self.assert_bad(t, REGISTER, good + b"\x00", "REGISTER with a trailing byte", tls=k)
        self.assert_alive(t, tls=k)

        t.cmd(f"register {bob.arg}", ok=True)
        send = send_payload(alice.hex, cid(1), b"m")
        for n in range(len(send)):          # 0..48: the last one has an empty blob
            self.assert_bad(t, SEND, send[:n], "truncated SEND")
        fetch = fetch_payload(10, 1000, 0, 7)
        for n in range(len(fetch)):         # 10 bytes: the layout before the cursor
            self.assert_bad(t, FETCH, fetch[:n], "truncated FETCH")
        self.assert_bad(t, FETCH, fetch + b"\x00", "FETCH with a trailing byte")
        self.assert_bad(t, FETCH, fetch_payload(0, 1000, 0), "FETCH max_count 0")
        self.assert_bad(t, FETCH, fetch_payload(1001, 1000, 0), "FETCH max_count 1001")
        self.assert_bad(t, FETCH, fetch_payload(10, 0, 0), "FETCH max_bytes 0")
        ack = ack_payload([1, 2])
        for n in range(len(ack)):
            self.assert_bad(t, ACK, ack[:n], "truncated ACK")
        self.assert_bad(t, ACK, ack + b"\x00", "ACK with a trailing byte")
        self.assert_bad(t, ACK, struct.pack(">H", 0), "ACK of no ids")
        self.assert_bad(t, ACK, struct.pack(">H", 1001) + bytes(8 * 1001), "ACK of 1001 ids")
        self.assert_bad(t, ACK, struct.pack(">H", 3) + bytes(16), "ACK count 3 with 2 ids")
        self.assert_alive(t)
        # Nothing of the above was stored or deleted: a well-formed exchange still works.
        out = t.cmd(f"raw {SEND} {send_payload(bob.hex, cid(2), b'ok').hex()}")
        sid = struct.unpack(">Q", self.assert_reply(out, SEND)[:8])[0]
        got = t.cmd("fetch 10 0 0", ok=True)["messages"]
        self.assertEqual([(m["id"], blob_of(m)) for m in got], [(sid, b"ok")])
        self.assertTrue(self.d.alive())


class RelayFrameLimitTest(RelayTestCase):
    """A FETCH reply never exceeds the frame maximum, however much max_bytes asks for."""
    secd_extra_args = ("--frame-payload-max", "64K", "--relay-message-max", "60000")

    def test_fetch_reply_is_clamped_to_one_frame(self):
        bob = self.identity("bob")
        t = self.tool()
        t.cmd(f"register {bob.arg}", ok=True)
        self.assertEqual(t.cmd(f"sendmany {bob.hex} 3 60000 6666", ok=True)["sent"], 3)
        self.assertEqual(t.cmd(f"send {bob.hex} - fill:60001", ok=False)["error"], "EMSGSIZE")
        out = t.cmd(f"raw {FETCH} {fetch_payload(1000, 0xFFFFFFFF, 0).hex()}")
        p = self.assert_reply(out, FETCH)
        self.assertLessEqual(out["len"], 64 * 1024)
        self.assertEqual((struct.unpack(">H", p[:2])[0], out["len"]), (1, 2 + 36 + 60000))
        got = t.cmd("fetch 1000 0 0", ok=True)["messages"]
        self.assertEqual([m["len"] for m in got], [60000])
        t.cmd(f"ack {got[0]['id']}", ok=True)
        self.assertEqual(len(t.cmd("fetch 1000 0 0", ok=True)["messages"]), 1)

    def test_a_message_maximum_that_does_not_fit_a_frame_is_refused_at_start(self):
        out = self.secd_expect_start_failure(["--dev", "--state-dir", self.path("s2"), "--runtime-dir",
                                              self.path("r2"), "--frame-payload-max", "64K",
                                              "--relay-message-max", "65489"])
        self.assertIn("relay_message_max", out)
        # 48 bytes of SEND header + 65488 fit exactly: that one starts.
        d = self.start_secd(extra_args=("--frame-payload-max", "64K", "--relay-message-max", "65488"), name="fits")
        self.assertTrue(d.alive())


class RelayLifecycleTest(RelayTestCase):
    secd_extra_args = ("--data-idle-timeout", "1s")

    def test_idle_timeout_does_not_cut_a_waiting_fetch(self):
        bob = self.identity("bob")
        t = self.tool()
        t.cmd(f"register {bob.arg}", ok=True)
        out = t.cmd("fetch 10 0 2500", ok=True)
        self.assertEqual(out["messages"], [])
        self.assertGreaterEqual(out["elapsed_ms"], 2400, out)
        t.cmd("ping", ok=True)
        # An idle registered connection is closed, and the library comes back registered.
        time.sleep(1.5)
        sid = t.cmd(f"send {bob.hex} - 6261636b", ok=True)["server_id"]
        self.assertEqual([m["id"] for m in t.cmd("fetch 10 0 0", ok=True)["messages"]], [sid])

    def test_sigterm_answers_a_waiting_fetch_and_keeps_the_store(self):
        bob, carol = self.identity("bob"), self.identity("carol")
        t, sender = self.tool(name="waiter"), self.tool(name="sender")
        self.assertEqual(sender.cmd(f"send {bob.hex} - 6b656570", ok=False)["error"], "ENXIO")
        t.cmd(f"register {bob.arg}", ok=True)
        sender.cmd(f"register {carol.arg}", ok=True)
        gone = sender.cmd(f"send {bob.hex} - 676f6e65", ok=True)["server_id"]
        kept = t.cmd(f"send {carol.hex} - 6b656570", ok=True)["server_id"]
        self.assertEqual([m["id"] for m in t.cmd("fetch 10 0 0", ok=True)["messages"]], [gone])
        t.cmd(f"ack {gone}", ok=True)
        t.write("fetch 10 0 30000")          # nothing pending: it waits
        time.sleep(0.5)
        t0 = time.monotonic()
        self.d.stop(timeout=15)
        out = t.read(timeout=15)
        self.assertLess(time.monotonic() - t0, 10, "SIGTERM waited for the long poll")
        self.assertEqual(out.get("error"), "ESHUTDOWN", out)
        self.d = self.secd_dev(name="secd-again", extra_args=("--enroll-rate-limit", "1000", *self.secd_extra_args),
                               state_dir=self.d.state_dir, runtime_dir=self.d.runtime_dir)
        self.open_runtime_dir(self.d)
        t2 = self.tool(name="after")
        t2.cmd(f"register {bob.arg}", ok=True)
        self.assertEqual(t2.cmd("fetch 10 0 0", ok=True)["messages"], [], "an acknowledged message came back")
        t3 = self.tool(name="carol")
        t3.cmd(f"register {carol.arg}", ok=True)
        self.assertEqual([(m["id"], blob_of(m)) for m in t3.cmd("fetch 10 0 0", ok=True)["messages"]],
                         [(kept, b"keep")])


class RelayRandomPayloadTest(RelayTestCase):
    """Random payloads of random lengths for every relay and key-server frame type on a
    registered connection: each gets a reply or a per-request ERROR, the connection lives."""
    secd_extra_args = ("--keys-bundle-rate", "off", "--keys-bundle-target-rate", "off",
                       "--keys-bundle-mailbox-rate", "off")

    def test_random_payloads_never_break_the_connection(self):
        import random
        seed = int.from_bytes(os.urandom(4), "big")
        rng = random.Random(seed)
        bob = self.identity("bob")
        t = self.tool()
        t.cmd(f"register {bob.arg}", ok=True)
        t.cmd("publish 3 1 1", ok=True)
        allowed = {ERR_BAD_PAYLOAD, ERR_BAD_SIGNATURE, ERR_NO_SUCH_MAILBOX, ERR_ALREADY_REGISTERED,
                   ERR_MESSAGE_TOO_LARGE, mt.ERR_NO_KEYS}
        for ftype in mt.RELAY_REQUEST_TYPES:
            for i in range(60):
                n = rng.choice((rng.randrange(0, 16), rng.randrange(16, 300), rng.randrange(300, 5000)))
                payload = bytes(rng.getrandbits(8) for _ in range(n))
                if ftype == FETCH and n >= 10:
                    # A random FETCH may ask to wait: keep that short.
                    payload = payload[:6] + struct.pack(">I", rng.randrange(0, 50)) + payload[10:]
                out = t.cmd(f"raw {ftype} {payload.hex() or '-'}")
                what = f"type 0x{ftype:02x}, {n} random bytes (seed {seed}, #{i}): {out}"
                self.assertTrue(out.get("ok"), what)
                self.assertTrue(out.get("request_id_matches"), what)
                if out["type"] == mt.ERROR:
                    self.assertIn(out["code"], allowed, what)
                else:
                    self.assertEqual(out["type"], ftype | 0x80, what)
        self.assertEqual(t.cmd(f"raw {PING} 6f6b")["payload"], "6f6b")
        t.cmd("count", ok=True)
        self.assertTrue(self.d.alive())


class RelayStatsTest(RelayTestCase):
    secd_extra_args = ("--relay-mailbox-max-messages", "4")

    def status(self):
        """io.secd.Status.Get's relay part, straight from the control socket."""
        return self.varlink(self.d).call("io.secd.Status.Get")["relay"]

    def test_secctl_relay_stats_reflect_the_store(self):
        before = self.relay_stats()
        self.assertEqual((before["mailboxes"], before["messages"], before["bytes"], before["oldest_usec"]),
                         (0, 0, 0, 0), before)
        alice, bob = self.identity("alice"), self.identity("bob")
        t = self.tool()
        t.cmd(f"register {alice.arg}", ok=True)
        u = self.tool(name="bob")
        u.cmd(f"register {bob.arg}", ok=True)
        t0 = time.time() * 1e6
        for n, size in enumerate((10, 200, 3000)):
            t.cmd(f"send {bob.hex} {cid(n).hex()} fill:{size}", ok=True)
        t.cmd(f"send {bob.hex} {cid(0).hex()} fill:10", ok=True)           # a duplicate
        t.cmd(f"send {bob.hex} {cid(7).hex()} fill:1", ok=True)            # the fourth: the quota
        self.assertEqual(t.cmd(f"send {bob.hex} {cid(8).hex()} fill:1", ok=False)["error"], "EDQUOT")
        t.cmd(f"raw {FETCH} 00", ok=True)                                  # bad payload
        s = self.relay_stats()
        self.assertEqual((s["mailboxes"], s["messages"], s["bytes"]), (2, 4, 3211), s)
        self.assertLessEqual(t0 - 5e6, s["oldest_usec"], s)
        self.assertLessEqual(s["oldest_usec"], time.time() * 1e6, s)
        self.assertEqual((s["stored"], s["duplicates"], s["registered"], s["mailboxes_created"]), (4, 1, 2, 2), s)
        # Refusals by reason since the start (the setUp probe's FETCH was one NOT_REGISTERED).
        refused = {k: v - before["refused"][k] for k, v in s["refused"].items()}
        self.assertEqual({k: v for k, v in refused.items() if v}, {"quota_exceeded": 1, "bad_payload": 1}, s)
        self.assertEqual(self.status(), s, "io.secd.Status.Get and secctl relay stats disagree")

        got = u.cmd("fetch 100 0 0", ok=True)["messages"]
        u.cmd(f"ack {got[0]['id']}", ok=True)
        s = self.relay_stats()
        self.assertEqual((s["messages"], s["bytes"], s["acked"]), (3, 3201, 1), s)
        self.assertGreaterEqual(s["fetched"], 4, s)
        u.cmd("ack " + " ".join(str(m["id"]) for m in got[1:]), ok=True)
        s = self.relay_stats()
        self.assertEqual((s["mailboxes"], s["messages"], s["bytes"], s["oldest_usec"], s["acked"]),
                         (2, 0, 0, 0, 4), s)
        cp = self.secctl("relay", "stats", expect=0)
        self.assertRegex(cp.stdout, r"(?im)^\s*mailboxes:\s+2\s*$", cp.stdout)
        self.assertRegex(cp.stdout, r"(?m)^queued: 0 messages, 0 bytes$", cp.stdout)
        self.assertRegex(cp.stdout, r"(?m)^store cap: 4294967296 bytes \(0\.0% used\)$", cp.stdout)
        self.assertRegex(cp.stdout, r"(?m)^stored: 4, duplicates 1$", cp.stdout)
        self.assertRegex(cp.stdout, r"(?m)^refused: .*quota-exceeded 1", cp.stdout)


class RelaySocketActivationTest(RelayTestCase):
    """The relay under systemd-socket-activate (data, enroll, control as named fds)."""

    def start_secd(self, extra_args=(), name="secd", **kw):
        sockdir = self.path("activated")
        os.makedirs(sockdir, exist_ok=True)
        os.chmod(sockdir, 0o755)
        activate = [(n, os.path.join(sockdir, f"{n}.sock")) for n in ("data", "enroll", "control")]
        d = Secd(self, self.root, ["--dev", "--state-dir", self.path("state"), "--runtime-dir",
                                   self.path("run"), "--enroll-rate-limit", "1000", *extra_args],
                 name="secd-activated", activate=activate, runtime_dir=self.path("run"),
                 state_dir=self.path("state"))
        self.daemons.append(d)
        d.sockets = dict(activate)
        d.start(wait_ready=False)

        # The activator's first connection execs secd. The socket file appears at bind(),
        # a moment before listen(): retry a refused connect (once failed under load).
        def first_connection():
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(mt.TIMEOUT)
            try:
                s.connect(d.sockets["data"])
            except (FileNotFoundError, ConnectionRefusedError):
                s.close()
                return False
            self.addCleanup(s.close)
            return True
        wait_until(first_connection, what="systemd-socket-activate listening on the data socket")
        d.wait_ready()
        return d

    def tool_args(self, d=None):
        d = d or self.d
        return ["--enroll-socket", d.sockets["enroll"], "--endpoint", d.sockets["data"], "--timeout",
                str(int(mt.TIMEOUT * 1000 / 2))]

    def secctl(self, *args, **kw):
        kw.setdefault("sock", self.d.sockets["control"])
        return super().secctl(*args, **kw)

    def test_exchange_under_socket_activation(self):
        alice, bob = self.identity("alice"), self.identity("bob")
        a, b = self.tool(name="alice"), self.tool(name="bob")
        a.cmd(f"register {alice.arg}", ok=True)
        b.cmd(f"register {bob.arg}", ok=True)
        b.write("fetch 10 0 10000")
        time.sleep(0.3)
        s = a.cmd(f"send {bob.hex} - 616374697661746564", ok=True)
        out = b.read(timeout=15)
        self.assertEqual([(m["id"], blob_of(m)) for m in out["messages"]], [(s["server_id"], b"activated")])
        b.cmd(f"ack {s['server_id']}", ok=True)
        own = [f for f in os.listdir(self.d.runtime_dir) if f.endswith(".sock")] \
            if os.path.isdir(self.d.runtime_dir) else []
        self.assertEqual(own, [], "secd bound its own sockets although it was socket-activated")


if __name__ == "__main__":
    unittest.main()
