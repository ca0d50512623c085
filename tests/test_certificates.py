"""Vaccination certificates: Ed25519 signatures with a key of the bot's own (never derived from
the token), key ids, rotation, the key generated at the first start, and the ``healthbook
certificate`` commands."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import logging
import stat
import sys
from pathlib import Path

import pytest
import segno
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key

from bot.app import build_application, engine_of
from bot.context import load_keyring
from bot.db import create_engine, session_factory, transaction, upgrade
from bot.settings import ConfigError, SecuritySettings, Settings, load_settings
from bot.standin import BotApiStandIn
from models import campaigns as cp
from models import certificates as certs
from models.certificates import Keyring, KeyringError, KeyStore
from models.errors import DomainError
from models.qr import qr_png
from models.tables import Account, Vaccination
from models.timeutil import LOCAL_TZ
from tests.conftest import TOKEN
from tests.test_cli import ENV, healthbook

ISSUED = dt.date(2026, 11, 25)
DOSES = [(dt.date(2021, 8, 2), "astrazeneca", 1), (dt.date(2021, 10, 1), "astrazeneca", 2)]


def sign(keyring: Keyring, **kw: object) -> str:
    values: dict[str, object] = {
        "initials": "NVA",
        "birth_year": 1950,
        "doses": DOSES,
        "issued": ISSUED,
    }
    values.update(kw)
    return certs.sign_certificate(keyring, **values)  # type: ignore[arg-type]


def invalid(payload: str, keyring: Keyring) -> bool:
    try:
        certs.verify_certificate(payload, keyring)
    except DomainError as err:
        assert err.key == "certificate.invalid"
        return True
    return False


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# --- the payload ---------------------------------------------------------------------------------


async def test_certificate_of_a_health_book_round_trip(db_url: str) -> None:
    engine = create_engine(db_url)
    await upgrade(engine)
    sessions = session_factory(engine)
    keyring = Keyring.ephemeral()
    try:
        async with transaction(sessions) as s:
            for path in cp.SAMPLE_CAMPAIGNS:
                await cp.load_campaign_file(s, path)
            account = Account(channel="telegram", external_id="1", role="resident")
            s.add(account)
            await s.flush()
            book = cp.sample_book(
                account.id, full_name="Nguyễn Văn An", date_of_birth=dt.date(1980, 5, 1)
            )
            s.add(book)
            await s.flush()
            with pytest.raises(DomainError) as err:
                await certs.certificate_payload(s, book, keyring, ISSUED)
            assert err.value.key == "certificate.no_doses"
            covid = (await cp.list_campaigns(s))[0]
            for day, vaccine, dose in DOSES:
                s.add(
                    Vaccination(
                        health_book_id=book.id,
                        campaign_id=covid.id,
                        dose=dose,
                        vaccine_code=vaccine,
                        lot_number="L",
                        given_at=dt.datetime.combine(day, dt.time(9), tzinfo=LOCAL_TZ),
                    )
                )
        async with transaction(sessions) as s:
            payload = await certs.certificate_payload(s, book, keyring, ISSUED)
    finally:
        await engine.dispose()
    prefix, kid, body, sig = payload.split(".")
    assert (prefix, kid) == ("HB2", keyring.active_id)
    assert len(base64.urlsafe_b64decode(sig + "==")) == 64  # an Ed25519 signature
    assert json.loads(base64.urlsafe_b64decode(body + "==")) == {
        "i": "2026-11-25",
        "n": "NVA",
        "y": 1980,
        "d": [["2021-08-02", "astrazeneca", 1], ["2021-10-01", "astrazeneca", 2]],
    }
    # only initials and the birth year: no name, no full birth date, no ID number
    assert "Nguy" not in payload and "1980-05-01" not in payload
    assert certs.verify_certificate(payload, keyring) == {
        "initials": "NVA",
        "birth_year": 1980,
        "doses": [
            {"date": dt.date(2021, 8, 2), "vaccine": "astrazeneca", "dose": 1},
            {"date": dt.date(2021, 10, 1), "vaccine": "astrazeneca", "dose": 2},
        ],
        "issued": ISSUED,
        "key_id": keyring.active_id,
    }
    verifier = Keyring.of_public([keyring.verifying[kid]])  # the public key is enough
    assert certs.verify_certificate(payload, verifier)["key_id"] == kid


def test_forgeries_are_invalid() -> None:
    ours, theirs = Keyring.ephemeral(), Keyring.ephemeral()
    payload = sign(ours)
    prefix, kid, body, sig = payload.split(".")
    altered = b64(base64.urlsafe_b64decode(body + "==").replace(b"1950", b"1990"))
    # another key's signature over our key id and data
    forged_sig = b64(theirs.sign(f"{prefix}.{kid}.{body}".encode())[1])
    assert not invalid(payload, ours)
    for bad in (
        f"{prefix}.{kid}.{altered}.{sig}",  # altered data, old signature
        f"{prefix}.{kid}.{body}.{forged_sig}",  # signed by a key that is not ours
        f"{prefix}.{theirs.active_id}.{body}.{sig}",  # a key id we do not have
        f"{prefix}.{'0' * 16}.{body}.{sig}",
        f"{prefix}.{kid.upper()}.{body}.{sig}",
        f"HB3.{kid}.{body}.{sig}",  # another version
        f"{prefix}.{kid}.{body}.{sig[:-2]}",  # truncated signature
        f"{prefix}.{kid}.{body}.{sig}!",
        f"{prefix}.{kid}.{body}",
        f"{prefix}.{kid}.{body}.{sig}.x",
        "not a certificate",
        "",
    ):
        assert invalid(bad, ours), bad
    # a certificate genuinely signed by another bot's key is not one of ours
    assert invalid(sign(theirs), ours)
    # the key id and version are signed: the same signature under another key id fails
    both = Keyring(ours.signing, {**ours.verifying, **theirs.verifying})
    assert invalid(f"{prefix}.{theirs.active_id}.{body}.{sig}", both)


def test_an_old_hmac_certificate_is_outdated_not_forged() -> None:
    with pytest.raises(DomainError) as err:
        certs.verify_certificate("HB1.eyJuIjoiTlZBIn0.AAAAAAAAAAAAAAAAAAAAAA", Keyring.ephemeral())
    assert err.value.key == "certificate.outdated"


def test_a_verify_only_keyring_cannot_sign() -> None:
    verifier = Keyring.of_public(Keyring.ephemeral().verifying.values())
    with pytest.raises(KeyringError):
        sign(verifier)


def test_a_certificate_still_fits_a_qr_code() -> None:
    """Ed25519 signatures are 64 bytes: a full course, a booster and a flu shot still make a
    version-13 code (69 modules), eight doses a version-17 one (85), both easy for a phone."""
    keyring = Keyring.ephemeral()
    for count, version in ((4, 13), (8, 17)):
        doses = [
            (dt.date(2021, 1, 1) + dt.timedelta(days=60 * n), "astrazeneca", n + 1)
            for n in range(count)
        ]
        payload = sign(keyring, doses=doses)
        assert segno.make(payload, error="m").version <= version, len(payload)
        assert qr_png(payload).startswith(b"\x89PNG")


# --- keys on disk --------------------------------------------------------------------------------


def test_first_start_generates_a_key_and_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = KeyStore(tmp_path / "keys")
    with caplog.at_level(logging.INFO, logger="models.certificates"):
        keyring = store.load()
    assert store.signing_path.exists()
    assert stat.S_IMODE(store.signing_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.keys_dir.stat().st_mode) == 0o700
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert str(store.signing_path) in message and str(keyring.active_id) in message
    assert "Back up" in message
    pem = store.signing_path.read_text()
    body = "".join(pem.splitlines()[1:-1])
    assert "PRIVATE" not in caplog.text and body not in caplog.text and body[:20] not in caplog.text
    assert (store.public_dir / f"{keyring.active_id}.pem").exists()

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="models.certificates"):
        again = store.load()
    assert again.active_id == keyring.active_id and not caplog.records


def test_rotate_keeps_old_certificates_valid(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys")
    before = store.load()
    old_certificate = sign(before)
    old, new = store.rotate()
    assert old == before.active_id and new != old
    after = store.load()
    assert after.active_id == new
    assert certs.verify_certificate(old_certificate, after)["key_id"] == old
    new_certificate = sign(after)
    assert new_certificate.split(".")[1] == new
    assert certs.verify_certificate(new_certificate, after)["key_id"] == new
    # a second rotation keeps both older keys
    store.rotate()
    latest = store.load()
    assert {old, new} < set(latest.verifying) and len(latest.verifying) == 3
    assert not invalid(old_certificate, latest) and not invalid(new_certificate, latest)


def test_rotate_a_compromised_key_drops_it(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys")
    leaked = store.load()
    old_certificate = sign(leaked)
    store.rotate(keep_old=False)
    after = store.load()
    assert leaked.active_id not in after.verifying
    assert invalid(old_certificate, after)
    assert not invalid(sign(after), after)


def test_rotate_an_operators_key_file(tmp_path: Path) -> None:
    """A configured key the bot never loaded: rotate keeps its public key first, then writes
    the new key into the configured file."""
    key = Ed25519PrivateKey.generate()
    key_file = tmp_path / "signing.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    old_certificate = sign(Keyring(key))
    store = KeyStore(tmp_path / "keys", key_file)
    old, new = store.rotate()
    assert old == certs.key_id(key.public_key())
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    after = store.load(create=False)
    assert after.active_id == new
    assert certs.verify_certificate(old_certificate, after)["key_id"] == old


def test_keygen_refuses_to_overwrite(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys")
    kid = store.keygen()
    pem = store.signing_path.read_bytes()
    with pytest.raises(KeyringError, match="already exists"):
        store.keygen()
    assert store.signing_path.read_bytes() == pem
    assert store.load().active_id == kid


def test_configured_key_file(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    key_file = tmp_path / "secret" / "signing.pem"
    key_file.parent.mkdir()
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    settings = load_settings(
        None, security={"certificate_key_file": str(key_file), "keys_dir": str(tmp_path / "k")}
    )
    keyring = load_keyring(settings)
    assert keyring.active_id == certs.key_id(key.public_key())
    assert not (tmp_path / "k" / certs.GENERATED_KEY_NAME).exists()  # nothing generated
    assert (tmp_path / "k" / "public" / f"{keyring.active_id}.pem").exists()  # but kept

    missing = load_settings(None, security={"certificate_key_file": str(tmp_path / "none.pem")})
    with pytest.raises(ConfigError, match=r"certificate_key_file.*does not exist"):
        load_keyring(missing)
    rsa = generate_private_key(public_exponent=65537, key_size=2048)
    key_file.write_bytes(
        rsa.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ConfigError, match="not an Ed25519 key"):
        load_keyring(settings)
    key_file.write_text("garbage")
    with pytest.raises(ConfigError, match="not an unencrypted PEM private key") as err:
        load_keyring(settings)
    assert "garbage" not in str(err.value)


def test_the_old_hmac_secret_setting_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[security]\ncertificate_secret = "a-long-enough-old-secret"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(config)
    assert "certificate_secret is no longer used" in str(err.value)
    assert "a-long-enough-old-secret" not in str(err.value)
    monkeypatch.setenv("HEALTHBOOK_SECURITY__CERTIFICATE_SECRET", "another-old-secret-value")
    with pytest.raises(ConfigError, match="certificate_secret is no longer used"):
        load_settings(None)
    assert SecuritySettings().keys_dir == Path("keys")


# --- the bot: the key is its own, never the token's ----------------------------------------------


async def test_the_key_is_never_derived_from_the_token(tmp_path: Path) -> None:
    def settings(keys: Path) -> Settings:
        return load_settings(
            None,
            database={"url": f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"},
            security={"keys_dir": str(keys)},
        )

    apps = [
        build_application(settings(tmp_path / "a"), token="111:first-token", rate_limit=False),
        build_application(settings(tmp_path / "a"), token="222:other-token", rate_limit=False),
        build_application(settings(tmp_path / "b"), token="111:first-token", rate_limit=False),
    ]
    try:
        first, other, fresh = (app.bot_data["services"].keyring for app in apps)
        # different tokens, the same key directory: the same key, certificates cross-verify
        assert first.active_id == other.active_id
        assert not invalid(sign(first), other) and not invalid(sign(other), first)
        # the same token, a fresh key directory: another key, whose certificates do not verify
        assert fresh.active_id != first.active_id
        assert invalid(sign(fresh), first) and invalid(sign(first), fresh)
    finally:
        for app in apps:
            await engine_of(app).dispose()


async def test_healthbook_run_with_only_a_token_generates_a_key(
    tmp_path: Path, api: BotApiStandIn
) -> None:
    """The real ``healthbook run``, with a config holding only the token (and the stand-in's
    address): it generates its key at start, warns, and polls."""
    (tmp_path / "config.toml").write_text(
        f'[telegram]\ntoken = "{TOKEN}"\nbase_url = "{api.base_url}"\n'
        f'base_file_url = "{api.base_file_url}"\npoll_timeout = 1\n'
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        cwd=tmp_path,
        env={**ENV, "PYTHONPATH": str(Path(__file__).parent.parent)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        for _ in range(600):
            if any(call.method == "getUpdates" for call in api.calls) or proc.returncode:
                break
            await asyncio.sleep(0.1)
    finally:
        if proc.returncode is None:
            proc.terminate()
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    stderr = err.decode()
    assert any(call.method == "getUpdates" for call in api.calls), stderr
    key = tmp_path / "keys" / certs.GENERATED_KEY_NAME
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    kid = KeyStore(tmp_path / "keys").load(create=False).active_id
    assert "WARNING models.certificates: generated a new certificate signing key" in stderr
    assert f"key id {kid}" in stderr and "Back up" in stderr
    assert "PRIVATE KEY" not in stderr and TOKEN not in stderr


# --- the command line ----------------------------------------------------------------------------


def test_cli_keygen_public_key_verify_and_rotate(tmp_path: Path) -> None:
    created = healthbook("certificate", "keygen", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    store = KeyStore(tmp_path / "keys")
    first = store.load(create=False)
    assert f"key id {first.active_id}" in created.stdout and "Back up" in created.stdout
    again = healthbook("certificate", "keygen", cwd=tmp_path)
    assert again.returncode == 1 and "already exists" in again.stderr
    assert store.load(create=False).active_id == first.active_id

    old_certificate = sign(first)
    ok = healthbook("certificate", "verify", old_certificate, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert f"valid certificate: NVA, born 1950; issued 2026-11-25, key id {first.active_id}" in (
        ok.stdout
    )
    assert "2021-10-01  astrazeneca      dose 2" in ok.stdout

    rotated = healthbook("certificate", "rotate", cwd=tmp_path)
    assert rotated.returncode == 0, rotated.stderr
    second = store.load(create=False)
    assert second.active_id != first.active_id
    assert f"key id {second.active_id}" in rotated.stdout
    assert f"signed with key {first.active_id} stay valid" in rotated.stdout
    still = healthbook("certificate", "verify", old_certificate, cwd=tmp_path)
    assert still.returncode == 0 and first.active_id in still.stdout

    published = healthbook("certificate", "public-key", cwd=tmp_path)
    assert published.returncode == 0, published.stderr
    lines = published.stdout.splitlines()
    assert lines[0] == f"# key id {second.active_id} (active)"
    assert f"# key id {first.active_id} (retired)" in lines
    assert "PRIVATE" not in published.stdout and published.stdout.count("BEGIN PUBLIC KEY") == 2

    # an outside verifier: no settings, no keys directory, only the published public keys
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "healthbook-keys.pem").write_text(published.stdout)
    for certificate in (old_certificate, sign(second)):
        checked = healthbook(
            "certificate", "verify", certificate, "--public-key", "healthbook-keys.pem", cwd=outside
        )
        assert checked.returncode == 0, checked.stderr
    assert not (outside / "keys").exists()
    stranger = Keyring.ephemeral()
    (outside / "stranger.pem").write_text(certs.public_pem(stranger.signing.public_key()))  # type: ignore[union-attr]
    for certificate, keys in (
        (sign(stranger), "healthbook-keys.pem"),
        (old_certificate, "stranger.pem"),
    ):
        refused = healthbook(
            "certificate", "verify", certificate, "--public-key", keys, cwd=outside
        )
        assert refused.returncode == 1 and "INVALID" in refused.stderr
    old_format = healthbook(
        "certificate", "verify", "HB1.abc.def", "--public-key", "stranger.pem", cwd=outside
    )
    assert old_format.returncode == 1 and "old-format" in old_format.stderr
    no_keys = healthbook("certificate", "verify", old_certificate, cwd=outside)
    assert no_keys.returncode == 2 and "no public keys" in no_keys.stderr

    dropped = healthbook("certificate", "rotate", "--compromised", cwd=tmp_path)
    assert dropped.returncode == 0, dropped.stderr
    assert f"signed with key {second.active_id} are no longer valid" in dropped.stdout
    gone = healthbook("certificate", "verify", sign(second), cwd=tmp_path)
    assert gone.returncode == 1 and "INVALID" in gone.stderr
    kept = healthbook("certificate", "verify", old_certificate, cwd=tmp_path)
    assert kept.returncode == 0  # only the leaked key is dropped


def test_cli_rotate_without_a_key_says_keygen(tmp_path: Path) -> None:
    result = healthbook("certificate", "rotate", cwd=tmp_path)
    assert result.returncode == 1 and "healthbook certificate keygen" in result.stderr
    assert not (tmp_path / "keys" / certs.GENERATED_KEY_NAME).exists()


def test_cli_a_configured_key_file_is_made_by_keygen_not_at_start(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        '[telegram]\ntoken = "1:A"\nbase_url = "http://127.0.0.1:9/bot"\n'
        '[security]\ncertificate_key_file = "secret/signing.pem"\n'
    )
    started = healthbook("run", cwd=tmp_path)
    assert started.returncode == 2
    assert "certificate_key_file" in started.stderr and "does not exist" in started.stderr
    assert "Traceback" not in started.stderr
    created = healthbook("certificate", "keygen", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    key_file = tmp_path / "secret" / "signing.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    kid = KeyStore(tmp_path / "keys", key_file).load(create=False).active_id
    assert f"key id {kid}" in created.stdout
    assert not (tmp_path / "keys" / certs.GENERATED_KEY_NAME).exists()


def test_the_demo_signs_with_a_key_of_its_own(tmp_path: Path) -> None:
    """The demo never creates, nor signs with, the deployment's key (nor a public constant):
    its key lives in memory for one run."""
    result = healthbook("demo", cwd=tmp_path, stdin="/certificate\n/quit\n")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "keys").exists()


def test_a_short_booking_code_gets_a_full_qr_code_not_a_micro_one() -> None:
    """Phone cameras and Zalo read full QR codes only; segno picks a Micro QR for short data
    unless told not to (a Zalo ticket's QR holds just the 7-character code)."""
    import struct

    png = qr_png("VBYVRD5", scale=1)
    width = struct.unpack(">I", png[16:20])[0]  # the IHDR width, in modules at scale 1
    assert width >= 21 + 2 * 4  # version 1 and the quiet zone; a Micro QR M3 is 15 + 8
