"""`python -m services.retriever [--port P]`: the feedrank.v1.Retriever gRPC server (default 50051)."""

from services.common.grpc_server import service_main
from services.retriever.server import serve

if __name__ == "__main__":
    service_main("retriever", serve)
