"""TLS settings for every ``ssl:`` binding: the oldest version, the ciphers, and client
certificates checked against the configured authorities.

Twisted's ``ssl:`` endpoint reads the key, the certificate and its chain; the options it
builds from them are rebuilt here with the configuration's settings, so that one set of
flags (or ``DAPHNE`` keys) applies to every TLS binding, inherited ones included.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from OpenSSL import SSL
from twisted.internet import ssl
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from zope.interface import implementer

from ..core.config import Config

_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL)
_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


class TLSSettingError(ValueError):
    """A TLS setting that cannot be used (the message names it)."""


def load_authorities(path: str) -> list[Any]:
    """The certificates of a PEM bundle, as pyOpenSSL X509 objects."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise TLSSettingError(f"--ssl-ca-certs {path!r}: {exc.strerror or exc}") from None
    try:
        found = [ssl.Certificate.loadPEM(pem).original
                 for pem in _PEM_CERTIFICATE.findall(data)]
    except Exception as exc:  # pyOpenSSL's errors name no file
        raise TLSSettingError(f"--ssl-ca-certs {path!r}: not a PEM certificate ({exc})") \
            from None
    if not found:
        raise TLSSettingError(f"--ssl-ca-certs {path!r}: no PEM certificate in it")
    return found


@implementer(IOpenSSLServerConnectionCreator)
class ReloadableTLS:
    """The TLS options of one ``ssl:`` binding, which a reload replaces: each new connection
    takes the options current when it is accepted, a connection in flight keeps its own."""

    def __init__(self, description: str, options: Any, rebuild: Callable[[Any], Any]) -> None:
        self.description = description
        self.options = options
        self._rebuild = rebuild

    def serverConnectionForTLS(self, protocol: Any) -> SSL.Connection:
        return SSL.Connection(self.options.getContext(), None)

    def reload(self, reactor: Any) -> str:
        """Read the key and certificate files again: the new certificate's SHA-256
        fingerprint. Raises TLSSettingError (the old options stay) when they cannot be read
        or do not match."""
        from twisted.internet import endpoints

        from ..protocols.twisted_internals import ssl_context_factory

        description = self.description.split(":fileno=", 1)[0]  # a worker's inherited one
        try:
            base = ssl_context_factory(endpoints.serverFromString(reactor, description))
            options = self._rebuild(base)
            options.getContext()  # the key checked against the certificate, now
        except Exception as exc:  # OpenSSL's and Twisted's errors name no file
            raise TLSSettingError(f"{exc or type(exc).__name__}") from None
        self.options = options
        return fingerprint(options.certificate)


def fingerprint(certificate: Any) -> str:
    """A certificate's SHA-256 fingerprint, as ``openssl x509 -fingerprint`` writes it."""
    digest: bytes = certificate.digest("sha256")
    return digest.decode("ascii")


def options_for(config: Config) -> Callable[[Any, str], ReloadableTLS]:
    """A function that rebuilds Twisted's options of an ``ssl:`` endpoint (a
    CertificateOptions) with the configuration's TLS settings, as a reloadable creator. The
    authorities are read once, now: a missing file stops the start, naming the option."""
    authorities = load_authorities(config.ssl_ca_certs) \
        if config.ssl_cert_reqs != "none" and config.ssl_ca_certs else None
    ciphers = ssl.AcceptableCiphers.fromOpenSSLCipherString(config.ssl_ciphers) \
        if config.ssl_ciphers else None

    def rebuild(base: Any) -> Any:
        kwargs: dict[str, Any] = {
            "privateKey": base.privateKey,
            "certificate": base.certificate,
            "extraCertChain": base.extraCertChain,
            "dhParameters": base.dhParameters,
        }
        if base.method not in (SSL.TLS_METHOD, SSL.SSLv23_METHOD):
            # a method of one version would set aside --ssl-minimum-version (and Twisted
            # refuses both together): say so rather than serve something else than asked
            raise TLSSettingError(
                "the ssl: endpoint's sslmethod= pins one TLS version; remove it and use "
                "--ssl-minimum-version (SSL_MINIMUM_VERSION) instead")
        kwargs["raiseMinimumTo"] = _VERSIONS[config.ssl_minimum_version]
        if ciphers is not None:
            kwargs["acceptableCiphers"] = ciphers
        if authorities is not None:
            kwargs.update(verify=True, caCerts=authorities,
                          requireCertificate=config.ssl_cert_reqs == "required")
        return ssl.CertificateOptions(**kwargs)

    def reloadable(base: Any, description: str) -> ReloadableTLS:
        options = rebuild(base)
        try:
            options.getContext()  # OpenSSL's own checks, now rather than per connection
        except Exception as exc:
            what = f"--ssl-ciphers {config.ssl_ciphers!r}" if config.ssl_ciphers \
                else f"endpoint {description!r}"
            raise TLSSettingError(f"{what}: OpenSSL cannot use it ({exc})") from None
        return ReloadableTLS(description, options, rebuild)

    return reloadable
