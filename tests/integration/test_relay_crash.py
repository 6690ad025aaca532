#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Crash test of the relay (issue 5): SIGKILL secd during sends, restart it
on the same state directory, and check that every acknowledged message is
there exactly once, intact, under the server id its ack named.

Several secd-relay-client crash-send processes send numbered messages with
distinct client ids and retry each (same id) across secd's deaths; a
sender appends "client-id server-id" to its log only after the durable ack
and fsyncs it. A crash-recv consumer fetches and acknowledges meanwhile,
logging each message before its ACK and each ACK secd confirmed: no
confirmed ACK may be undone by a crash, and what it saw plus what is left
must hold every acknowledged send, one server id per client id. A bundle
fetcher takes one-time pre-keys meanwhile: none may be served twice. Rounds are bounded (ROUNDS kills, each after the senders
made progress on the new incarnation, at a random moment); the random seed
is printed on failure so a run can be repeated.
"""

import hashlib
import json
import os
import random
import signal
import struct
import subprocess
import sqlite3
import time
import unittest

from secdtest import TIMEOUT, base_env, die_with_parent, sanitizer_report, wait_until
import mtlstest as mt
from mtlstest import RelayTestCase

ROUNDS = 8
SENDER_SIZES = (64, 700, 3000, 1, 96 * 1024, 300)   # one sender per size, concurrently
MAX_PER_SENDER = 100000             # senders stop on the stop file, not on a count


class RelayCrashTest(RelayTestCase):
    secd_extra_args = ("--relay-send-rate", "off", "--relay-recipient-rate", "off",
                       "--relay-mailbox-max-messages", "1000000", "--relay-mailbox-max-bytes", "4G",
                       "--keys-bundle-rate", "off", "--keys-bundle-target-rate", "off",
                       "--keys-bundle-mailbox-rate", "off")

    def restart(self, n):
        d = self.secd_dev(name=f"secd-r{n}", extra_args=("--enroll-rate-limit", "1000", *self.secd_extra_args),
                          state_dir=self.d.state_dir, runtime_dir=self.d.runtime_dir)
        self.open_runtime_dir(d)
        return d

    def acked_lines(self):
        total = 0
        for log in self.logs:
            try:
                with open(log) as f:
                    total += f.read().count("\n")
            except FileNotFoundError:
                pass
        return total

    def test_sigkill_during_sends_loses_no_acknowledged_message(self):
        seed = int.from_bytes(os.urandom(4), "big")
        rng = random.Random(seed)
        note = f"(random seed {seed})"
        bob = self.identity("bob")
        r = self.tool(name="receiver")
        r.cmd(f"register {bob.arg}", ok=True)
        r.close()

        # Pre-keys handed out across the kills too: a one-time pre-key served once is gone for good.
        alice = self.identity("alice")
        p = self.tool(name="publisher")
        p.cmd(f"register {alice.arg}", ok=True)
        self.assertEqual(p.cmd("publish 100 1 1", ok=True)["stored"], 100)
        p.close()

        stop = self.path("stop")
        bundle_log = self.path("bundles.log")
        out = open(self.path("bundles.out"), "wb")
        self.addCleanup(out.close)
        fetcher = subprocess.Popen([self.client, "--enroll-socket", self.d.enroll, "--endpoint", self.d.data,
                                    "--timeout", "3000", "crash-bundles", alice.hex, bundle_log, "40",
                                    str(int(TIMEOUT * 4000)), stop],
                                   stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=base_env(),
                                   cwd="/", preexec_fn=die_with_parent)
        self.addCleanup(lambda: fetcher.poll() is None and (fetcher.kill(), fetcher.wait()))
        self.logs = [self.path(f"sender{i}.log") for i in range(len(SENDER_SIZES))]
        senders = []
        # A consumer fetches and acknowledges all along, across the kills too.
        consumer_log = self.path("consumer.log")
        out = open(self.path("consumer.out"), "wb")
        self.addCleanup(out.close)
        consumer = subprocess.Popen([self.client, "--enroll-socket", self.d.enroll, "--endpoint", self.d.data,
                                     "--timeout", "3000", "crash-recv", bob.arg, consumer_log,
                                     str(int(TIMEOUT * 4000)), stop],
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=base_env(),
                                    cwd="/", preexec_fn=die_with_parent)
        self.addCleanup(lambda: consumer.poll() is None and (consumer.kill(), consumer.wait()))
        for i, size in enumerate(SENDER_SIZES):
            out = open(self.path(f"sender{i}.out"), "wb")
            self.addCleanup(out.close)
            argv = [self.client, "--enroll-socket", self.d.enroll, "--endpoint", self.d.data,
                    "--timeout", "3000", "crash-send", bob.hex, str(MAX_PER_SENDER), str(size), str(i),
                    self.logs[i], str(int(TIMEOUT * 4000)), stop]
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                 env=base_env(), cwd="/", preexec_fn=die_with_parent)
            self.addCleanup(lambda p=p: p.poll() is None and (p.kill(), p.wait()))
            senders.append(p)

        kills = []
        started = time.monotonic()
        for n in range(ROUNDS):
            base = self.acked_lines()
            wait_until(lambda: self.acked_lines() >= base + 5, timeout=TIMEOUT,
                       what=f"round {n}: senders making progress on secd {self.d.pid} {note}")
            time.sleep(rng.uniform(0.0, 0.4))
            at = self.acked_lines()
            self.d.proc.send_signal(signal.SIGKILL)
            code = self.d.wait_exit()
            self.assertEqual(code, -signal.SIGKILL, f"secd did not die by SIGKILL {note}")
            self.d.check_sanitizers()
            kills.append(at)
            self.d = self.restart(n)        # READY=1 or the test fails here
            self.assertTrue(self.d.alive(), self.d.describe())

        # Some progress on the last incarnation, then the senders stop.
        base = self.acked_lines()
        wait_until(lambda: self.acked_lines() >= base + 5, timeout=TIMEOUT,
                   what=f"senders making progress after the last restart {note}")
        open(stop, "w").close()
        results = []
        for i, p in enumerate(senders):
            try:
                p.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.fail(f"sender {i} did not stop {note}")
            with open(self.path(f"sender{i}.out"), errors="replace") as f:
                text = f.read()
            report = sanitizer_report(text)
            if report:
                self.fail(f"sender {i}: sanitizer report:\n{report}")
            lines = [json.loads(x) for x in text.splitlines() if x.startswith("{")]
            results.append(lines[-1] if lines else {})
            self.assertEqual(p.returncode, 0, f"sender {i} failed {note}: {text[-2000:]}")
        try:
            consumer.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.fail(f"the consumer did not stop {note}")
        with open(self.path("consumer.out"), errors="replace") as f:
            text = f.read()
        report = sanitizer_report(text)
        if report:
            self.fail(f"consumer: sanitizer report:\n{report}")
        self.assertEqual(consumer.returncode, 0, f"the consumer failed {note}: {text[-2000:]}")
        consumer_result = json.loads(text.splitlines()[-1])
        try:
            fetcher.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.fail(f"the bundle fetcher did not stop {note}")
        with open(self.path("bundles.out"), errors="replace") as f:
            text = f.read()
        self.assertIsNone(sanitizer_report(text), text[-3000:])
        self.assertEqual(fetcher.returncode, 0, f"the bundle fetcher failed {note}: {text[-2000:]}")
        fetcher_result = json.loads(text.splitlines()[-1])
        elapsed = time.monotonic() - started

        # What the senders know was acknowledged.
        acked = {}
        for i, log in enumerate(self.logs):
            with open(log) as f:
                for line in f:
                    self.assertTrue(line.endswith("\n"), f"sender {i}: torn log line {line!r}")
                    c, sid, dup = line.split()
                    self.assertNotIn(c, acked, f"sender {i} logged {c} twice")
                    acked[c] = (int(sid), int(dup), SENDER_SIZES[i])
            self.assertEqual(results[i].get("acked"), sum(1 for c in acked if int(c[8:16], 16) == i),
                             f"sender {i}: summary and log disagree: {results[i]}")
        self.assertGreater(len(acked), 5 * (ROUNDS + 1))

        stats = None
        try:
            stats = self.relay_stats()
        except unittest.SkipTest:
            pass

        r = self.tool(name="drain")
        r.cmd(f"register {bob.arg}", ok=True)
        got = r.cmd("drain", ok=True, timeout=60)["messages"]
        r.close()

        # What the consumer saw (logged before its ACK) and what secd confirmed it deleted.
        seen, consumer_acked = [], set()
        with open(consumer_log) as f:
            for line in f:
                self.assertTrue(line.endswith("\n"), f"consumer: torn log line {line!r}")
                parts = line.split()
                if parts[0] == "R":
                    seen.append({"cid": parts[1], "id": int(parts[2]), "sha256": parts[3], "len": None})
                else:
                    consumer_acked.add(int(parts[1]))

        drained_ids = {m["id"] for m in got}
        self.assertEqual(sorted(drained_ids & consumer_acked), [],
                         f"messages whose ACK secd acknowledged came back after a crash {note}")
        by_cid = {}
        for m in seen + got:
            by_cid.setdefault(m["cid"], []).append(m)
        foreign = [c for c in by_cid if not c.startswith(b"CRSH".hex())]
        self.assertEqual(foreign, [], f"messages nobody sent {note}")
        # At-least-once on the wire, but one stored message (one server id) per client id.
        twice = {c: sorted({m["id"] for m in ms}) for c, ms in by_cid.items() if len({m["id"] for m in ms}) > 1}
        self.assertEqual(twice, {}, f"messages stored more than once {note}")
        missing = sorted(c for c in acked if c not in by_cid)
        self.assertEqual(missing, [], f"{len(missing)} acknowledged messages lost {note}; kills after "
                                      f"{kills} acks")
        wrong = {c: (acked[c][0], by_cid[c][0]["id"]) for c in acked if by_cid[c][0]["id"] != acked[c][0]}
        self.assertEqual(wrong, {}, f"acknowledged server ids differ from the stored ones {note}")
        corrupt = []
        for c, ms in by_cid.items():
            cid = bytes.fromhex(c)
            size = SENDER_SIZES[struct.unpack(">I", cid[4:8])[0]]
            digest = hashlib.sha256(mt.fill_pattern(size, cid)).hexdigest()
            corrupt += [m for m in ms if m["sha256"] != digest or m["len"] not in (None, size)]
        self.assertEqual(corrupt, [], f"corrupt messages {note}")
        # Each sender waits for an ack before its next message: its ids grow with its counter.
        for i in range(len(SENDER_SIZES)):
            mine = sorted((struct.unpack(">Q", bytes.fromhex(c)[8:])[0], ms[0]["id"]) for c, ms in by_cid.items()
                          if int(c[8:16], 16) == i)
            self.assertEqual([s for _, s in mine], sorted(s for _, s in mine), f"sender {i}: order {note}")
        self.assertEqual([m["id"] for m in got], sorted(m["id"] for m in got), "FETCH order")
        if stats is not None:
            self.assertEqual((stats["messages"], stats["bytes"]), (len(got), sum(m["len"] for m in got)),
                             f"relay stats disagree with the store: {stats}")
        self.assertGreater(len(seen), 0, f"the consumer received nothing: {consumer_result}")

        # Every one-time pre-key went to one requester at most, crashes or not.
        with open(bundle_log) as f:
            served = [int(line.split()[1]) for line in f if line.startswith("O ")]
        dup = sorted({i for i in served if served.count(i) > 1})
        self.assertEqual(dup, [], f"one-time pre-keys handed out twice across the kills {note}")
        self.assertTrue(set(served) <= set(range(1, 101)), served)
        p = self.tool(name="owner")
        p.cmd(f"register {alice.arg}", ok=True)
        left = p.cmd("count", ok=True)["count"]
        p.close()
        self.assertLessEqual(left + len(served), 100, f"{left} left + {len(served)} served {note}")

        self.d.stop()
        db = sqlite3.connect(self.d.db)
        self.assertEqual(db.execute("PRAGMA integrity_check").fetchone()[0], "ok")
        # Everything was acknowledged: no rows, and the per-mailbox counters (kept by triggers
        # through every kill) agree.
        self.assertEqual(db.execute("SELECT count(*) FROM messages").fetchone()[0], 0)
        self.assertEqual(db.execute("SELECT coalesce(sum(queued_messages), 0), coalesce(sum(queued_bytes), 0) "
                                    "FROM mailboxes").fetchone(), (0, 0))
        db.close()
        unlogged = len(by_cid) - len(acked)
        dups = sum(r.get("duplicates", 0) for r in results)
        redelivered = len(seen) + len(got) - len(by_cid)
        print(f"\ncrash test: {ROUNDS} kills in {elapsed:.1f}s, {len(acked)} acknowledged sends, {unlogged} stored "
              f"without a logged ack, {dups} resends answered as duplicates, {len(seen)} consumed "
              f"({redelivered} redeliveries), {len(got)} left; senders: "
              f"{[{k: r.get(k) for k in ('acked', 'retries', 'reconnects', 'errors')} for r in results]}; "
              f"consumer: {consumer_result}; bundles: {len(served)} served, {left} left, "
              f"{100 - left - len(served)} lost with a reply cut by a kill, fetcher {fetcher_result}", flush=True)


if __name__ == "__main__":
    unittest.main()
