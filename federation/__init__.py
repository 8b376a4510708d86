"""Federated training with Flower: ServerApp, ClientApp, node launcher (arrives with its issue)."""
