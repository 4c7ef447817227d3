"""Real Mosquitto and PostgreSQL for the chain's tests and bench, on temporary folders and free loopback ports.

* :class:`Broker` runs Debian's ``mosquitto`` with TLS (a throwaway CA and server certificate made
  with ``cryptography``), per-store passwords (``mosquitto_passwd``) and an ACL that lets a user
  write only under ``gemsight/<user>/``; the ``hq`` user reads ``gemsight/#``. A second listener
  speaks plaintext (same passwords and ACL) for the ``--insecure`` tests. Persistence is on, so a
  restart keeps queued QoS 1 messages.
* :class:`Postgres` runs ``initdb`` and ``pg_ctl`` from Debian's ``postgresql``. PostgreSQL refuses
  to run as root, so as root (CI) the cluster belongs to the ``postgres`` user (``runuser``), in a
  folder that user owns; as anyone else it runs as that user.

Both skip (``pytest.skip``) when the program is not installed; ``make test`` installs them.
"""
from __future__ import annotations

import datetime as dt
import getpass
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

HQ_USER = "hq"


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def make_ca(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost: ``(ca.pem, server.pem, server.key)``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gemsight test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
          .not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


class Broker:
    """One mosquitto: TLS on ``port``, plaintext on ``plain_port``; users from ``passwords``."""

    def __init__(self, folder: Path, passwords: dict[str, str]) -> None:
        if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
            raise FileNotFoundError("mosquitto is not installed (make test installs it)")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.passwords = dict(passwords)
        self.ca, self.cert, self.key = make_ca(self.folder)
        self.port, self.plain_port = free_port(), free_port()
        self.proc: subprocess.Popen | None = None
        self._write_files()

    def _write_files(self) -> None:
        pw = self.folder / "passwords"
        pw.write_text("".join(f"{user}:{password}\n" for user, password in self.passwords.items()))
        pw.chmod(0o600)
        subprocess.run(["mosquitto_passwd", "-U", str(pw)], check=True, capture_output=True)   # hash in place
        (self.folder / "acl").write_text(f"user {HQ_USER}\ntopic read gemsight/#\n\n"
                                         "pattern write gemsight/%u/#\n")
        user = "root" if os.getuid() == 0 else getpass.getuser()
        (self.folder / "mosquitto.conf").write_text(f"""\
user {user}
per_listener_settings false
allow_anonymous false
password_file {pw}
acl_file {self.folder / 'acl'}
persistence true
persistence_location {self.folder}/
autosave_interval 1
max_queued_messages 0
max_inflight_messages 100
log_dest file {self.folder / 'mosquitto.log'}
listener {self.port} 127.0.0.1
cafile {self.ca}
certfile {self.cert}
keyfile {self.key}
listener {self.plain_port} 127.0.0.1
""")

    @property
    def url(self) -> str:
        return f"mqtts://127.0.0.1:{self.port}"

    @property
    def plain_url(self) -> str:
        return f"mqtt://127.0.0.1:{self.plain_port}"

    def start(self) -> "Broker":
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([exe, "-c", str(self.folder / "mosquitto.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)
        wait_port(self.plain_port)
        return self

    def stop(self) -> None:
        """SIGTERM (mosquitto saves its persistence file) and wait."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        path = self.folder / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    exe = shutil.which(name)
    if exe is None:
        raise FileNotFoundError("PostgreSQL is not installed (make test installs it)")
    return exe


class Postgres:
    """One PostgreSQL cluster (trust on loopback, fsync off: a test database) on a free port."""

    def __init__(self) -> None:
        self.as_root = os.getuid() == 0
        self.folder = Path(tempfile.mkdtemp(prefix="gemsight-pg-"))
        if self.as_root:
            shutil.chown(self.folder, "postgres", "postgres")
        self.data = self.folder / "data"
        self.port = free_port()
        self._run([_pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "gemsight", "-E", "UTF8",
                   "--no-sync"])

    def _run(self, cmd: list[str], check: bool = True) -> subprocess.CompletedProcess:
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=60)

    @property
    def dsn(self) -> str:
        return f"postgresql://gemsight@127.0.0.1:{self.port}/postgres"

    def start(self) -> "Postgres":
        opts = (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off")
        self._run([_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "pg.log"), "-o", opts,
                   "-w", "start"])
        return self

    def stop(self) -> None:
        self._run([_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"], check=False)

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def new_database(self, name: str) -> str:
        """Create an empty database; returns its DSN."""
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://gemsight@127.0.0.1:{self.port}/{name}"
