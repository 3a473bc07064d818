#!/usr/bin/python3
"""Calls palmgate's GetAuthorization from Python and prints the answer.

Uses Debian's grpcio (apt-get install python3-grpcio) and stubs generated from
the contract; nothing from PyPI. Generate the stubs once into a directory:

    mkdir -p gen && protoc -I proto \
        -I /usr/share/gocode/src/github.com/gogo/googleapis -I /usr/include \
        --python_out=gen --grpc_python_out=gen \
        --plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin \
        palmgate/v1/palm_authorization.proto \
        google/api/annotations.proto google/api/http.proto \
        google/rpc/status.proto google/rpc/error_details.proto

then run (exit status 0 on success, 1 when the call fails):

    PYTHONPATH=gen /usr/bin/python3 client/examples/python/get_authorization.py \
        --addr 127.0.0.1:50051 --openid oUpF8uMuAJO_M2pxb1Q9zNjWeS6o --organization_id 1004

On failure it prints "error: CODE: message" and the google.rpc.ErrorInfo (and
BadRequest/RetryInfo) that palmgate puts in the `grpc-status-details-bin`
trailer, which is how any gRPC client reads palmgate's rich errors.
"""

import argparse
import sys

import grpc
from google.rpc import error_details_pb2, status_pb2

from palmgate.v1 import palm_authorization_pb2 as pb
from palmgate.v1 import palm_authorization_pb2_grpc as pb_grpc


def print_error(err: grpc.RpcError) -> None:
    print(f"error: {err.code().name}: {err.details()}", file=sys.stderr)
    for key, value in err.trailing_metadata() or ():
        if key != "grpc-status-details-bin":
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            info, bad, retry = (error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest(),
                                error_details_pb2.RetryInfo())
            if detail.Unpack(info):
                print(f"  reason: {info.reason}\n  domain: {info.domain}", file=sys.stderr)
                for k in sorted(info.metadata):
                    print(f"  metadata.{k}: {info.metadata[k]}", file=sys.stderr)
            elif detail.Unpack(bad):
                for v in bad.field_violations:
                    print(f"  bad_request: {v.field}: {v.description}", file=sys.stderr)
            elif detail.Unpack(retry):
                print(f"  retry_delay: {retry.retry_delay.ToJsonString()}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addr", default="127.0.0.1:50051")
    parser.add_argument("--openid", required=True)
    parser.add_argument("--organization_id", required=True)
    parser.add_argument("--timeout", type=float, default=2.0, help="deadline in seconds")
    args = parser.parse_args()

    with grpc.insecure_channel(args.addr) as channel:
        stub = pb_grpc.PalmAuthorizationStub(channel)
        request = pb.GetAuthorizationRequest(openid=args.openid, organization_id=args.organization_id)
        try:
            answer = stub.GetAuthorization(request, timeout=args.timeout)
        except grpc.RpcError as err:
            print_error(err)
            return 1
    print(f"state: {pb.AuthorizationState.Name(answer.state)}")
    print(f"authorize_time: {answer.authorize_time.ToJsonString() if answer.HasField('authorize_time') else '-'}")
    print(f"openid: {answer.openid}")
    print(f"organization_id: {answer.organization_id}")
    print(f"request_id: {answer.wechatpay_request_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
