"""Vaccination certificates anyone can check: signed with an Ed25519 key of the bot's own, so a
verifier needs only the public key, and the bot token plays no part.

A certificate is one line of ASCII for a QR code, ``HB2.<key id>.<data>.<signature>``: the data
(base64url JSON) carries the issue date, the name's initials, the birth year and each dose; the
signature covers everything before it. The key id (16 hex digits of the SHA-256 of the raw public
key) says which key signed, so certificates signed before a rotation stay verifiable for as long
as the old public key is kept.

Keys live on the file system, never in the database (a database dump must not be able to mint
certificates): the active private key (PKCS#8 PEM, mode 0600) and ``public/<key id>.pem`` for every
key ever used. No Telegram here; nothing in this module commits.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models.errors import DomainError
from models.tables import HealthBook, Vaccination
from models.timeutil import local_date

log = logging.getLogger(__name__)

CERT_PREFIX = "HB2"
LEGACY_PREFIXES = frozenset({"HB1"})  # HMAC-signed with a secret that no longer exists
KEY_ID_BYTES = 8
GENERATED_KEY_NAME = "certificate-signing-key.pem"
PUBLIC_DIR = "public"
_SIGNATURE_BYTES = 64
_KEY_ID = re.compile(r"[0-9a-f]{16}")
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_PEM_PUBLIC = re.compile(rb"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.DOTALL)


class KeyringError(Exception):
    """Keys that cannot be used (missing, unreadable, not Ed25519, already there); the message
    names the file and what to do, and never holds key material."""


# --- keys ---------------------------------------------------------------------------------------


def key_id(public: Ed25519PublicKey) -> str:
    """The key id: the first 8 bytes of the SHA-256 of the raw 32-byte public key, in hex."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:KEY_ID_BYTES].hex()


def public_pem(public: Ed25519PublicKey) -> str:
    """The public key as SubjectPublicKeyInfo PEM (what ``openssl pkey -pubin`` reads)."""
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def _private_pem(private: Ed25519PrivateKey) -> bytes:
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def parse_public_keys(pem: bytes, source: str = "the file") -> list[Ed25519PublicKey]:
    """Every Ed25519 public key in PEM text (one or more blocks; other lines are ignored, so the
    output of ``healthbook certificate public-key`` can be used as it is)."""
    keys = []
    for block in _PEM_PUBLIC.findall(pem):
        try:
            key = serialization.load_pem_public_key(block)
        except ValueError:
            raise KeyringError(f"{source}: a PUBLIC KEY block that cannot be read") from None
        if not isinstance(key, Ed25519PublicKey):
            raise KeyringError(f"{source}: a public key that is not Ed25519")
        keys.append(key)
    if not keys:
        raise KeyringError(f"{source}: no PEM public key (-----BEGIN PUBLIC KEY-----) found")
    return keys


@dataclass
class Keyring:
    """The key that signs new certificates (if any) and every public key that verifies them."""

    signing: Ed25519PrivateKey | None = None
    verifying: dict[str, Ed25519PublicKey] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.verifying = dict(self.verifying)  # never the caller's dict
        if self.signing is not None:
            public = self.signing.public_key()
            self.verifying.setdefault(key_id(public), public)

    @classmethod
    def ephemeral(cls) -> Keyring:
        """A fresh key kept only in memory (the terminal demo: its certificates prove nothing)."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def of_public(cls, keys: Iterable[Ed25519PublicKey]) -> Keyring:
        """A verify-only keyring (an outside verifier with the published public keys)."""
        return cls(None, {key_id(k): k for k in keys})

    @property
    def active_id(self) -> str | None:
        """Key id of the signing key; ``None`` for a verify-only keyring."""
        return key_id(self.signing.public_key()) if self.signing is not None else None

    def sign(self, message: bytes) -> tuple[str, bytes]:
        """The active key id and its signature of ``message``."""
        if self.signing is None:
            raise KeyringError("this keyring has no signing key (verify only)")
        return key_id(self.signing.public_key()), self.signing.sign(message)

    def verify(self, kid: str, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is the signature of ``message`` by the key ``kid`` we know."""
        public = self.verifying.get(kid)
        if public is None:
            return False
        try:
            public.verify(signature, message)
        except InvalidSignature:
            return False
        return True


# --- certificates -------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not _B64URL.fullmatch(text):
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error:
        raise ValueError("not base64url") from None


def _initials(full_name: str) -> str:
    return "".join(word[0] for word in full_name.split() if word).upper()


async def certificate_payload(
    session: AsyncSession, book: HealthBook, keyring: Keyring, issued: dt.date
) -> str:
    """The signed certificate of ``book``'s doses so far (see :func:`sign_certificate`);
    ``certificate.no_doses`` when there is none."""
    rows = (
        await session.execute(
            select(Vaccination.given_at, Vaccination.vaccine_code, Vaccination.dose)
            .where(Vaccination.health_book_id == book.id)
            .order_by(Vaccination.given_at, Vaccination.id)
        )
    ).all()
    if not rows:
        raise DomainError("certificate.no_doses")
    return sign_certificate(
        keyring,
        initials=_initials(book.full_name),
        birth_year=book.date_of_birth.year,
        doses=[(local_date(at), vaccine, dose) for at, vaccine, dose in rows],
        issued=issued,
    )


def sign_certificate(
    keyring: Keyring,
    *,
    initials: str,
    birth_year: int,
    doses: Sequence[tuple[dt.date, str, int]],
    issued: dt.date,
) -> str:
    """A signed proof of vaccination for a QR code, ``HB2.<key id>.<data>.<signature>``, carrying
    only the issue date, the initials, the birth year and each dose (date, vaccine, number)."""
    data = {
        "i": issued.isoformat(),
        "n": initials,
        "y": birth_year,
        "d": [[day.isoformat(), vaccine, dose] for day, vaccine, dose in doses],
    }
    body = _b64(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    kid = keyring.active_id
    if kid is None:
        raise KeyringError("this keyring has no signing key (verify only)")
    signed = f"{CERT_PREFIX}.{kid}.{body}"  # version and key id are signed too
    _, signature = keyring.sign(signed.encode("ascii"))
    return f"{signed}.{_b64(signature)}"


def verify_certificate(payload: str, keyring: Keyring) -> dict[str, Any]:
    """The data of a genuine certificate (``initials``, ``birth_year``, ``doses``, ``issued``,
    ``key_id``). ``certificate.outdated`` for an old HB1 certificate (its HMAC key is gone);
    ``certificate.invalid`` for anything forged, altered, truncated, malformed, or signed by a
    key this keyring does not hold."""
    text = payload.strip()
    if text.split(".", 1)[0] in LEGACY_PREFIXES:
        raise DomainError("certificate.outdated")
    try:
        prefix, kid, body, tag = text.split(".")
        if prefix != CERT_PREFIX or not _KEY_ID.fullmatch(kid):
            raise ValueError("unknown version or key id")
        signature = _unb64(tag)
        if len(signature) != _SIGNATURE_BYTES:
            raise ValueError("not a signature")
        if not keyring.verify(kid, f"{prefix}.{kid}.{body}".encode("ascii"), signature):
            raise ValueError("bad signature")
        data = json.loads(_unb64(body).decode("utf-8"))
        doses = [
            {"date": dt.date.fromisoformat(day), "vaccine": str(vaccine), "dose": int(dose)}
            for day, vaccine, dose in data["d"]
        ]
        return {
            "initials": str(data["n"]),
            "birth_year": int(data["y"]),
            "doses": doses,
            "issued": dt.date.fromisoformat(data["i"]),
            "key_id": kid,
        }
    except (ValueError, KeyError, TypeError, UnicodeError):
        raise DomainError("certificate.invalid") from None


# --- keys on disk -------------------------------------------------------------------------------


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``data``; ``FileExistsError`` if it is already there (so two
    processes starting at once cannot both create a key)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace(path: Path, data: bytes, mode: int) -> None:
    """Write ``path`` whole or not at all (a crash never leaves half a key)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    _write_new(tmp, data, mode)
    os.replace(tmp, path)


@dataclass(frozen=True)
class KeyStore:
    """Where the keys live: ``key_file`` (the operator's, when configured) or a key generated in
    ``keys_dir``; the public keys of every key ever used in ``keys_dir/public``."""

    keys_dir: Path
    key_file: Path | None = None

    @property
    def signing_path(self) -> Path:
        """The active private key's file."""
        return self.key_file if self.key_file is not None else self.keys_dir / GENERATED_KEY_NAME

    @property
    def public_dir(self) -> Path:
        """The public keys, one ``<key id>.pem`` each."""
        return self.keys_dir / PUBLIC_DIR

    def _mkdirs(self) -> None:
        self.keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.public_dir.mkdir(exist_ok=True)

    def read_signing_key(self) -> Ed25519PrivateKey | None:
        """The active private key, ``None`` when its file does not exist."""
        path = self.signing_path
        try:
            pem = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise KeyringError(f"cannot read the signing key {path}: {exc.strerror}") from None
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError):
            raise KeyringError(
                f"{path} is not an unencrypted PEM private key "
                "(create one with `healthbook certificate keygen`)"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyringError(f"{path} is not an Ed25519 key (certificates are signed with one)")
        return key

    def read_public_keys(self) -> dict[str, Ed25519PublicKey]:
        """The public keys kept in ``public/``, by key id (worked out from each key, so a
        renamed file cannot pass one key off as another)."""
        found: dict[str, Ed25519PublicKey] = {}
        if not self.public_dir.is_dir():
            return found
        for path in sorted(self.public_dir.glob("*.pem")):
            for key in parse_public_keys(path.read_bytes(), str(path)):
                found[key_id(key)] = key
        return found

    def save_public_key(self, public: Ed25519PublicKey) -> Path:
        """Keep ``public`` for verification (idempotent); the file it is in."""
        self._mkdirs()
        path = self.public_dir / f"{key_id(public)}.pem"
        if not path.exists():
            _replace(path, public_pem(public).encode("ascii"), 0o644)
        return path

    def load(self, *, create: bool = True) -> Keyring:
        """The keyring: the active key and every kept public key. With ``create`` (the bot
        starting), the key is generated when no ``key_file`` is configured and none exists yet,
        logged at WARNING with its path so that the operator backs it up (nothing secret is
        logged), and its public key is kept. Without it (verifying), nothing is written and a
        missing key is no error."""
        signing = self.read_signing_key()
        if signing is None and self.key_file is not None and create:
            raise KeyringError(
                f"the certificate key file {self.key_file} does not exist "
                "(create it with `healthbook certificate keygen`, or unset "
                "security.certificate_key_file to have one generated in security.keys_dir)"
            )
        if signing is None and create:
            signing = self._generate_once()
        keyring = Keyring(None, self.read_public_keys())
        if signing is not None:
            keyring = Keyring(signing, keyring.verifying)
            if create:  # so that the key stays verifiable after the operator replaces it
                try:
                    self.save_public_key(signing.public_key())
                except OSError as exc:
                    log.warning("cannot keep the public key in %s: %s", self.public_dir, exc)
        return keyring

    def _generate_once(self) -> Ed25519PrivateKey:
        """A new key in ``keys_dir``, unless another process has just made one."""
        key = Ed25519PrivateKey.generate()
        self._mkdirs()
        try:
            _write_new(self.signing_path, _private_pem(key), 0o600)
        except FileExistsError:
            existing = self.read_signing_key()
            assert existing is not None
            return existing
        self.save_public_key(key.public_key())
        log.warning(
            "generated a new certificate signing key %s (key id %s). Back up the directory %s: "
            "certificates are verified with the public keys in it. Bots on several hosts must "
            "share one key: set security.certificate_key_file.",
            self.signing_path,
            key_id(key.public_key()),
            self.keys_dir,
        )
        return key

    def keygen(self) -> str:
        """Create the signing key; refuse if there is one. Its key id."""
        if self.signing_path.exists():
            existing = self.read_signing_key()
            kid = key_id(existing.public_key()) if existing else "?"
            raise KeyringError(
                f"a signing key already exists: {self.signing_path} (key id {kid}); "
                "use `healthbook certificate rotate` to replace it"
            )
        if self.key_file is not None:
            self.key_file.parent.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        self._mkdirs()
        try:
            _write_new(self.signing_path, _private_pem(key), 0o600)
        except FileExistsError:
            raise KeyringError(f"a signing key already exists: {self.signing_path}") from None
        self.save_public_key(key.public_key())
        return key_id(key.public_key())

    def rotate(self, *, keep_old: bool = True) -> tuple[str, str]:
        """Replace the signing key with a new one; the old public key is kept for verification
        unless ``keep_old`` is false (a leaked key: certificates it signed stop verifying).
        The old and the new key ids."""
        old = self.read_signing_key()
        if old is None:
            raise KeyringError(
                f"no signing key at {self.signing_path}: create one with "
                "`healthbook certificate keygen`"
            )
        old_public = old.public_key()
        if keep_old:
            self.save_public_key(old_public)  # first: a crash after this loses nothing
        new = Ed25519PrivateKey.generate()
        self.save_public_key(new.public_key())
        _replace(self.signing_path, _private_pem(new), 0o600)
        if not keep_old:
            with contextlib.suppress(FileNotFoundError):
                (self.public_dir / f"{key_id(old_public)}.pem").unlink()
            if key_id(old_public) in self.read_public_keys():
                raise KeyringError(
                    f"the new key is in place, but another file in {self.public_dir} still "
                    f"holds the old public key {key_id(old_public)}: remove it by hand"
                )
        return key_id(old_public), key_id(new.public_key())
