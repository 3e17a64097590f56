"""Microsoft's Python clients against the fake Key Vault; prints one JSON object of results.

Driven by tests/fake-keyvault/tests/python_fidelity.rs. Environment:
  FAKE_KV_PORT    HTTPS port of the fake (vault and login hosts are mapped to 127.0.0.1:PORT)
  FAKE_KV_CA      path of the fake's CA certificate (PEM)
  FAKE_KV_TENANT  tenant id of the seed
  FAKE_KV_CLIENT_ID / FAKE_KV_CLIENT_SECRET  a service principal of the seed
  FAKE_KV_VAULT   vault name
  FAKE_KV_PINNED  a version of `api-config` to read pinned
No root needed: host names are mapped by wrapping socket.getaddrinfo in this process only.
"""

import base64
import hashlib
import json
import os
import socket
import sys

PORT = int(os.environ["FAKE_KV_PORT"])
CA = os.environ["FAKE_KV_CA"]
TENANT = os.environ["FAKE_KV_TENANT"]
VAULT = os.environ["FAKE_KV_VAULT"]
MAPPED = {f"{VAULT}.vault.azure.net", "login.microsoftonline.com"}

_real_getaddrinfo = socket.getaddrinfo


def _getaddrinfo(host, port, *args, **kwargs):
    # Only the fake's names go to loopback; anything else would be a test bug, so fail loudly.
    if host in MAPPED:
        return _real_getaddrinfo("127.0.0.1", PORT, *args, **kwargs)
    raise OSError(f"fidelity.py: unexpected lookup of {host!r} (only {sorted(MAPPED)} are mapped)")


socket.getaddrinfo = _getaddrinfo

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError  # noqa: E402
from azure.identity import ClientSecretCredential  # noqa: E402
from azure.keyvault.certificates import CertificateClient  # noqa: E402
from azure.keyvault.keys import KeyClient  # noqa: E402
from azure.keyvault.secrets import SecretClient  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.serialization import pkcs12  # noqa: E402


def enum_value(v):
    """The wire string of an SDK enum member (or the plain string)."""
    return getattr(v, "value", v)


def main():
    vault_url = f"https://{VAULT}.vault.azure.net"
    cred = ClientSecretCredential(
        TENANT,
        os.environ["FAKE_KV_CLIENT_ID"],
        os.environ["FAKE_KV_CLIENT_SECRET"],
        authority="https://login.microsoftonline.com",
        connection_verify=CA,
        disable_instance_discovery=True,
    )
    secrets = SecretClient(vault_url, cred, connection_verify=CA)
    certs = CertificateClient(vault_url, cred, connection_verify=CA)
    keys = KeyClient(vault_url, cred, connection_verify=CA)
    out = {}

    s = secrets.get_secret("db-password")
    out["latest"] = {"value": s.value, "version": s.properties.version, "content_type": s.properties.content_type}
    pinned = secrets.get_secret("api-config", os.environ["FAKE_KV_PINNED"])
    out["pinned"] = {"value": pinned.value, "version": pinned.properties.version}
    out["versions"] = sorted(p.version for p in secrets.list_properties_of_secret_versions("api-config"))

    try:
        secrets.get_secret("no-such-secret")
        out["not_found"] = None
    except ResourceNotFoundError as e:
        out["not_found"] = {"status": e.status_code, "code": e.error.code if e.error else None}
    try:
        secrets.get_secret("off")
        out["disabled"] = None
    except HttpResponseError as e:
        out["disabled"] = {"status": e.status_code, "code": e.error.code if e.error else None}

    cert = certs.get_certificate("web-pfx")
    der = bytes(cert.cer)
    parsed = x509.load_der_x509_certificate(der)
    out["certificate"] = {
        "name": cert.name,
        "subject": parsed.subject.rfc4514_string(),
        "thumbprint_matches": bytes(cert.properties.x509_thumbprint) == hashlib.sha1(der).digest(),
        "secret_id": cert.secret_id,
        "key_id": cert.key_id,
        "policy_content_type": enum_value(cert.policy.content_type) if cert.policy else None,
    }
    backing = secrets.get_secret("web-pfx")
    key, leaf, _extra = pkcs12.load_key_and_certificates(base64.b64decode(backing.value), None)
    out["pfx"] = {
        "content_type": backing.properties.content_type,
        "has_key": key is not None,
        "leaf_matches_cer": leaf.public_bytes(serialization.Encoding.DER) == der,
        "key_matches_cert": key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        == leaf.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        "managed": backing.properties.managed,
    }
    pem = secrets.get_secret("web-pem")
    pem_key = serialization.load_pem_private_key(pem.value.encode(), None)
    pem_cert = x509.load_pem_x509_certificate(pem.value.encode())
    out["pem"] = {
        "content_type": pem.properties.content_type,
        "subject": pem_cert.subject.rfc4514_string(),
        "key_matches_cert": pem_key.public_key().public_numbers() == pem_cert.public_key().public_numbers(),
    }

    k = keys.get_key("signing")
    out["key"] = {
        "name": k.name,
        "kty": enum_value(k.key_type),
        "crv": enum_value(k.key.crv),
        "x_len": len(k.key.x),
        "y_len": len(k.key.y),
        "id": k.id,
    }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
