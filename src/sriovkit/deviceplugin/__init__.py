"""The Kubernetes device plugin: kubelet's device plugin API v1beta1 over gRPC.

This package is the only one that imports grpc (a test checks that the CLI's other commands and the
CNI shim never load it): grpc costs start-up time the `sriov` CNI cannot afford.
"""
