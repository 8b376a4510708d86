"""Protocol adapters and the twin core (services/core)."""
