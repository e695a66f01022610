"""Python code generated from kubelet's own .proto files (see proto/README.md).

Each API is a subpackage, `<api>_<version>`, holding `api_pb2` (messages) and `api_pb2_grpc`
(stubs and servicers). Generated code is excluded from ruff and from mypy's strictness; the
`api_pb2.pyi` stubs give the rest of sriovkit typed messages.
"""
