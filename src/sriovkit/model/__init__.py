"""Pure domain model: no imports from host/, ops/, pyroute2, grpc or the OS."""
