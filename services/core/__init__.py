"""The twin core: the domain held once, capabilities as plain functions over the store."""
