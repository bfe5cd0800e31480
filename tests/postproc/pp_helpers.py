"""Helpers for the post-processor tests: media files, ffprobe, loopback servers, postproc."""

from __future__ import annotations

import getpass
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from email.parser import BytesParser
from email.policy import HTTP
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, List, Optional

from tests.helpers import ROOT, decode_errors, ffprobe, free_port, wait_for_port

PI_FRAMES = 116

#: Generous: two cores shared by several people running test suites.
WAIT = 60.0


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# -- media -------------------------------------------------------------------------


def make_h264(path: str, frames: int, fps: int = 12, size=(320, 240)) -> str:
    """A sim-like recording: libx264, Annex B, no B-frames, a keyframe every ``fps`` frames."""
    import av
    import numpy as np

    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height = size
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = Fraction(1, fps)
    ctx.framerate = fps
    ctx.gop_size = fps
    ctx.options = {"bf": "0", "preset": "ultrafast", "tune": "zerolatency", "keyint": str(fps)}
    w, h = size
    ramp = np.tile(np.arange(w, dtype=np.uint8), (h, 1))
    with open(path, "wb") as out:
        for i in range(frames):
            rgb = np.stack([ramp, np.roll(ramp, i * 4, axis=1), np.full_like(ramp, i % 256)], -1)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            frame.pts = i
            for packet in ctx.encode(frame):
                out.write(bytes(packet))
        for packet in ctx.encode(None):
            out.write(bytes(packet))
    return path


def probe(path: str) -> dict:
    """Frame count (by decoding), stream duration, size, codec and container, by ffprobe."""
    out = ffprobe(
        path,
        "-count_frames",
        "-show_entries",
        "stream=codec_name,width,height,nb_read_frames,duration:format=format_name",
        of="json",
    )
    info = json.loads(out)
    stream = info["streams"][0]
    return {
        "codec": stream["codec_name"],
        "width": int(stream["width"]),
        "height": int(stream["height"]),
        "frames": int(stream["nb_read_frames"]),
        "duration": float(stream["duration"]),
        "format": info["format"]["format_name"],
    }


def assert_mp4(path: str, frames: int, fps: float, size=None) -> None:
    info = probe(path)
    assert "mp4" in info["format"], info
    assert info["codec"] == "h264", info
    assert info["frames"] == frames, info
    # ffprobe prints microseconds: exact frames/fps, not "about right".
    assert abs(info["duration"] - frames / fps) < 2e-6, info
    if size:
        assert (info["width"], info["height"]) == tuple(size), info
    assert decode_errors(path) == ""


# -- the post-processor --------------------------------------------------------------


class Postproc:
    """A real postproc.py subprocess with its own socket name, state file and log."""

    def __init__(self, tmp_path, *args: str, env=None, state=None, log=True, name=None, umask=None):
        self.name = name or f"pp-test-{uuid.uuid4().hex}"
        self.umask = umask
        self.args = list(args)
        self.state = state or str(tmp_path / "state.sqlite")
        self.log = str(tmp_path / "postproc.log") if log else None
        self.stdout = str(tmp_path / f"stdout-{uuid.uuid4().hex}.txt")
        self.env = {**os.environ, **(env or {})}
        self.proc: Optional[subprocess.Popen] = None
        self._log_offset = 0

    def command(self) -> List[str]:
        cmd = [sys.executable, os.path.join(ROOT, "postproc.py"), self.name, *self.args]
        cmd += ["--state", self.state]
        if self.log:
            cmd += ["--log", self.log]
        return cmd

    def start(self, wait_ready: bool = True) -> Postproc:
        self._log_offset = len(self.log_text())
        with open(self.stdout, "ab") as out:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                umask=-1 if self.umask is None else self.umask,
            )
        if wait_ready:
            self.wait_log("post-processor ready")
        return self

    def log_text(self) -> str:
        path = self.log or self.stdout
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def new_log(self) -> str:
        """Log lines written since the last start."""
        return self.log_text()[self._log_offset :]

    def wait_log(self, text: str, count: int = 1, timeout: float = WAIT) -> str:
        def found():
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"postproc exited with {self.proc.returncode} while waiting for {text!r}:\n"
                    + self.log_text()[-3000:]
                    + open(self.stdout, errors="replace").read()[-3000:]
                )
            return self.new_log().count(text) >= count

        try:
            wait_until(found, timeout, f"{count} x {text!r} in the log")
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- log ---\n{self.log_text()[-4000:]}") from None
        return self.new_log()

    @property
    def address(self) -> str:
        return self.name if "/" in self.name else "\0" + self.name

    def send(self, message) -> None:
        data = message if isinstance(message, bytes) else json.dumps(message).encode()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(data, self.address)

    def stop(self, sig=signal.SIGTERM, timeout: float = WAIT) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("postproc did not stop on SIGTERM") from None

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def children(self) -> List[str]:
        """Command names of the daemon's child processes (from /proc)."""
        names = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                with open(f"/proc/{pid}/comm") as f:
                    comm = f.read().strip()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid:
                names.append(comm)
        return names


# -- full disks -------------------------------------------------------------------------


def fill(directory) -> str:
    """Fill the file system holding ``directory`` to the last byte; return the filler's path."""
    path = os.path.join(str(directory), f"filler-{uuid.uuid4().hex[:8]}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (1 << 16, 4096, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError:
                pass
    finally:
        os.close(fd)
    return path


# -- servers on loopback ------------------------------------------------------------


class LoopbackServer:
    """A server subprocess on a free loopback port; the test's thread starts and stops it."""

    def __init__(self):
        self.port = free_port()
        self.proc: Optional[subprocess.Popen] = None

    def _spawn(self, argv: List[str], log_path: str) -> None:
        """Run ``argv`` with its stderr appended to ``log_path``; return once the port listens."""
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log)
        wait_for_port(self.port, self.proc, WAIT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        self.proc = None


# -- an OpenSSH server on loopback ---------------------------------------------------


SLOW_TRANSFER_WRAPPER = """#!/bin/sh
# Forced command: lets a test hold a transfer open while it kills the client.
# With a rate in {rate} (bytes/s, 0 = full speed), uploads trickle in.
case "$SSH_ORIGINAL_COMMAND" in
  *sftp-server*|scp\\ *)
    touch "{marks}/transfer.$$"
    rate="$(cat {rate})"
    if [ "$rate" != 0 ]; then
      {python} -c "$TRICKLE" "$rate" | /bin/sh -c "$SSH_ORIGINAL_COMMAND"
      exit
    fi
    ;;
esac
exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"
"""

TRICKLE = """TRICKLE='
import os, sys, time
rate = int(sys.argv[1])
while True:
    data = os.read(0, 1024)
    if not data:
        break
    os.write(1, data)
    time.sleep(len(data) / rate)
'
"""


class SshServer(LoopbackServer):
    """sshd -D on a free loopback port, with its own host key and one authorized key."""

    def __init__(self, base):
        super().__init__()
        self.base = base
        self.dir = str(base / "sshd")
        os.makedirs(self.dir)
        self.user = getpass.getuser()
        self.remote = str(base / "remote-scp")
        os.makedirs(self.remote)
        self.marks = os.path.join(self.dir, "marks")
        os.makedirs(self.marks)
        self.rate_file = os.path.join(self.dir, "rate")
        self.set_rate(0)
        d = self.dir
        for name in ("host_key", "client_key"):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{d}/{name}"], check=True
            )
        wrapper = os.path.join(d, "forced-command.sh")
        with open(wrapper, "w") as f:
            script = SLOW_TRANSFER_WRAPPER.format(
                marks=self.marks, rate=self.rate_file, python=sys.executable
            )
            f.write(script.replace("#!/bin/sh\n", "#!/bin/sh\n" + TRICKLE, 1))
        os.chmod(wrapper, 0o755)
        with open(f"{d}/client_key.pub") as f:
            client_pub = f.read().strip()
        with open(f"{d}/authorized_keys", "w") as f:
            f.write(f'command="{wrapper}" {client_pub}\n')
        with open(f"{d}/host_key.pub") as f:
            host_pub = " ".join(f.read().split()[:2])
        with open(f"{d}/known_hosts", "w") as f:
            f.write(f"[127.0.0.1]:{self.port} {host_pub}\n")
        self.config = f"{d}/sshd_config"
        with open(self.config, "w") as f:
            f.write(
                f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\n"
                f"PidFile {d}/sshd.pid\nAuthorizedKeysFile {d}/authorized_keys\n"
                "StrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
                "PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nUsePAM no\n"
                "Subsystem sftp /usr/lib/openssh/sftp-server\nLogLevel ERROR\n"
            )
        self.client_config = f"{d}/ssh_config"
        with open(self.client_config, "w") as f:
            f.write(
                f"Host 127.0.0.1\n  Port {self.port}\n  IdentityFile {d}/client_key\n"
                f"  IdentitiesOnly yes\n  UserKnownHostsFile {d}/known_hosts\n"
                "  StrictHostKeyChecking yes\n  LogLevel ERROR\n"
            )
        os.makedirs("/run/sshd", exist_ok=True)  # privilege separation directory

    @property
    def user_host(self) -> str:
        return f"{self.user}@127.0.0.1"

    def scp_flag(self, remote_dir: Optional[str] = None) -> List[str]:
        return ["--upload-scp", self.user_host, str(self.port), remote_dir or self.remote]

    def set_rate(self, bytes_per_second: int) -> None:
        with open(self.rate_file, "w") as f:
            f.write(str(bytes_per_second))

    def transfers_started(self) -> int:
        return len(os.listdir(self.marks))

    def start(self) -> None:
        self._spawn(
            ["/usr/sbin/sshd", "-D", "-e", "-f", self.config], os.path.join(self.dir, "sshd.log")
        )


# -- an FTP server on loopback (pyftpdlib in its own process) --------------------------

FTP_SERVER = """
import sys
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler, ThrottledDTPHandler
from pyftpdlib.servers import FTPServer
port, user, password, home, limit = sys.argv[1:6]
auth = DummyAuthorizer()
auth.add_user(user, password, home, perm="elradfmwMT")
handler = FTPHandler
handler.authorizer = auth
handler.passive_ports = None
if int(limit):
    dtp = ThrottledDTPHandler
    dtp.read_limit = int(limit)
    handler.dtp_handler = dtp
FTPServer(("127.0.0.1", int(port)), handler).serve_forever()
"""


class FtpServer(LoopbackServer):
    """pyftpdlib serving ``remote`` to one user with a password, on a free loopback port."""

    user = "camera"
    password = "s3cret-ftp-pass"

    def __init__(self, base, read_limit: int = 0):
        super().__init__()
        self.remote = str(base / "remote-ftp")
        os.makedirs(self.remote)
        self.read_limit = read_limit
        self.log = str(base / "ftpd.log")

    def ftp_flag(self, remote_dir: str = "backup/cam") -> List[str]:
        return ["--upload-ftp", "127.0.0.1", str(self.port), self.user, self.password, remote_dir]

    def start(self) -> None:
        argv = [sys.executable, "-c", FTP_SERVER, str(self.port), self.user, self.password]
        self._spawn([*argv, self.remote, str(self.read_limit)], self.log)


# -- a stand-in for the Telegram Bot API -------------------------------------------------


class BotApi:
    """Records each request (method, token, fields, file) and checks its shape.

    ``answer_429`` makes the next N requests fail with HTTP 429 and ``retry_after``.
    ``hang()`` makes requests wait without an answer until ``release()``.
    Requests are handled on the server's own threads; ``_lock`` guards the lists.
    """

    REQUIRED = {"sendMessage": {"chat_id", "text"}, "sendVideo": {"chat_id", "caption", "video"}}

    def __init__(self):
        self.requests: List[dict] = []
        self.problems: List[str] = []
        self.answer_429 = 0
        self.retry_after = 1
        self._lock = threading.Lock()  # guards requests, problems and answer_429
        self._answering = threading.Event()  # cleared: requests hang
        self._answering.set()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                api._handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def hang(self) -> None:
        self._answering.clear()

    def release(self) -> None:
        self._answering.set()

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        parts = h.path.strip("/").split("/")
        body = h.rfile.read(int(h.headers.get("Content-Length", 0)))
        record = {"time": time.monotonic(), "path": h.path}
        ok = len(parts) == 2 and parts[0].startswith("bot") and parts[1] in self.REQUIRED
        if ok:
            record["token"], record["method"] = parts[0][3:], parts[1]
            record.update(self._fields(h.headers.get("Content-Type", ""), body))
        self._answering.wait(WAIT * 5)
        with self._lock:
            self.requests.append(record)
            if not ok:
                self.problems.append(f"bad path {h.path}")
            elif set(record["fields"]) != self.REQUIRED[record["method"]]:
                self.problems.append(f"{record['method']} fields {sorted(record['fields'])}")
            limited = self.answer_429 > 0
            if limited:
                self.answer_429 -= 1
        if limited:
            reply = {
                "ok": False,
                "error_code": 429,
                "description": "Too Many Requests: retry after 1",
                "parameters": {"retry_after": self.retry_after},
            }
            code = 429
        else:
            reply, code = {"ok": True, "result": {"message_id": len(self.requests)}}, 200
        data = json.dumps(reply).encode()
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    @staticmethod
    def _fields(content_type: str, body: bytes) -> dict:
        fields, files = {}, {}
        if content_type.startswith("multipart/form-data"):
            msg = BytesParser(policy=HTTP).parsebytes(
                f"Content-Type: {content_type}\r\n\r\n".encode() + body
            )
            for part in msg.iter_parts():
                name = part.get_param("name", header="content-disposition")
                payload = part.get_payload(decode=True)
                if part.get_filename():
                    files[name] = (part.get_filename(), payload)
                    fields[name] = part.get_filename()
                else:
                    fields[name] = payload.decode()
        else:
            from urllib.parse import parse_qs

            fields = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        return {"fields": fields, "files": files, "content_type": content_type}

    def of(self, method: str) -> List[dict]:
        with self._lock:
            return [r for r in self.requests if r.get("method") == method]
