"""The Kubernetes device plugin: kubelet's device plugin API v1beta1 over gRPC.

This package imports grpc; elsewhere only `host/podresources.py` does, lazily, for a `sriov` config
that names a `resourceName` (a test checks that the CLI's other commands, the CNI shim and the CNI
dispatcher never load it): grpc costs start-up time the `sriov` CNI cannot afford.

- `model`: what is advertised (`Device`, `Resource`) and `ResourceFeed`, the one way in: the pool
  builder calls `update()` with the whole list and every stream sends it.
- `allocate`, `preferred`: Allocate's envs and device specs; GetPreferredAllocation. Pure.
- `server`: one resource's gRPC server on its unix socket, and Register / the plugin watcher.
- `pools`, `discovery`: the pools as feeds; `Discovery` keeps them current from host events
  (re-discovery and health) as its own agent service.
- `watch`: inotify on kubelet's directory, to notice a kubelet restart at once.
- `service`: `DevicePluginService`, the agent service (see `sriovkit.agent.supervisor`).
- `api`: code generated from kubelet's .proto files (scripts/gen-deviceplugin-api.sh).
"""
