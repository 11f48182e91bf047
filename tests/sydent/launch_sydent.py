"""Starts Sydent 2.6.1 for the testbed, with one change: federation name resolution.

Sydent checks an OpenID token (`POST /_matrix/identity/v2/account/register`) by calling
`matrix://<matrix_server_name>/_matrix/federation/v1/openid/userinfo`, and notifies the bound
user's homeserver (`/_matrix/federation/v1/3pid/onbind`) the same way. Its
`MatrixFederationAgent` routes a server name through `.well-known`, SRV records and DNS; the
testbed's homeserver name (`secure.tchap.test`) resolves nowhere. This launcher replaces that
routing, for the names listed in `TCHAP_SECURE_SYDENT_FEDERATION_HOSTS` only
(`name=host:port[,name=host:port...]`), by a fixed target: the homeserver's TLS listener on
loopback. Everything else is Sydent's own code:

- TLS is kept, with Sydent's own client options: SNI is the server name, the chain is verified
  against OpenSSL's default trust (`SSL_CERT_FILE`, set by the testbed to the run's root CA
  alone), and, as in Sydent, the certificate's host name is not checked.
- The target address still goes through Sydent's IP blacklist (the config whitelists 127.0.0.1).
- Names not in the list are routed by Sydent as usual (and fail here: no DNS).

Usage: SYDENT_CONF=sydent.conf python launch_sydent.py
"""

import os

from sydent.http import matrixfederationagent


def _overrides():
    table = {}
    for entry in os.environ.get("TCHAP_SECURE_SYDENT_FEDERATION_HOSTS", "").split(","):
        entry = entry.strip()
        if not entry:
            continue
        name, target = entry.split("=", 1)
        host, port = target.rsplit(":", 1)
        table[name.strip().lower().encode("ascii")] = (host.encode("ascii"), int(port))
    return table


_OVERRIDES = _overrides()
_original_route = matrixfederationagent.MatrixFederationAgent._route_matrix_uri


async def _route_matrix_uri(self, parsed_uri, lookup_well_known=True):
    target = _OVERRIDES.get(parsed_uri.host.lower())
    if target is None:
        return await _original_route(self, parsed_uri, lookup_well_known)
    host, port = target
    return matrixfederationagent._RoutingResult(
        host_header=parsed_uri.netloc,
        tls_server_name=parsed_uri.host,
        target_host=host,
        target_port=port,
    )


matrixfederationagent.MatrixFederationAgent._route_matrix_uri = _route_matrix_uri

if __name__ == "__main__":
    from sydent.sydent import main

    main()
