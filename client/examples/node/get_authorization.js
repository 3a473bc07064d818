#!/usr/bin/env node
// Calls palmgate's GetAuthorization from Node.js and prints the answer.
//
// The service is loaded at run time from the contract (no generated code):
// @grpc/proto-loader reads proto/palmgate/v1/palm_authorization.proto with the
// googleapis protos from Debian (golang-github-gogo-googleapis-dev) on the
// include path. Run from a directory holding this file and package.json:
//
//   npm install
//   node get_authorization.js --addr 127.0.0.1:50051 \
//       --openid oUpF8uMuAJO_M2pxb1Q9zNjWeS6o --organization_id 1004 \
//       [--proto_dir /path/to/palmgate/proto] [--googleapis_dir DIR] [--timeout_ms 2000]
//
// Exit status 0 on success, 1 when the call fails (then it prints
// "error: CODE: message" and the google.rpc.ErrorInfo / BadRequest / RetryInfo
// decoded from the `grpc-status-details-bin` trailer), 2 on bad arguments.
'use strict';

const fs = require('fs');
const path = require('path');
const { parseArgs } = require('util');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const { values: args } = parseArgs({
  options: {
    addr: { type: 'string', default: '127.0.0.1:50051' },
    openid: { type: 'string' },
    organization_id: { type: 'string' },
    timeout_ms: { type: 'string', default: '2000' },
    proto_dir: { type: 'string', default: path.join(__dirname, '..', '..', '..', 'proto') },
    googleapis_dir: { type: 'string', default: '/usr/share/gocode/src/github.com/gogo/googleapis' },
  },
});
if (args.openid === undefined || args.organization_id === undefined) {
  console.error('usage: get_authorization.js --openid OPENID --organization_id ORG [--addr HOST:PORT]');
  process.exit(2);
}
const includeDirs = [args.proto_dir, args.googleapis_dir, '/usr/include'];

const definition = protoLoader.loadSync('palmgate/v1/palm_authorization.proto', {
  includeDirs, keepCase: true, enums: String, longs: String, defaults: true,
});
const { PalmAuthorization } = grpc.loadPackageDefinition(definition).palmgate.v1;

// google.rpc.Status and its details, to decode palmgate's rich errors.
const rpcTypes = new protobuf.Root();
rpcTypes.resolvePath = (origin, target) =>
  includeDirs.map((dir) => path.join(dir, target)).find((f) => fs.existsSync(f)) || target;
rpcTypes.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto'], { keepCase: true });

function printError(err) {
  console.error(`error: ${grpc.status[err.code]}: ${err.details}`);
  const [raw] = err.metadata ? err.metadata.get('grpc-status-details-bin') : [];
  if (!raw) return;
  const status = rpcTypes.lookupType('google.rpc.Status').decode(raw);
  for (const any of status.details) {
    const typeName = any.type_url.slice(any.type_url.lastIndexOf('/') + 1);
    const detail = rpcTypes.lookupType(typeName).decode(any.value);
    if (typeName === 'google.rpc.ErrorInfo') {
      console.error(`  reason: ${detail.reason}\n  domain: ${detail.domain}`);
      for (const key of Object.keys(detail.metadata).sort()) {
        console.error(`  metadata.${key}: ${detail.metadata[key]}`);
      }
    } else if (typeName === 'google.rpc.BadRequest') {
      for (const v of detail.field_violations) console.error(`  bad_request: ${v.field}: ${v.description}`);
    } else if (typeName === 'google.rpc.RetryInfo') {
      console.error(`  retry_delay: ${detail.retry_delay.seconds}s`);
    }
  }
}

const client = new PalmAuthorization(args.addr, grpc.credentials.createInsecure());
const deadline = new Date(Date.now() + Number(args.timeout_ms));
client.GetAuthorization({ openid: args.openid, organization_id: args.organization_id }, { deadline },
  (err, answer) => {
    client.close();
    if (err) {
      printError(err);
      process.exitCode = 1;
      return;
    }
    const t = answer.authorize_time;
    console.log(`state: ${answer.state}`);
    console.log(`authorize_time: ${t ? new Date(Number(t.seconds) * 1000 + t.nanos / 1e6).toISOString() : '-'}`);
    console.log(`openid: ${answer.openid}`);
    console.log(`organization_id: ${answer.organization_id}`);
    console.log(`request_id: ${answer.wechatpay_request_id}`);
  });
