#!/usr/bin/env python3
"""Print an OpenTunnel URL presigned by botocore, as the AWS CLI's
`aws ec2-instance-connect open-tunnel` presigns it: botocore's RequestSigner
for the ec2-instance-connect service model, GET wss://DNS/openTunnel with
the tunnel's parameters in the query, the Host header signed, 60 seconds.

usage: presign_open_tunnel.py DNS_NAME ENDPOINT_ID PRIVATE_IP PORT [MAX_TUNNEL_DURATION]

Credentials and region come from the environment (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_REGION), as `postern env` sets them.
"""
import os
import sys
from urllib.parse import urlencode

import botocore.session
from botocore.signers import RequestSigner


def main(argv):
    if len(argv) not in (5, 6):
        sys.exit(__doc__)
    dns_name, endpoint_id, private_ip, port = argv[1:5]
    query = {
        "instanceConnectEndpointId": endpoint_id,
        "remotePort": port,
        "privateIpAddress": private_ip,
    }
    if len(argv) == 6:
        query["maxTunnelDuration"] = argv[5]
    session = botocore.session.get_session()
    region = os.environ.get("AWS_REGION") or session.get_config_variable("region")
    model = session.get_service_model("ec2-instance-connect")
    signer = RequestSigner(
        model.service_id,
        region,
        model.signing_name,
        model.signature_version,
        session.get_credentials(),
        session.get_component("event_emitter"),
    )
    request = {
        "method": "GET",
        "url": "wss://%s/openTunnel?%s" % (dns_name, urlencode(query)),
        "headers": {"host": dns_name},
        "body": {},
        "url_path": "/",
        "query_string": "",
        "context": {},
    }
    print(signer.generate_presigned_url(request_dict=request, operation_name="openTunnel", expires_in=60))


if __name__ == "__main__":
    main(sys.argv)
