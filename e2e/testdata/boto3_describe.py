"""Describe VPCs and list IAM users with boto3, configured only by the
environment (the variables `postern env` prints), and print them as JSON.

Used by e2e/clients_test.go; it must not read any file of its own.
"""
import json
import sys

import boto3


def main():
    ec2 = boto3.client("ec2")
    iam = boto3.client("iam")
    vpcs = [
        {
            "VpcId": v["VpcId"],
            "CidrBlock": v.get("CidrBlock", ""),
            "Tags": {t["Key"]: t["Value"] for t in v.get("Tags", [])},
        }
        for v in ec2.describe_vpcs()["Vpcs"]
    ]
    users = [u["UserName"] for u in iam.list_users()["Users"]]
    json.dump({"Vpcs": vpcs, "Users": users}, sys.stdout)


if __name__ == "__main__":
    main()
