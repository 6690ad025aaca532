# SPDX-License-Identifier: LGPL-2.1-or-later
"""Helpers for the mTLS integration tests (issue 4): frames, TLS clients,
enrollment from Python, certificates made by hand, and the C test client.

Frames (docs/protocol.md, common/frame.h): magic 'SD', version 1, type,
request id (u32 BE), payload length (u32 BE), payload. PING 0x01 -> PONG
0x81 with the same id and payload; ERROR 0xFF carries a u16 BE code and a
UTF-8 message.

TLS 1.3 clients report a finished handshake before the server has judged
their certificate, so every check here ends in a PING round trip.
"""

import datetime
import glob
import json
import os
import random
import re
import select
import socket
import ssl
import struct
import subprocess

from secdtest import Deadline, RawVarlink, TIMEOUT, VarlinkError, base_env, die_with_parent

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    HAVE_CRYPTOGRAPHY = True
except ImportError:  # pragma: no cover
    HAVE_CRYPTOGRAPHY = False

TEST_CLIENT = os.environ.get("SECD_TEST_CLIENT", "")
TEST_CLIENT_MARKER = b"SECD-TEST-CLIENT-MARKER-0123456789abcdef"
PYTHON_EXE = os.path.realpath("/usr/bin/python3")

FRAME_HEADER = 12
PING = 0x01
PONG = 0x81
ERROR = 0xFF
ERR_BAD_FRAME = 1
ERR_UNKNOWN_TYPE = 2
ERR_TOO_LARGE = 3
ERR_BAD_PAYLOAD = 4
ERR_NOT_ADMITTED = 5
ERR_CERT_REVOKED = 6
ERR_CERT_EXPIRED = 7
ERR_SHUTTING_DOWN = 9
ERR_IDLE_TIMEOUT = 10
PAYLOAD_MAX_DEFAULT = 1 << 20
PAYLOAD_MAX_HARD = 16 << 20


def frame(ftype, request_id, payload=b"", magic=b"SD", version=1, length=None):
    if length is None:
        length = len(payload)
    return magic + bytes([version, ftype]) + struct.pack(">II", request_id, length) + payload


class Outcome:
    """What came back for a request: a frame, EOF, a reset or a TLS alert."""

    def __init__(self, kind, ftype=None, request_id=None, payload=b"", detail=""):
        self.kind = kind          # "frame", "eof", "reset", "tls-error", "timeout"
        self.type = ftype
        self.request_id = request_id
        self.payload = payload
        self.detail = detail

    @property
    def error_code(self):
        if self.kind == "frame" and self.type == ERROR and len(self.payload) >= 2:
            return struct.unpack(">H", self.payload[:2])[0]
        return None

    @property
    def error_message(self):
        return self.payload[2:].decode("utf-8", "replace") if self.error_code is not None else None

    def is_pong(self, request_id, payload):
        return (self.kind, self.type, self.request_id, self.payload) == ("frame", PONG, request_id,
                                                                           payload)

    def refused(self):
        """A refusal: ERROR frame, EOF, reset or TLS alert; never a PONG, never silence."""
        return self.kind in ("eof", "reset", "tls-error") or (self.kind == "frame" and self.type == ERROR)

    def __repr__(self):
        if self.kind == "frame":
            extra = (f" code={self.error_code} {self.error_message!r}" if self.error_code is not None
                     else f" payload={self.payload[:64]!r}")
            return f"<frame type=0x{self.type:02x} id={self.request_id}{extra}>"
        return f"<{self.kind} {self.detail}>"


def recv_some(sock, deadline, n=65536):
    """One recv before deadline: bytes (b"" at EOF); raises TimeoutError."""
    sock.settimeout(max(deadline.remaining(), 0.001))
    try:
        return sock.recv(n)
    except socket.timeout:
        raise TimeoutError from None


class FrameConn:
    """Frames over a connected socket (TLS or not) with bounded reads."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        self.sock.sendall(data)

    def read_frame(self, timeout=None):
        d = Deadline(timeout)
        try:
            while True:
                if len(self.buf) >= FRAME_HEADER:
                    length = struct.unpack(">I", self.buf[8:12])[0]
                    if len(self.buf) >= FRAME_HEADER + length:
                        f = self.buf[:FRAME_HEADER + length]
                        self.buf = self.buf[FRAME_HEADER + length:]
                        if f[:3] != b"SD\x01":
                            return Outcome("frame", f[3], None, f, detail="bad magic from secd")
                        return Outcome("frame", f[3], struct.unpack(">I", f[4:8])[0], f[12:])
                chunk = recv_some(self.sock, d)
                if not chunk:
                    return Outcome("eof", detail=f"after {len(self.buf)} stray bytes")
                self.buf += chunk
        except TimeoutError:
            return Outcome("timeout", detail=f"no frame in {TIMEOUT if timeout is None else timeout:g}s")
        except (ConnectionResetError, BrokenPipeError) as e:
            return Outcome("reset", detail=str(e))
        except ssl.SSLError as e:
            return Outcome("tls-error", detail=str(e))

    def request(self, ftype, request_id, payload=b"", timeout=None, raw=None):
        try:
            self.send(raw if raw is not None else frame(ftype, request_id, payload))
        except (ConnectionResetError, BrokenPipeError) as e:
            return Outcome("reset", detail=f"on send: {e}")
        except ssl.SSLError as e:
            return Outcome("tls-error", detail=f"on send: {e}")
        return self.read_frame(timeout)

    def ping(self, request_id=1, payload=b"secd-it", timeout=None):
        return self.request(PING, request_id, payload, timeout)

    def closed_by_peer(self, timeout=None):
        """True on EOF/reset/TLS close before timeout; frames before that are kept in self.seen."""
        d = Deadline(timeout)
        self.seen = []
        while not d.expired():
            o = self.read_frame(d.remaining())
            if o.kind == "timeout":
                return False
            if o.kind != "frame":
                return True
            self.seen.append(o)
        return False


def tls_context(ca=None, cert=None, key=None, min_version=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    if ca:
        ctx.load_verify_locations(cafile=ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(cert, key)
    if min_version:
        ctx.minimum_version = min_version
    return ctx


def tls_connect(address, ctx, session=None, timeout=None, family=socket.AF_UNIX):
    """Connect and handshake. Returns (FrameConn, None) or (None, Outcome of the failure)."""
    raw = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    raw.settimeout(TIMEOUT if timeout is None else timeout)
    try:
        raw.connect(address)
        s = ctx.wrap_socket(raw, session=session)
    except ssl.SSLError as e:
        raw.close()
        return None, Outcome("tls-error", detail=str(e))
    except (ConnectionResetError, BrokenPipeError) as e:
        raw.close()
        return None, Outcome("reset", detail=str(e))
    except socket.timeout:
        raw.close()
        return None, Outcome("timeout", detail="handshake")
    except OSError as e:
        raw.close()
        if e.errno is None:  # EOF in the handshake
            return None, Outcome("eof", detail=str(e))
        raise
    return FrameConn(s), None


def tls_ping(address, ctx, session=None, payload=b"secd-it", family=socket.AF_UNIX, keep=False):
    """Full or resumed handshake plus one PING. Returns (Outcome, FrameConn or None, reused)."""
    conn, failure = tls_connect(address, ctx, session=session, family=family)
    if failure:
        return failure, None, False
    o = conn.ping(7, payload)
    reused = conn.sock.session_reused
    if not keep:
        conn.close()
        conn = None
    return o, conn, reused


def data_speaks_tls(path):
    """Whether the endpoint at path answers a ClientHello (TLS is implemented)."""
    ctx = tls_context()
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.settimeout(TIMEOUT)
    try:
        raw.connect(path)
        s = ctx.wrap_socket(raw)
        s.close()
        return True
    except ssl.SSLError as e:
        # An alert is an answer; EOF before any byte is not.
        return "EOF" not in str(e) and "UNEXPECTED_EOF" not in str(e)
    except (OSError, socket.timeout):
        return False
    finally:
        raw.close()


# ---- keys and certificates --------------------------------------------------

def make_key(kind):
    return ed25519.Ed25519PrivateKey.generate() if kind == "ed25519" else ec.generate_private_key(ec.SECP256R1())


def key_kind(public_key):
    return "ed25519" if isinstance(public_key, ed25519.Ed25519PublicKey) else "p256"


def sign_hash(key):
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def cert_pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def serial_hex(pem):
    c = x509.load_pem_x509_certificate(pem if isinstance(pem, bytes) else pem.encode())
    return "%032x" % c.serial_number


def cert_uris(pem):
    c = x509.load_pem_x509_certificate(pem if isinstance(pem, bytes) else pem.encode())
    try:
        san = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return san.get_values_for_type(x509.UniformResourceIdentifier)


def local_uri(uid, sha256):
    return f"secd://local/uid/{uid}/sha256/{sha256}"


def enroll_python(enroll_path, kinds=("ed25519", "p256")):
    """Enroll this process over io.secd.Enroll.Issue. Returns (key, reply parameters).

    Tries key types in order: the CA accepts one of them (docs/certificates.md).
    """
    last = None
    for kind in kinds:
        key = make_key(kind)
        csr = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "secd-it")]))
               .sign(key, sign_hash(key)))
        with RawVarlink(enroll_path) as v:
            try:
                return key, v.call("io.secd.Enroll.Issue",
                                   {"csr": csr.public_bytes(serialization.Encoding.PEM).decode()})
            except VarlinkError as e:
                last = e
                if e.error != "io.secd.Enroll.InvalidRequest":
                    raise
    raise last


def write_secret(directory, name, data):
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    return path


def find_private_key_for(directory, public_key):
    """The PEM private key file under directory whose public key is public_key."""
    want = public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    for path in sorted(glob.glob(os.path.join(directory, "**"), recursive=True)):
        if not os.path.isfile(path) or os.path.getsize(path) > 65536:
            continue
        with open(path, "rb") as f:
            data = f.read()
        if b"PRIVATE KEY-----" not in data:
            continue
        try:
            k = serialization.load_pem_private_key(data, None)
        except (ValueError, TypeError):
            continue
        if k.public_key().public_bytes(serialization.Encoding.DER,
                                       serialization.PublicFormat.SubjectPublicKeyInfo) == want:
            return k
    return None


def make_ca(subject, kind):
    key = make_key(kind)
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, sign_hash(key)))
    return cert, key


def make_client_cert(issuer_cert, issuer_key, public_key, uri, not_before=None, not_after=None,
                     eku=("client",), serial=None):
    """A certificate like an enrolled one, signed by issuer_key; every property adjustable."""
    now = datetime.datetime.now(datetime.timezone.utc)
    not_before = not_before or now - datetime.timedelta(minutes=5)
    not_after = not_after or now + datetime.timedelta(hours=1)
    purposes = {"client": ExtendedKeyUsageOID.CLIENT_AUTH, "server": ExtendedKeyUsageOID.SERVER_AUTH}
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "secd-it-crafted")]))
         .issuer_name(issuer_cert.subject).public_key(public_key)
         # 16 bytes, 32 hex digits, like secd's own serials.
         .serial_number(serial or (1 << 126) | random.getrandbits(126))
         .not_valid_before(not_before).not_valid_after(not_after)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                      key_encipherment=False, data_encipherment=False,
                                      key_agreement=False, key_cert_sign=False, crl_sign=False,
                                      encipher_only=False, decipher_only=False), critical=True)
         .add_extension(x509.ExtendedKeyUsage([purposes[p] for p in eku]), critical=False)
         .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]),
                        critical=False))
    # The issuer's own key identifier (GnuTLS picks the issuer by it).
    try:
        ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key())
    b = b.add_extension(aki, critical=False)
    return b.sign(issuer_key, sign_hash(issuer_key))


# ---- the C test client ------------------------------------------------------

def parse_client_output(text):
    steps = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                doc = json.loads(line)
            except json.JSONDecodeError:
                continue
            steps[doc.get("step")] = doc
    return steps


def run_client(exe, args, uid=None, gid=None, pass_fds=(), timeout=None, env=None, stdin=None, extra_groups=()):
    """Run the test client to completion. Returns (exit status, {step: result}, stdout, stderr)."""
    kw = {}
    if uid is not None:
        kw.update(user=uid, group=gid if gid is not None else uid, extra_groups=list(extra_groups))
    cp = subprocess.run([exe, *args], capture_output=True, text=True, env=base_env(env),
                        timeout=TIMEOUT if timeout is None else timeout, cwd="/",
                        pass_fds=pass_fds, input=stdin, **kw)
    return cp.returncode, parse_client_output(cp.stdout), cp.stdout, cp.stderr


def copy_with_flipped_marker(src, dst):
    """Copy src to dst (0755) with one byte of the embedded marker changed."""
    with open(src, "rb") as f:
        data = bytearray(f.read())
    i = data.find(TEST_CLIENT_MARKER)
    if i < 0:
        raise AssertionError(f"marker not found in {src}")
    j = i + TEST_CLIENT_MARKER.index(b"0")
    data[j] = ord("1")
    with open(dst, "wb") as f:
        f.write(data)
    os.chmod(dst, 0o755)
    return dst


SOURCE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def source_has(*paths):
    """Whether all these files are in the source tree these tests come from."""
    return all(os.path.exists(os.path.join(SOURCE_DIR, p)) for p in paths)


def source_contains(path, text):
    """Whether the source file path (relative to the tree) contains text."""
    try:
        with open(os.path.join(SOURCE_DIR, path), errors="replace") as f:
            return text in f.read()
    except FileNotFoundError:
        return False


def revocation_closes_sessions():
    """The Certs side calls data_connections_revoked() after a revocation (issue 4 contract).

    A statement, not the mention in a comment.
    """
    try:
        with open(os.path.join(SOURCE_DIR, "secd/control-certs.c"), errors="replace") as f:
            text = f.read()
    except FileNotFoundError:
        return False
    return re.search(r"^\s+data_connections_revoked\([^;]*\);", text, re.M) is not None


REVOCATION_CLOSE_MISSING = ("secd/control-certs.c does not call data_connections_revoked() yet: "
                            "a revocation does not reach live sessions")


def client_available():
    return bool(TEST_CLIENT) and os.access(TEST_CLIENT, os.X_OK)


def free_tcp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def read_exact_from(fd, n, deadline):
    """Read n bytes from a pipe fd before deadline; returns what arrived (short at EOF/timeout)."""
    out = b""
    while len(out) < n:
        ready, _, _ = select.select([fd], [], [], deadline.remaining())
        if not ready:
            break
        chunk = os.read(fd, n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def secd_help_has(secd, option):
    cp = subprocess.run([secd, "--help"], capture_output=True, text=True, env=base_env(),
                        timeout=TIMEOUT)
    return re.search(r"--" + re.escape(option) + r"\b", cp.stdout + cp.stderr) is not None


# ---- the relay test tool (issue 5) --------------------------------------------

import shutil  # noqa: E402 (this section's own needs)

from secdtest import SecdTestCase, read_line, sanitizer_report, sha256_file  # noqa: E402

RELAY_CLIENT = os.environ.get("SECD_RELAY_CLIENT", "")
SECMSG = os.environ.get("SECMSG", "")

REGISTER = 0x10
SEND = 0x11
FETCH = 0x12
ACK = 0x13
KEYS_PUBLISH = 0x20
KEYS_BUNDLE = 0x21
KEYS_COUNT = 0x22
RELAY_REQUEST_TYPES = (REGISTER, SEND, FETCH, ACK, KEYS_PUBLISH, KEYS_BUNDLE, KEYS_COUNT)
ERR_NOT_REGISTERED = 11
ERR_BAD_SIGNATURE = 12
ERR_NOT_OWNER = 13
ERR_MAILBOX_BUSY = 14
ERR_NO_SUCH_MAILBOX = 15
ERR_QUOTA_EXCEEDED = 16
ERR_RATE_LIMITED = 17
ERR_MESSAGE_TOO_LARGE = 18
ERR_NO_KEYS = 19
ERR_BUSY = 20
ERR_ALREADY_REGISTERED = 21

DOMAIN_REGISTER = b"secd relay register v1"
DOMAIN_IDENTITY_DH = b"secd keys identity-dh v1"
DOMAIN_SIGNED_PREKEY = b"secd keys signed-prekey v1"


def relay_client_available():
    return bool(RELAY_CLIENT) and os.access(RELAY_CLIENT, os.X_OK)


def fill_pattern(n, cid=bytes(range(16))):
    """What secd-relay-client's fill:N and crash-send write: (cid[k % 16] + 7k) mod 256."""
    return bytes((cid[k % 16] + 7 * k) & 0xFF for k in range(n))


class Identity:
    """An Ed25519 mailbox identity: a seed in a 0600 file (readable by owner_uid)."""

    def __init__(self, directory, name, owner_uid=None):
        self.seed = os.urandom(32)
        self.key = ed25519.Ed25519PrivateKey.from_private_bytes(self.seed)
        self.pub = self.key.public_key().public_bytes(serialization.Encoding.Raw,
                                                      serialization.PublicFormat.Raw)
        self.hex = self.pub.hex()
        self.path = write_secret(directory, f"{name}.seed", self.seed.hex())
        if owner_uid is not None:
            os.chown(self.path, owner_uid, -1)
        self.arg = "@" + self.path

    def sign(self, data):
        return self.key.sign(data)

    def file_for(self, uid):
        """The same seed in another 0600 file owned by uid (an attacker who stole the key)."""
        n = len(os.listdir(os.path.dirname(self.path)))
        path = write_secret(os.path.dirname(self.path), f"copy{n}.seed", self.seed.hex())
        os.chown(path, uid, -1)
        return "@" + path


def publish_payload(ident, n_otks=3, spk_id=7, otk_id0=1000, identity_dh=None, spk=None, otk_ids=None):
    """A valid KEYS_PUBLISH payload for ident (docs/protocol.md), X25519 keys random."""
    identity_dh = identity_dh or os.urandom(32)
    spk = spk or os.urandom(32)
    ids = otk_ids if otk_ids is not None else [otk_id0 + i for i in range(n_otks)]
    p = identity_dh + ident.sign(DOMAIN_IDENTITY_DH + identity_dh)
    p += struct.pack(">I", spk_id) + spk + ident.sign(DOMAIN_SIGNED_PREKEY + struct.pack(">I", spk_id) + spk)
    p += struct.pack(">H", len(ids)) + b"".join(struct.pack(">I", i) + os.urandom(32) for i in ids)
    return p


class RelayTool:
    """secd-relay-client in script mode: one command in, one JSON line out, each bounded."""

    def __init__(self, tc, exe, args, uid=None, gid=None, connect=True, name="tool"):
        self.tc = tc
        self.name = name
        self.stderr_path = tc.path(f"{name}-{len(os.listdir(tc.root))}.stderr")
        kw = {}
        if uid is not None:
            kw.update(user=uid, group=gid if gid is not None else uid, extra_groups=[])
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen([exe, *args, *([] if connect else ["--no-connect"]), "script"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                         env=base_env(), cwd="/", preexec_fn=die_with_parent, **kw)
        self.buf = bytearray()
        tc.addCleanup(self.kill)
        self.connect_result = self.read() if connect else None

    def read(self, timeout=None):
        line = read_line(self.proc.stdout, Deadline(timeout), self.buf)
        if line is None:
            self.tc.fail(f"{self.name}: no answer in {TIMEOUT if timeout is None else timeout:g}s\n"
                         f"{self.stderr()}")
        if not line:
            self.tc.fail(f"{self.name}: exited ({self.proc.wait(5)}) without an answer\n{self.stderr()}")
        return json.loads(line)

    def write(self, line):
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def cmd(self, line, timeout=None, ok=None):
        """Run one command; ok=True/False asserts its outcome. Returns the parsed line."""
        self.write(line)
        out = self.read(timeout)
        if ok is not None:
            self.tc.assertEqual(out.get("ok"), ok, f"{self.name}: {line[:200]} -> {out}")
        return out

    def stderr(self):
        with open(self.stderr_path, "r", errors="replace") as f:
            return f.read()

    def close(self, timeout=None):
        """quit; returns the exit status; a sanitizer report fails the test."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(b"quit\n")
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
            try:
                self.proc.wait(TIMEOUT if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.check_sanitizers()
        return self.proc.returncode

    def check_sanitizers(self):
        report = sanitizer_report(self.stderr())
        if report:
            self.tc.fail(f"{self.name}: sanitizer report:\n{report}")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except (OSError, BrokenPipeError):
                pass


class RelayTestCase(SecdTestCase):
    """secd --dev and secd-relay-client copies any uid can run (issue 5 tests)."""

    secd_extra_args = ()
    relay_sources = ("secd/relay.c",)   # any of them in the tree: the feature must work
    relay_probe = FETCH                 # a frame secd answers once they are in

    def setUp(self):
        super().setUp()
        if not relay_client_available():
            self.skipTest("secd-relay-client is not built: libsecclient lacks relay calls "
                          "(see tests/integration/CMakeLists.txt)")
        bindir = self.path("bin")
        os.mkdir(bindir, 0o755)
        self.client = os.path.join(bindir, "secd-relay-client")
        shutil.copy(RELAY_CLIENT, self.client)
        os.chmod(self.client, 0o755)
        self.secrets = self.path("secrets")
        os.mkdir(self.secrets, 0o755)
        self.d = self.start_secd()
        self.require_relay()

    def tearDown(self):
        for d in self.daemons:
            if d.alive():
                d.stop()
        super().tearDown()

    def start_secd(self, extra_args=(), name="secd", **kw):
        # Every tool process enrolls: lift the per-uid enrollment limit (10/min).
        d = self.secd_dev(name=name, extra_args=("--enroll-rate-limit", "1000", *self.secd_extra_args,
                                                 *extra_args), **kw)
        if d.proc is not None:
            self.open_runtime_dir(d)
        return d

    @staticmethod
    def open_runtime_dir(d):
        for p in (os.path.dirname(d.runtime_dir), d.runtime_dir):
            if os.path.isdir(p):
                os.chmod(p, 0o755)

    def tool_args(self, d=None):
        d = d or self.d
        return ["--enroll-socket", d.enroll, "--endpoint", d.data, "--timeout", str(int(TIMEOUT * 1000 / 2))]

    def tool(self, uid=None, connect=True, name="tool", d=None):
        t = RelayTool(self, self.client, self.tool_args(d), uid=uid, connect=connect, name=name)
        if connect:
            self.assertTrue(t.connect_result.get("ok"), f"{name} did not connect: {t.connect_result}\n"
                                                        f"{t.stderr()}")
        return t

    def run_tool(self, *args, uid=None, d=None, timeout=None):
        """One-shot command: (exit status, [parsed lines], stderr)."""
        kw = {}
        if uid is not None:
            kw.update(user=uid, group=uid, extra_groups=[])
        cp = subprocess.run([self.client, *self.tool_args(d), *args], capture_output=True, text=True,
                            env=base_env(), cwd="/", timeout=TIMEOUT if timeout is None else timeout, **kw)
        report = sanitizer_report(cp.stderr)
        if report:
            self.fail(f"secd-relay-client: sanitizer report:\n{report}")
        lines = [json.loads(x) for x in cp.stdout.splitlines() if x.startswith("{")]
        return cp.returncode, lines, cp.stderr

    def identity(self, name, uid=None):
        return Identity(self.secrets, name, owner_uid=uid)

    def allow_nobody(self):
        from secdtest import NOBODY_UID
        return self.add_rule("allow", "--uid", str(NOBODY_UID), "--sha256", sha256_file(self.client))

    def require_relay(self):
        """secd answers relay frames: skip only while their source is not in the tree."""
        sources, probe = self.relay_sources, self.relay_probe
        t = self.tool(name="probe")
        out = t.cmd(f"raw {probe} -", ok=True)
        t.close()
        if out.get("code") == ERR_UNKNOWN_TYPE:
            if any(source_has(s) for s in sources):
                self.fail(f"{', '.join(sources)} in the tree, but secd answers frame 0x{probe:02x} "
                          f"with UNKNOWN_TYPE")
            self.skipTest(f"secd does not serve frame 0x{probe:02x} yet ({', '.join(sources)} missing)")

    def assert_code(self, out, code, what=""):
        self.assertTrue(out.get("ok"), f"{what}: the request itself failed: {out}")
        self.assertEqual((out.get("type"), out.get("code")), (ERROR, code),
                         f"{what}: expected ERROR {code}, got {out}")
        if "request_id_matches" in out:
            self.assertTrue(out["request_id_matches"], f"{what}: ERROR for the connection: {out}")

    def assert_reply(self, out, ftype, what=""):
        self.assertTrue(out.get("ok"), f"{what}: {out}")
        self.assertEqual(out.get("type"), ftype | 0x80, f"{what}: expected a 0x{ftype | 0x80:02x} reply, "
                                                        f"got {out}")
        return bytes.fromhex(out["payload"])

    def relay_stats(self, what="relay"):
        """secctl --json relay stats (or keys stats); skips while the verb is missing."""
        cp = self.secctl("--json", what, "stats")
        if cp.returncode != 0:
            if source_contains("secctl/secctl.c", f'"{what}"') or source_has(f"secctl/verb-{what}.c"):
                self.fail(f"secctl {what} stats fails\n{self.describe_cp(cp)}")
            self.skipTest(f"secctl has no '{what} stats' yet ({cp.stderr.strip()[:120]})")
        return json.loads(cp.stdout)


__all__ = [n for n in dir() if not n.startswith("_")] + ["die_with_parent"]
