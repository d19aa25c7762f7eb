"""TLS contexts for DICOM (PS3.15 Annex B.9, the BCP 195 TLS Secure Transport profile).

The server takes any ``ssl.SSLContext`` (``SCPConfig(ssl_context=...)``); these helpers
build one with the profile's rules so that users need not remember them: TLS 1.2 or
newer only (BCP 195 forbids SSL 3, TLS 1.0 and 1.1), no compression, and optionally
mutual authentication (the peer must present a certificate that the given CA signed).
"""

from __future__ import annotations

import os
import ssl

PathLike = str | os.PathLike[str]


def _harden(context: ssl.SSLContext) -> ssl.SSLContext:
    # BCP 195 (RFC 9325) section 3.1: no SSL, TLS 1.0 or TLS 1.1; section 3.3: no
    # TLS-level compression. Python's default cipher list already excludes the suites
    # BCP 195 forbids (NULL, export, RC4, 3DES).
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION
    return context


def server_context(
    certfile: PathLike,
    keyfile: PathLike | None = None,
    *,
    cafile: PathLike | None = None,
    require_client_certificate: bool = False,
) -> ssl.SSLContext:
    """A server-side context: our certificate and key, optionally demanding client certs.

    With ``require_client_certificate`` a peer without a certificate signed by ``cafile``
    fails the handshake (DICOM's usual "authenticated nodes" setup).
    """
    context = _harden(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    context.load_cert_chain(certfile, keyfile)
    if cafile is not None:
        context.load_verify_locations(cafile)
    if require_client_certificate:
        if cafile is None:
            raise ValueError("require_client_certificate needs a cafile to check them against")
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(
    *,
    cafile: PathLike | None = None,
    certfile: PathLike | None = None,
    keyfile: PathLike | None = None,
    check_hostname: bool = False,
) -> ssl.SSLContext:
    """A client-side context: verify the server against ``cafile``, present our certificate.

    DICOM nodes are usually addressed by IP and identified by certificate rather than
    host name, so host name checking is off unless asked for; the certificate itself
    is always verified.
    """
    context = _harden(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    context.check_hostname = check_hostname
    if cafile is not None:
        context.load_verify_locations(cafile)
    else:
        context.load_default_certs()
    if certfile is not None:
        context.load_cert_chain(certfile, keyfile)
    return context
