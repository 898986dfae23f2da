"""Model signatures: a model's file and its card signed together, with an elliptic-curve key.

OpenSSF's model-signing signs and verifies a directory. A model version is two files among
others (`iris.joblib` + `iris.json`, or `churn/1.0.0.joblib` + `.json`), so each is signed as a
directory of its own made for the purpose: `model.joblib` and `card.json`, holding the very
bytes that are then checked and loaded. The signature (a Sigstore bundle, offline: no
transparency log) is `<base>.sig` beside them. The card names the model and its version, so a
signature cannot be moved to another model or version, and since the files' names inside
are fixed, a version keeps its signature when it moves between the two layouts.

model-signing is imported only when signing or verifying (it pulls in sigstore).
"""

import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from modelfly.catalog import card_file, model_file
from modelfly.settings import ConfigError

PRIVATE_KEY, PUBLIC_KEY = "modelfly-signing.key", "modelfly-signing.pub"
SIGNED_NAMES = {"model.joblib": model_file, "card.json": card_file}


def signature_file(base: Path) -> Path:
    return base.parent / f"{base.name}.sig"


def keygen(directory: Path) -> tuple[Path, Path]:
    """Write a new key pair (NIST P-256) into `directory`: the private key readable by its
    owner only (0600), the public key for the servers. Never overwrites a key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    directory.mkdir(parents=True, exist_ok=True)
    private, public = directory / PRIVATE_KEY, directory / PUBLIC_KEY
    for path in (private, public):
        if path.exists():
            raise FileExistsError(f"{path} exists; keygen never overwrites a key")
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    descriptor = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(pem)
    public.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def check_public_keys(paths: Sequence[Path]) -> None:
    """ConfigError naming the first of `paths` that is not an elliptic-curve public key."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    for path in paths:
        try:
            key = load_pem_public_key(path.read_bytes())
        except (OSError, ValueError) as error:
            raise ConfigError(f"MODELFLY_TRUSTED_KEYS: {path} cannot be read as a PEM public "
                              f"key ({type(error).__name__})") from error
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise ConfigError(f"MODELFLY_TRUSTED_KEYS: {path} is not an elliptic-curve key "
                              "(make one with python -m modelfly keygen)")


@contextmanager
def _signed_view(model: bytes, card: bytes) -> Iterator[Path]:
    """A private directory holding exactly what a signature covers."""
    directory = Path(tempfile.mkdtemp(prefix="modelfly-signed-"))
    try:
        (directory / "model.joblib").write_bytes(model)
        (directory / "card.json").write_bytes(card)
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def sign(base: Path, private_key: Path) -> Path:
    """Sign the model version at `base` (its .joblib and .json as they are now) with the
    private key; write and return `<base>.sig`."""
    from model_signing import signing

    signature = signature_file(base)
    with _signed_view(model_file(base).read_bytes(), card_file(base).read_bytes()) as view:
        staged = view.parent / f"{view.name}.sig"
        try:
            signing.Config().use_elliptic_key_signer(private_key=private_key).sign(view, staged)
            shutil.move(staged, signature)
        finally:
            staged.unlink(missing_ok=True)
    return signature


class Verifier:
    """Checks model versions against the trusted public keys (MODELFLY_TRUSTED_KEYS)."""

    def __init__(self, public_keys: Sequence[Path]) -> None:
        self.public_keys = tuple(public_keys)

    def refusal(self, base: Path, model: bytes, card: bytes) -> str | None:
        """Why the version at `base`, whose files hold these bytes, is not trusted; None if
        one of the keys signed exactly these bytes."""
        from cryptography.exceptions import InvalidSignature
        from model_signing import verifying

        signature = signature_file(base)
        if not signature.is_file():
            return (f"it is not signed (no {signature.name} beside it), and "
                    "MODELFLY_TRUSTED_KEYS asks for a signature")
        changed = None
        with _signed_view(model, card) as view:
            for key in self.public_keys:
                try:
                    verifying.Config().use_elliptic_key_verifier(public_key=key).verify(
                        view, signature)
                    return None
                except InvalidSignature:
                    return (f"{signature.name} names a trusted key but does not verify with it "
                            "(damaged or forged)")
                except Exception as error:  # a damaged bundle fails in many libraries' ways
                    # model-signing's own outcomes are ValueErrors told apart by their text:
                    # the seam tests/test_trust.py holds to (model-signing is pinned)
                    message = str(error) if type(error) is ValueError else ""
                    if message.startswith("Key mismatch"):
                        continue
                    if message.startswith("Signature mismatch"):
                        changed = changed or self._files_named(base, message)
                        continue
                    return (f"{signature.name} cannot be read as a signature "
                            f"({type(error).__name__})")
        if changed:
            return (f"{signature.name} does not cover {changed} as "
                    f"{'they are' if ' and ' in changed else 'it is'} now (changed after "
                    "signing)")
        return f"{signature.name} is not signed by a trusted key (MODELFLY_TRUSTED_KEYS)"

    @staticmethod
    def _files_named(base: Path, message: str) -> str:
        names = sorted({SIGNED_NAMES[name](base).name
                        for name in re.findall(r"model\.joblib|card\.json", message)})
        return " and ".join(names) or "its files"
