# SPDX-License-Identifier: LGPL-2.1-or-later
"""Harness for secd's integration tests.

Real processes only: secd started on its own (--dev, explicit directories,
a generated config file) or under systemd-socket-activate, secctl run as
root or as another uid, and raw or python3-varlink clients on the control
socket. Every wait is bounded by a deadline; readiness is learned from
NOTIFY_SOCKET, never from a fixed sleep.

Environment (set by tests/integration/CMakeLists.txt):
  SECD, SECCTL            absolute paths of the built binaries
  SECD_TEST_TIMEOUT       seconds for one wait (default 20)
  SECD_TEST_KEEP=1        keep the temporary directories
"""

import contextlib
import ctypes
import hashlib
import json
import os
import pwd
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import unittest

SECD = os.environ.get("SECD", "")
SECCTL = os.environ.get("SECCTL", "")
PYTHON = "/usr/bin/python3"
SOCKET_ACTIVATE = shutil.which("systemd-socket-activate") or "/usr/bin/systemd-socket-activate"
TIMEOUT = float(os.environ.get("SECD_TEST_TIMEOUT", "20"))

NOBODY_UID = 65534
NOBODY_GID = 65534

# secctl(8) exit statuses.
EXIT_SUCCESS = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_DENIED = 3
EXIT_UNREACHABLE = 4
EXIT_PERMISSION = 5

# A sanitizer report makes the process abort (abort_on_error) and is also
# searched for in the captured stderr, so it fails the test either way.
SANITIZER_ENV = {
    "ASAN_OPTIONS": "halt_on_error=1:abort_on_error=1:detect_leaks=1:strict_string_checks=1"
                    ":detect_stack_use_after_return=1",
    "UBSAN_OPTIONS": "halt_on_error=1:abort_on_error=1:print_stacktrace=1",
    "LSAN_OPTIONS": "exitcode=23",
}
SANITIZER_REPORT = re.compile(
    r"ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: (Address|UndefinedBehavior|Leak)Sanitizer")

# Variables that would make secd or secctl believe they run under systemd or
# talk to somebody else's daemon.
SCRUBBED_ENV = ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "JOURNAL_STREAM",
                "INVOCATION_ID", "WATCHDOG_USEC", "WATCHDOG_PID", "SECCTL_SOCKET", "ASAN_OPTIONS",
                "UBSAN_OPTIONS", "LSAN_OPTIONS")


def base_env(extra=None):
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    env.update(SANITIZER_ENV)
    env["LC_ALL"] = "C.UTF-8"
    if extra:
        env.update(extra)
    return env


def sanitizer_report(text):
    """The first lines of a sanitizer report in text, or None."""
    m = SANITIZER_REPORT.search(text or "")
    if not m:
        return None
    start = text.rfind("\n", 0, m.start()) + 1
    return text[start:start + 4000]


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256sum(*paths, cwd=None):
    """What coreutils' sha256sum prints, byte for byte."""
    return subprocess.run(["sha256sum", "--", *paths], check=True, capture_output=True,
                          cwd=cwd).stdout


class Deadline:
    def __init__(self, seconds=None):
        self.end = time.monotonic() + (TIMEOUT if seconds is None else seconds)

    def remaining(self):
        return max(0.0, self.end - time.monotonic())

    def expired(self):
        return time.monotonic() >= self.end


def wait_until(predicate, timeout=None, interval=0.02, what="condition"):
    """Poll predicate() until it returns a true value, or fail after timeout."""
    d = Deadline(timeout)
    while True:
        v = predicate()
        if v:
            return v
        if d.expired():
            raise AssertionError(f"timed out after {TIMEOUT if timeout is None else timeout:g}s "
                                 f"waiting for {what}")
        time.sleep(interval)


def drop_privileges(uid, gid=None, groups=()):
    """In a child: become uid (and gid, default the user's primary group) for good."""
    if gid is None:
        try:
            gid = pwd.getpwuid(uid).pw_gid
        except KeyError:
            gid = uid
    os.setgroups(list(groups))
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


def run_as(uid, func, *args, gid=None, timeout=None):
    """Fork, drop to uid, run func(*args) and hand its JSON-able result back.

    An exception in the child is re-raised in the parent as AssertionError
    carrying the child's traceback.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(r)
            drop_privileges(uid, gid)
            out = {"ok": func(*args)}
        except BaseException:
            out = {"exception": traceback.format_exc()}
            code = 1
        try:
            data = json.dumps(out).encode()
            view = memoryview(data)
            while view:
                n = os.write(w, view)
                view = view[n:]
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    d = Deadline(timeout)
    try:
        while True:
            ready, _, _ = select.select([r], [], [], d.remaining())
            if not ready:
                os.kill(pid, signal.SIGKILL)
                raise AssertionError(f"child as uid {uid} did not finish in time")
            chunk = os.read(r, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    out = json.loads(b"".join(chunks) or b"{}")
    if "exception" in out:
        raise AssertionError(f"in child as uid {uid}:\n{out['exception']}")
    if "ok" not in out:
        raise AssertionError(f"child as uid {uid} died without a result")
    return out["ok"]


_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def die_with_parent():
    """preexec_fn: SIGKILL when the test process goes away (ctest timeout, ^C)."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def read_line(pipe, deadline, buf):
    """Read one line from a binary pipe before deadline; buf (a bytearray) keeps the rest.

    Returns the line (bytes, with its newline), b"" at EOF, or None on timeout.
    """
    fd = pipe.fileno()
    while b"\n" not in buf:
        ready, _, _ = select.select([fd], [], [], deadline.remaining())
        if not ready:
            return None
        chunk = os.read(fd, 65536)
        if not chunk:
            line = bytes(buf)
            buf.clear()
            return line
        buf += chunk
    i = buf.index(b"\n") + 1
    line = bytes(buf[:i])
    del buf[:i]
    return line


class NotifySocket:
    """An AF_UNIX datagram socket standing in for the service manager."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.bind(path)
        self.messages = []   # every datagram, as a dict of its assignments, in order
        self.cursor = 0      # index of the next message wait_for() looks at

    def close(self):
        self.sock.close()

    def _receive(self, timeout):
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return False
        data = self.sock.recv(65536)
        fields = {}
        for line in data.decode("utf-8", "replace").split("\n"):
            if "=" in line:
                k, v = line.split("=", 1)
                fields[k] = v
        self.messages.append(fields)
        return True

    def drain(self):
        while self._receive(0):
            pass

    def wait_for(self, key, value, deadline, alive=None):
        """Wait for a datagram carrying key=value after the cursor; move the cursor past it.

        alive(): returns False when the sender is gone and waiting is futile.
        """
        while True:
            while self.cursor < len(self.messages):
                m = self.messages[self.cursor]
                self.cursor += 1
                if m.get(key) == value:
                    return m
            if deadline.expired():
                return None
            if alive is not None and not alive():
                self.drain()
                if self.cursor < len(self.messages):
                    continue
                return None
            self._receive(min(0.1, deadline.remaining()))

    def seen(self, key, value):
        self.drain()
        return [m for m in self.messages if m.get(key) == value]


class Secd:
    """One secd process (optionally under systemd-socket-activate)."""

    def __init__(self, tc, root, args, name="secd", activate=None, cwd=None, env=None,
                 runtime_dir=None, state_dir=None):
        self.tc = tc
        self.root = root
        self.name = name
        self.args = list(args)
        self.activate = activate      # list of (name, path) for systemd-socket-activate
        self.cwd = cwd or root
        self.extra_env = env or {}
        self.runtime_dir = runtime_dir
        self.state_dir = state_dir
        self.proc = None
        self.returncode = None
        self.notify = None
        self.stdout_path = os.path.join(root, f"{name}.stdout")
        self.stderr_path = os.path.join(root, f"{name}.stderr")

    # Paths of the sockets secd binds itself under its runtime directory.
    @property
    def control(self):
        return os.path.join(self.runtime_dir, "control.sock")

    @property
    def data(self):
        return os.path.join(self.runtime_dir, "secd.sock")

    @property
    def enroll(self):
        return os.path.join(self.runtime_dir, "enroll.sock")

    @property
    def db(self):
        return os.path.join(self.state_dir, "secd.db")

    def start(self, wait_ready=True):
        n = sum(1 for f in os.listdir(self.root) if f.startswith("notify"))
        self.notify = NotifySocket(os.path.join(self.root, f"notify{n}.sock"))
        env = base_env(self.extra_env)
        env["NOTIFY_SOCKET"] = self.notify.path
        argv = [SECD, *self.args]
        if self.activate:
            pre = [SOCKET_ACTIVATE]
            for _, path in self.activate:
                pre += ["-l", path]
            pre.append("--fdname=" + ":".join(n for n, _ in self.activate))
            # systemd-socket-activate hands only the environment it is told to.
            for k in ("NOTIFY_SOCKET", "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "LC_ALL",
                      *self.extra_env):
                pre += ["-E", k]
            argv = pre + argv
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         env=env, cwd=self.cwd, start_new_session=True,
                                         preexec_fn=die_with_parent)
        self.tc.addCleanup(self.kill)
        if wait_ready:
            if self.activate:
                self.trigger_activation()
            self.wait_ready()
        return self

    def trigger_activation(self):
        """systemd-socket-activate execs secd on the first connection: make one."""
        path = self.activate[0][1]
        wait_until(lambda: os.path.exists(path), what=f"{path} from systemd-socket-activate")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(TIMEOUT)
        s.connect(path)
        self.tc.addCleanup(s.close)
        return s

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid

    def stdout(self):
        with open(self.stdout_path, "r", errors="replace") as f:
            return f.read()

    def stderr(self):
        with open(self.stderr_path, "r", errors="replace") as f:
            return f.read()

    def output(self):
        return self.stdout() + self.stderr()

    def describe(self):
        return (f"--- {self.name}: {' '.join(self.args)} (exit {self.proc.poll() if self.proc else None})\n"
                f"--- stdout:\n{self.stdout()}--- stderr:\n{self.stderr()}--- notify: "
                f"{self.notify.messages if self.notify else None}\n")

    def wait_for_notify(self, key, value, what=None, timeout=None):
        m = self.notify.wait_for(key, value, Deadline(timeout), alive=self.alive)
        if m is None:
            why = (f"it exited with status {self.proc.returncode}" if not self.alive()
                   else f"still waiting after {TIMEOUT if timeout is None else timeout:g}s")
            self.tc.fail(f"{self.name}: no {key}={value}{' (' + what + ')' if what else ''}: {why}\n"
                         f"{self.stderr()[-3000:]}")
        return m

    def wait_ready(self, timeout=None):
        m = self.wait_for_notify("READY", "1", "readiness", timeout)
        self.check_sanitizers()
        return m

    def wait_exit(self, timeout=None):
        try:
            self.returncode = self.proc.wait(TIMEOUT if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            self.tc.fail(f"{self.name} did not exit within {TIMEOUT if timeout is None else timeout:g}s\n"
                         f"{self.describe()}")
        self.notify.drain()
        return self.returncode

    def check_sanitizers(self):
        report = sanitizer_report(self.stderr())
        if report:
            self.tc.fail(f"{self.name}: sanitizer report:\n{report}\n{self.describe()}")

    def stop(self, expect_code=0, timeout=None):
        """SIGTERM; assert STOPPING=1, the exit code and a clean stderr."""
        self.proc.send_signal(signal.SIGTERM)
        self.wait_for_notify("STOPPING", "1", "after SIGTERM", timeout)
        code = self.wait_exit(timeout)
        self.check_sanitizers()
        if expect_code is not None:
            self.tc.assertEqual(code, expect_code,
                                f"{self.name} exit status after SIGTERM\n{self.describe()}")
        return code

    def reload(self):
        """SIGHUP; assert RELOADING=1 and then READY=1."""
        self.notify.drain()
        self.proc.send_signal(signal.SIGHUP)
        self.wait_for_notify("RELOADING", "1", "after SIGHUP")
        self.wait_for_notify("READY", "1", "after reload")
        self.tc.assertTrue(self.alive(), self.describe())

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        if self.notify is not None:
            self.notify.close()


class VarlinkError(Exception):
    def __init__(self, reply):
        super().__init__(f"{reply.get('error')} {reply.get('parameters')}")
        self.reply = reply
        self.error = reply.get("error")
        self.parameters = reply.get("parameters") or {}


class RawVarlink:
    """A Varlink client that speaks the wire protocol by hand, byte for byte."""

    def __init__(self, path, timeout=None, connect=True):
        self.path = path
        self.timeout = TIMEOUT if timeout is None else timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.sock.settimeout(self.timeout)
        self.buf = b""
        if connect:
            self.sock.connect(path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.sock.close()

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, method, parameters=None, more=False, oneway=False, **extra):
        msg = {"method": method}
        if parameters is not None:
            msg["parameters"] = parameters
        if more:
            msg["more"] = True
        if oneway:
            msg["oneway"] = True
        msg.update(extra)
        self.send_raw(json.dumps(msg).encode() + b"\0")

    def recv(self, timeout=None):
        """The next message as a dict; None at EOF; raises TimeoutError."""
        d = Deadline(self.timeout if timeout is None else timeout)
        while b"\0" not in self.buf:
            self.sock.settimeout(max(d.remaining(), 0.001))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise TimeoutError(f"no Varlink reply on {self.path} in time") from None
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                if self.buf:
                    raise AssertionError(f"EOF after a partial message: {self.buf[:200]!r}")
                return None
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg.decode("utf-8"))

    def call(self, method, parameters=None, **kw):
        """One call, one reply; Varlink errors raise VarlinkError."""
        self.send(method, parameters, **kw)
        reply = self.recv()
        if reply is None:
            raise ConnectionError(f"{method}: connection closed without a reply")
        if reply.get("error"):
            raise VarlinkError(reply)
        return reply.get("parameters", {})

    def closed_by_peer(self, timeout=None):
        """True if the peer closes the connection (EOF or reset) before timeout.

        Anything the peer sends first is discarded (and returned via self.discarded).
        """
        d = Deadline(self.timeout if timeout is None else timeout)
        self.discarded = self.buf
        self.buf = b""
        while not d.expired():
            self.sock.settimeout(max(d.remaining(), 0.001))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False
            except (ConnectionResetError, BrokenPipeError):
                return True
            if not chunk:
                return True
            self.discarded += chunk
        return False


class SecdTestCase(unittest.TestCase):
    """Base class: a private directory per test, daemons and clients cleaned up."""

    maxDiff = None

    @classmethod
    def setUpClass(cls):
        for what, path in (("SECD", SECD), ("SECCTL", SECCTL)):
            if not path or not os.access(path, os.X_OK):
                raise unittest.SkipTest(f"{what} is not set to an executable (got {path!r})")

    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="secd-it-", dir="/tmp")
        # Other uids (nobody) must be able to reach sockets below it.
        os.chmod(self.root, 0o755)
        self.daemons = []
        self.addCleanup(self._cleanup_root)

    def _cleanup_root(self):
        result = getattr(self._outcome, "result", None)
        failed = result is None or any(
            t is self or getattr(t, "test_case", None) is self
            for t, _ in getattr(result, "failures", []) + getattr(result, "errors", []))
        if failed:
            for d in self.daemons:
                sys.stderr.write(d.describe())
        if os.environ.get("SECD_TEST_KEEP") == "1":
            sys.stderr.write(f"kept {self.root}\n")
        else:
            shutil.rmtree(self.root, ignore_errors=True)

    # ---- daemons -----------------------------------------------------------

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def secd_dev(self, name="secd", extra_args=(), start=True, state_dir=None, runtime_dir=None,
                 env=None):
        """secd --dev with explicit state and runtime directories under the test's root."""
        state_dir = state_dir or self.path(name, "state")
        runtime_dir = runtime_dir or self.path(name, "run")
        d = Secd(self, self.root, ["--dev", "--state-dir", state_dir, "--runtime-dir", runtime_dir,
                                   *extra_args],
                 name=name, runtime_dir=runtime_dir, state_dir=state_dir, env=env)
        self.daemons.append(d)
        if start:
            d.start()
        return d

    def secd_config(self, lines, name="secd", extra_args=(), start=True, dev=False):
        """secd --config FILE with a generated file of "key = value" lines."""
        conf = self.path(f"{name}.conf")
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        state_dir = runtime_dir = None
        for line in lines:
            m = re.match(r"\s*(state_dir|runtime_dir)\s*=\s*(\S+)", line)
            if m and m.group(1) == "state_dir":
                state_dir = m.group(2)
            elif m:
                runtime_dir = m.group(2)
        d = Secd(self, self.root, [*(["--dev"] if dev else []), "--config", conf, *extra_args],
                 name=name, runtime_dir=runtime_dir, state_dir=state_dir)
        d.config_path = conf
        self.daemons.append(d)
        if start:
            d.start()
        return d

    def secd_expect_start_failure(self, args, name="secd-fail", cwd=None):
        """Run secd that must refuse to start: non-zero exit, no READY=1. Returns its output."""
        d = Secd(self, self.root, args, name=name, cwd=cwd)
        self.daemons.append(d)
        d.start(wait_ready=False)
        code = d.wait_exit()
        d.check_sanitizers()
        self.assertNotEqual(code, 0, f"{name} should have refused to start\n{d.describe()}")
        self.assertGreater(code, 0, f"{name} died by a signal\n{d.describe()}")
        self.assertEqual(d.notify.seen("READY", "1"), [], f"{name} said READY=1\n{d.describe()}")
        return d.output()

    # ---- secctl ------------------------------------------------------------

    def secctl(self, *args, daemon=None, sock=None, uid=None, gid=None, groups=(), env=None,
               input=None, timeout=None, expect=None):
        """Run secctl; SECCTL_SOCKET points at daemon's (or the first daemon's) control socket.

        expect: the exit status that must come out (None: don't check).
        Returns the CompletedProcess (text stdout/stderr).
        """
        e = base_env(env)
        if sock is None:
            daemon = daemon or (self.daemons[0] if self.daemons else None)
            sock = daemon.control if daemon else None
        if sock is not None:
            e["SECCTL_SOCKET"] = sock
        kw = {}
        if uid is not None:
            kw["preexec_fn"] = lambda: drop_privileges(uid, gid, groups)
        cp = subprocess.run([SECCTL, *args], capture_output=True, text=True, env=e, input=input,
                            timeout=TIMEOUT if timeout is None else timeout, cwd=self.root, **kw)
        report = sanitizer_report(cp.stderr)
        if report:
            self.fail(f"secctl {' '.join(args)}: sanitizer report:\n{report}")
        if expect is not None:
            self.assertEqual(cp.returncode, expect, self.describe_cp(cp))
        return cp

    @staticmethod
    def describe_cp(cp):
        return (f"command: {cp.args}\nexit: {cp.returncode}\n--- stdout:\n{cp.stdout}\n"
                f"--- stderr:\n{cp.stderr}")

    def secctl_json(self, *args, **kw):
        """secctl --json ...: must succeed; returns the parsed document."""
        kw.setdefault("expect", EXIT_SUCCESS)
        cp = self.secctl("--json", *args, **kw)
        try:
            return json.loads(cp.stdout)
        except json.JSONDecodeError as e:
            self.fail(f"secctl --json output is not JSON ({e})\n{self.describe_cp(cp)}")

    def rules(self, **kw):
        return self.secctl_json("policy", "list", **kw)["rules"]

    def add_rule(self, action, *selectors, **kw):
        """secctl policy allow|deny SELECTORS; returns the new rule's id."""
        doc = self.secctl_json("policy", action, *selectors, **kw)
        self.assertIsInstance(doc.get("id"), int, doc)
        return doc["id"]

    # ---- clients -----------------------------------------------------------

    def varlink(self, daemon=None, path=None):
        c = RawVarlink(path or (daemon or self.daemons[0]).control)
        self.addCleanup(c.close)
        return c

    def assert_serving(self, daemon=None, rules=None):
        """A fresh well-formed call on a new connection succeeds; the rules are as expected."""
        daemon = daemon or self.daemons[0]
        self.assertTrue(daemon.alive(), daemon.describe())
        with RawVarlink(daemon.control) as c:
            reply = c.call("io.secd.Policy.List")
        if rules is not None:
            self.assertEqual(reply["rules"], rules)
        return reply
