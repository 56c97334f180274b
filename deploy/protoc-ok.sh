#!/usr/bin/env bash
# Exit 0 when protoc exists and finds protobuf's well-known types (what
# etcd-client's build script needs), 1 otherwise. Used by test.sh and
# quickstart.sh to decide whether libprotobuf-dev must be installed.
set -euo pipefail
command -v protoc >/dev/null 2>&1 || exit 1
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
printf 'syntax = "proto3";\nimport "google/protobuf/descriptor.proto";\n' >"$dir/probe.proto"
protoc --proto_path="$dir" --include_imports --descriptor_set_out=/dev/null "$dir/probe.proto" >/dev/null 2>&1
