"""Describe Instance Connect Endpoints with boto3, configured only by the
environment (the variables `postern env` prints), page by page, and print
them as JSON.

Used by e2e/endpoints_test.go; it must not read any file of its own.
"""
import json
import sys

import boto3


def main():
    ec2 = boto3.client("ec2")
    out = []
    pages = ec2.get_paginator("describe_instance_connect_endpoints").paginate(
        PaginationConfig={"PageSize": 1}
    )
    for page in pages:
        for e in page["InstanceConnectEndpoints"]:
            out.append(
                {
                    "Id": e["InstanceConnectEndpointId"],
                    "Arn": e["InstanceConnectEndpointArn"],
                    "State": e["State"],
                    "SubnetId": e["SubnetId"],
                    "VpcId": e["VpcId"],
                    "SecurityGroupIds": e.get("SecurityGroupIds", []),
                    "PreserveClientIp": e["PreserveClientIp"],
                    "CreatedAt": e["CreatedAt"].isoformat(),
                    "Tags": {t["Key"]: t["Value"] for t in e.get("Tags", [])},
                }
            )
    # The call without paging, as the brief's one-liner has it.
    whole = ec2.describe_instance_connect_endpoints()["InstanceConnectEndpoints"]
    json.dump({"Paged": out, "Whole": len(whole)}, sys.stdout)


if __name__ == "__main__":
    main()
