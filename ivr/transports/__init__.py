"""Transports: wire protocols in, typed frames out (one serializer file per protocol)."""
