"""Presign an OpenTunnel URL the way the AWS CLI v2's
`aws ec2-instance-connect open-tunnel` does: botocore's RequestSigner for
the ec2-instance-connect service model, operation "openTunnel", the
parameters in the CLI's order, a Host header of the DNS name as given, an
empty body and a 60-second expiry.

Reads one JSON object on stdin:
  {"accessKeyId", "secretAccessKey", "sessionToken" (optional), "region",
   "dnsName", "endpointId", "remotePort", "privateIpAddress",
   "maxTunnelDuration" (optional, 0 or absent leaves it out)}
and prints the presigned URL.
"""
import json
import sys
from urllib.parse import urlencode

import botocore.session
from botocore.credentials import Credentials
from botocore.signers import RequestSigner


def main():
    a = json.load(sys.stdin)
    session = botocore.session.get_session()
    model = session.get_service_model("ec2-instance-connect")
    signer = RequestSigner(
        model.service_id,
        a["region"],
        model.signing_name,
        model.signature_version,
        Credentials(a["accessKeyId"], a["secretAccessKey"], a.get("sessionToken") or None),
        session.get_component("event_emitter"),
    )
    params = {
        "instanceConnectEndpointId": a["endpointId"],
        "remotePort": a["remotePort"],
        "privateIpAddress": a["privateIpAddress"],
    }
    if a.get("maxTunnelDuration"):
        params["maxTunnelDuration"] = a["maxTunnelDuration"]
    dns = a["dnsName"]
    request = {
        "url": f"wss://{dns}/openTunnel?{urlencode(params)}",
        "body": {},
        "headers": {"host": dns},
        "method": "GET",
        "query_string": "",
        "url_path": "/",
        "context": {},
    }
    print(signer.generate_presigned_url(request_dict=request, operation_name="openTunnel", expires_in=60))


if __name__ == "__main__":
    main()
