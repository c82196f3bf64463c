"""Push an SSH public key with boto3, configured only by the environment
that `postern env` prints (AWS_ENDPOINT_URL, AWS_CA_BUNDLE, keys, region).

usage: boto3_push.py INSTANCE_ID OS_USER PUBLIC_KEY_FILE
Prints the response (RequestId, Success) or the error code as JSON.
"""
import json
import sys

import boto3
import botocore.exceptions

instance_id, os_user, key_file = sys.argv[1:4]
with open(key_file) as f:
    key = f.read().strip()
client = boto3.client("ec2-instance-connect")
try:
    out = client.send_ssh_public_key(InstanceId=instance_id, InstanceOSUser=os_user, SSHPublicKey=key)
except botocore.exceptions.ClientError as e:
    json.dump({"Error": e.response["Error"]["Code"], "Message": e.response["Error"].get("Message", "")}, sys.stdout)
    sys.exit(3)
json.dump({"RequestId": out["RequestId"], "Success": out["Success"]}, sys.stdout)
