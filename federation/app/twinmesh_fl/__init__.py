"""The Flower app bundle of twinmesh's federated discharge model (ServerApp and
ClientApp); it imports numpy and flwr only, so it runs in Flower's own environment."""
