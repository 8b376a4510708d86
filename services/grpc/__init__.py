"""The gRPC twin API (``protos/twinmesh/v1``): a ``grpc.aio`` server whose calls
translate to core — one unary call per capability, jobs, and the twin's live state,
ingest, replay and export over core's warning and observation log."""
